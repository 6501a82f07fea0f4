package pairing

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/qnetd-addon/qnetd/internal/getopt"
)

// The legacy scp protocol (scp -O, and every scp before OpenSSH 9.0), as
// the remote end: `scp [-v] [-p] [-d] -f FILE` sends one served file,
// `scp [-v] [-p] [-d] -t TARGET` receives files into /tmp. The client
// sends these command lines itself (scp.c: "%s -f %s%s" and "%s -t %s%s",
// with "-- " before a path that starts with '-').

const maxSCPLine = 1024

// scp parses a remote scp command line and runs it.
func (ss *session) scp(ch ssh.Channel, args []string) int {
	opts, operands, err := getopt.Parse(args, "dfptvrq")
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "scp: %v\n", err)
		return 1
	}
	var from, to, preserve bool
	for _, o := range opts {
		switch o.Name {
		case 'f':
			from = true
		case 't':
			to = true
		case 'p':
			preserve = true
		case 'r':
			return ss.scpRefuse(ch, args, "recursive copies are not allowed")
		}
	}
	if from == to || len(operands) != 1 {
		return ss.scpRefuse(ch, args, "expected scp -f FILE or scp -t "+TmpPath)
	}
	if from {
		return ss.scpSource(ch, operands[0], preserve)
	}
	return ss.scpSink(ch, operands[0])
}

func (ss *session) scpRefuse(ch ssh.Channel, args []string, why string) int {
	fmt.Fprintf(ch.Stderr(), "qnetd pairing: scp %s: %s\n", clip(strings.Join(args, " ")), why)
	ss.s.log.Warn().Str("addr", ss.ip).Strs("args", args).Str("reason", why).Msg("pairing: scp refused")
	return ExitRefused
}

// scpErr sends an scp error line: level 1 skips a file, 2 is fatal.
func scpErr(w io.Writer, level byte, format string, a ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
	fmt.Fprintf(w, "%cscp: %s\n", level, msg)
}

// scpAck reads the peer's answer: 0 is OK, 1 and 2 carry a message.
func scpAck(r *bufio.Reader) error {
	b, err := r.ReadByte()
	if err != nil {
		return err
	}
	if b == 0 {
		return nil
	}
	line, _ := readLine(r)
	if b == 1 || b == 2 {
		return fmt.Errorf("peer error: %s", line)
	}
	return fmt.Errorf("protocol error: unexpected byte %#x", b)
}

// readLine reads up to a newline, at most maxSCPLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for b.Len() <= maxSCPLine {
		c, err := r.ReadByte()
		if err != nil {
			return b.String(), err
		}
		if c == '\n' {
			return b.String(), nil
		}
		b.WriteByte(c)
	}
	return b.String(), errors.New("line too long")
}

// scpSource sends one served file.
func (ss *session) scpSource(ch ssh.Channel, file string, preserve bool) int {
	r := bufio.NewReader(ch)
	if err := scpAck(r); err != nil {
		return 1
	}
	n, err := ss.s.resolve(file)
	if err == nil && n.kind == vDir {
		err = fmt.Errorf("%s: not a regular file", n.vpath)
	}
	var data []byte
	if err == nil {
		data, _, err = readServed(n.real)
	}
	if err != nil {
		reason := "No such file or directory"
		if errors.Is(err, errNotAllowed) {
			reason = "Permission denied (" + allowedHelp + ")"
		}
		scpErr(ch, 1, "%s: %s", clip(file), reason)
		ss.s.log.Warn().Str("addr", ss.ip).Str("file", clip(file)).Str("reason", strings.SplitN(reason, " (", 2)[0]).Msg("pairing: scp download refused")
		return 1
	}
	if preserve {
		fi, err := statReal(n.real)
		if err == nil {
			t := fi.ModTime().Unix()
			fmt.Fprintf(ch, "T%d 0 %d 0\n", t, t)
			if scpAck(r) != nil {
				return 1
			}
		}
	}
	fmt.Fprintf(ch, "C0644 %d %s\n", len(data), path.Base(n.vpath))
	if err := scpAck(r); err != nil {
		return 1
	}
	if _, err := ch.Write(data); err != nil {
		return 1
	}
	if _, err := ch.Write([]byte{0}); err != nil {
		return 1
	}
	if err := scpAck(r); err != nil {
		return 1
	}
	ss.s.fetched(n, ss.ip)
	return 0
}

// scpSink receives files into /tmp: the target is /tmp (files keep their
// names) or /tmp/NAME.
func (ss *session) scpSink(ch ssh.Channel, target string) int {
	fixedName, err := ss.sinkTarget(target)
	if err != nil {
		scpErr(ch, 2, "%s: Permission denied: only %s and %s/%sCLUSTER are writable", clip(target), TmpPath, NSSDBPath, CRQPrefix)
		ss.s.log.Warn().Str("addr", ss.ip).Str("target", clip(target)).Msg("pairing: scp upload refused: only " + TmpPath + " and " + NSSDBPath + "/" + CRQPrefix + "CLUSTER are writable")
		return 1
	}
	r := bufio.NewReader(ch)
	_, _ = ch.Write([]byte{0})
	errs := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			break // EOF: the client is done
		}
		switch ss.scpRecord(ch, r, c, fixedName) {
		case scpAbort:
			return 1
		case scpFailed:
			errs++
		}
	}
	if errs > 0 {
		return 1
	}
	return 0
}

// sinkTarget checks an upload's target: /tmp, or a file in it, whose name
// then replaces the names the client sends.
func (ss *session) sinkTarget(target string) (fixedName string, err error) {
	n, err := ss.s.resolve(target)
	switch {
	case err != nil:
		return "", err
	case n.kind == vDir && n.vpath == TmpPath:
		return "", nil
	case n.kind == vTmpFile:
		return path.Base(n.vpath), nil
	}
	return "", errReadOnly
}

// scpResult is how one record of an upload went.
type scpResult int

const (
	scpOK     scpResult = iota
	scpFailed           // this file failed; the upload goes on
	scpAbort            // the upload ends
)

// scpRecord handles one record of the upload stream whose type byte c was
// read: a time stamp, an error from the client, or a file.
func (ss *session) scpRecord(ch ssh.Channel, r *bufio.Reader, c byte, fixedName string) scpResult {
	line, err := readLine(r)
	if err != nil {
		scpErr(ch, 2, "protocol error: %v", err)
		return scpAbort
	}
	switch c {
	case 'T':
		_, _ = ch.Write([]byte{0})
		return scpOK
	case 1, 2:
		ss.s.log.Warn().Str("addr", ss.ip).Str("message", clip(line)).Msg("pairing: scp client reported an error")
		if c == 2 {
			return scpAbort
		}
		return scpFailed
	case 'C':
		return ss.scpFile(ch, r, line, fixedName)
	}
	scpErr(ch, 2, "directories are not allowed")
	ss.s.log.Warn().Str("addr", ss.ip).Msg("pairing: scp upload refused: directories are not allowed")
	return scpAbort
}

// scpFile receives one file announced by line ("<mode> <size> <name>",
// after the C) and stores it, or refuses it before its data is sent.
func (ss *session) scpFile(ch ssh.Channel, r *bufio.Reader, line, fixedName string) scpResult {
	size, name, bad := parseSCPFile(line)
	if bad != "" {
		scpErr(ch, 2, "protocol error: %s", bad)
		return scpAbort
	}
	if fixedName != "" {
		name = fixedName
	}
	var why error
	switch {
	case !tmpName(name):
		why = fmt.Errorf("%q: %w", clip(name), errNotAllowed)
	case size > MaxUpload:
		why = errTooBig
	}
	if why != nil {
		scpErr(ch, 1, "%s: %v", clip(name), why)
		ss.s.log.Warn().Str("addr", ss.ip).Str("file", clip(name)).Int64("bytes", size).
			AnErr("reason", why).Msg("pairing: scp upload refused")
		return scpFailed // the client does not send the data
	}
	_, _ = ch.Write([]byte{0})
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return scpAbort
	}
	if err := scpAck(r); err != nil {
		return scpFailed
	}
	if err := ss.s.storeUpload(name, data, ss.ip); err != nil {
		scpErr(ch, 1, "%s: %v", name, err)
		return scpFailed
	}
	_, _ = ch.Write([]byte{0})
	return scpOK
}

// parseSCPFile reads a file record's "<mode> <size> <name>"; bad says
// what is wrong with it.
func parseSCPFile(line string) (size int64, name, bad string) {
	parts := strings.SplitN(line, " ", 3)
	if len(parts) != 3 || len(parts[0]) != 4 {
		return 0, "", "bad file line"
	}
	if _, err := strconv.ParseUint(parts[0], 8, 32); err != nil {
		return 0, "", "bad mode"
	}
	size, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || size < 0 {
		return 0, "", "bad size"
	}
	return size, parts[2], ""
}
