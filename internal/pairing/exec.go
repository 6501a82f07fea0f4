package pairing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/qnetd-addon/qnetd/internal/certutilcmd"
	"github.com/qnetd-addon/qnetd/internal/getopt"
	"github.com/qnetd-addon/qnetd/internal/pki"
)

// ExitRefused is the exit status of a refused command (a shell's "command
// not found").
const ExitRefused = 127

const allowedHelp = "this SSH endpoint only pairs corosync qdevices (pvecm qdevice setup, crm cluster init qdevice): " +
	"commands and sh scripts may run corosync-qnetd-certutil -i, corosync-qnetd-certutil -s -c FILE -n CLUSTER, " +
	"corosync-qnetd-tool -s|-l [-v] [-c CLUSTER], dpkg-query -s and rpm -q corosync-qnetd, systemctl for corosync-qnetd, " +
	"mkdir and rm in " + RunPath + ", cat of the served files; ssh-copy-id installs keys; scp/sftp serve " + NSSDBPath + "/qnetd-cacert.crt and " +
	NSSDBPath + "/cluster-*.crt and take uploads into " + TmpPath + " and " + NSSDBPath + "/" + CRQPrefix + "CLUSTER"

// session is one logged-in connection's view.
type session struct {
	s            *Server
	ip           string
	passwordOnly bool // logged in with the password: may only install a key
	// oneTime names the one-time password the session logged in with
	// (OneTime.check): its first installed key uses it up.
	oneTime string
	// identity is the SSH key the session logged in with: the pairing
	// identity that owns the cluster names it has signed (pki.SignFor).
	identity pki.Identity
}

// keyIdentity is the pairing identity of an SSH key: its SHA256
// fingerprint, which names the key whatever its comment.
func keyIdentity(typ, fingerprint, comment string) pki.Identity {
	label := typ + " " + fingerprint
	if c := sanitizeComment(comment); c != "" {
		label += " (" + c + ")"
	}
	return pki.Identity{ID: "ssh-key " + fingerprint, Label: label}
}

// serve answers one session channel's requests: one exec or sftp
// subsystem; a shell gets the refusal message; pty, env, X11 and agent
// forwarding are refused.
func (ss *session) serve(ch ssh.Channel, reqs <-chan *ssh.Request) {
	var once sync.Once
	started := false
	start := func(run func() int) {
		started = true
		once.Do(func() {
			go func() { exitStatus(ch, run()) }()
		})
	}
	defer func() {
		if !started {
			ch.Close()
		}
	}()
	log := ss.s.log
	for r := range reqs {
		ok := false
		switch r.Type {
		case "exec":
			var p struct{ Command string }
			if started || ssh.Unmarshal(r.Payload, &p) != nil {
				break
			}
			ok = true
			_ = r.Reply(true, nil)
			start(func() int { return ss.exec(ch, p.Command) })
			continue
		case "subsystem":
			var p struct{ Name string }
			if started || ssh.Unmarshal(r.Payload, &p) != nil {
				break
			}
			if p.Name != "sftp" || ss.passwordOnly {
				log.Warn().Str("addr", ss.ip).Str("subsystem", p.Name).Bool("password_login", ss.passwordOnly).
					Msg("pairing: refused subsystem")
				break
			}
			ok = true
			_ = r.Reply(true, nil)
			start(func() int { return ss.sftp(ch) })
			continue
		case "shell":
			if started {
				break
			}
			ok = true
			_ = r.Reply(true, nil)
			log.Warn().Str("addr", ss.ip).Msg("pairing: refused shell")
			start(func() int {
				fmt.Fprintf(ch.Stderr(), "qnetd pairing: no shell: %s.\r\n", allowedHelp)
				return ExitRefused
			})
			continue
		case "pty-req":
			log.Warn().Str("addr", ss.ip).Msg("pairing: refused pty")
		case "x11-req":
			log.Warn().Str("addr", ss.ip).Msg("pairing: refused X11 forwarding")
		case "auth-agent-req@openssh.com":
			log.Warn().Str("addr", ss.ip).Msg("pairing: refused agent forwarding")
		case "env":
			var p struct{ Name, Value string }
			_ = ssh.Unmarshal(r.Payload, &p)
			log.Debug().Str("addr", ss.ip).Str("name", p.Name).Msg("pairing: environment variable ignored")
		}
		if r.WantReply {
			_ = r.Reply(ok, nil)
		}
	}
}

// clip shortens a client string for the log.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// exec runs one command line and returns its exit status.
func (ss *session) exec(ch ssh.Channel, cmd string) int {
	stderr := ch.Stderr()
	line := strings.TrimSpace(cmd)
	ss.s.log.Debug().Str("addr", ss.ip).Str("command", clip(cmd)).Msg("pairing: command")
	if isKeyInstall(line) {
		return ss.installKeys(ch)
	}
	if ss.passwordOnly {
		if line == "exit" || line == "exit 0" {
			ss.s.log.Debug().Str("addr", ss.ip).Msg("pairing: key test (ssh-copy-id): key already installed")
			return 0
		}
		fmt.Fprintf(stderr, "qnetd pairing: a password login can only install an SSH key (ssh-copy-id); log in with that key to run %s\n", clip(line))
		ss.s.log.Warn().Str("addr", ss.ip).Str("command", clip(cmd)).
			Msg("pairing: refused command: password logins can only install a key")
		return ExitRefused
	}
	// The commands pvecm and crmsh send as plain words run directly on the
	// channel (scp and sftp speak their protocol on it); everything else
	// is a script for the sandboxed shell (shell.go).
	if words, err := splitWords(line); err == nil && len(words) > 0 {
		if w, err := sudoCommand(words[1:]); commandName(words[0]) == "sudo" && err == nil {
			words = w
		}
		switch commandName(words[0]) {
		case "corosync-qnetd-certutil":
			return ss.certutil(ch, stderr, words[1:])
		case "corosync-qnetd-tool":
			return ss.tool(ch, stderr, words[1:])
		case "scp":
			return ss.scp(ch, words[1:])
		case "sftp-server":
			return ss.sftp(ch)
		}
		if path.Base(words[0]) == "sftp-server" && strings.HasPrefix(words[0], "/usr/lib") {
			return ss.sftp(ch)
		}
	}
	return ss.runShell(ch, ch, stderr, cmd)
}

func (ss *session) refuse(stderr io.Writer, cmd string) int {
	fmt.Fprintf(stderr, "qnetd pairing: command not allowed: %q\n%s.\n", clip(cmd), allowedHelp)
	ss.s.log.Warn().Str("addr", ss.ip).Str("command", clip(cmd)).Msg("pairing: refused command")
	return ExitRefused
}

// commandName strips the usual binary directories from a command word.
func commandName(w string) string {
	switch path.Dir(w) {
	case ".", "/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin":
		if path.Dir(w) == "." && strings.Contains(w, "/") {
			return w
		}
		return path.Base(w)
	}
	return w
}

// isKeyInstall recognises ssh-copy-id's key installation by its shape:
//
//	exec sh -c 'cd; umask 077; ... mkdir -p ... && { [ -z `tail -1c ...authorized_keys...` ] || echo >> ... ; } && cat >> "...authorized_keys" || exit 1; if type restorecon ...'
//
// (OpenSSH 8.4 to 10 differ in the details). Whatever the script says, we
// only ever append validated public keys read from stdin to our store.
func isKeyInstall(cmd string) bool {
	return strings.HasPrefix(cmd, "exec sh -c '") && strings.HasSuffix(cmd, "'") &&
		strings.Contains(cmd, "cat >>") && strings.Contains(cmd, "authorized_keys")
}

func (ss *session) installKeys(ch ssh.Channel) int {
	stderr := ch.Stderr()
	data, err := io.ReadAll(io.LimitReader(ch, maxKeyInput+1))
	if err != nil {
		fmt.Fprintf(stderr, "qnetd pairing: cannot read the keys: %v\n", err)
		return 1
	}
	if len(data) > maxKeyInput {
		fmt.Fprintf(stderr, "qnetd pairing: more than %d bytes of keys: refused\n", maxKeyInput)
		ss.s.log.Warn().Str("addr", ss.ip).Int("max_bytes", maxKeyInput).Msg("pairing: key installation refused: too large")
		return 1
	}
	var added, present []authKey
	install := func() (string, error) {
		var err error
		if added, present, err = ss.s.keys.install(data); err != nil || len(added) == 0 {
			return "", err
		}
		return ssh.FingerprintSHA256(added[0].key), nil
	}
	if ss.oneTime == "" {
		_, err = install()
	} else if err = ss.s.oneTime.use(ss.oneTime, ss.s.now(), install); err == nil && len(added) > 0 {
		ss.s.log.Info().Str("addr", ss.ip).Str("key", ssh.FingerprintSHA256(added[0].key)).
			Msg("pairing: the one-time pairing password is used up: it installed this key")
	}
	if err != nil && len(added) == 0 {
		fmt.Fprintf(stderr, "qnetd pairing: keys not installed: %v\n", err)
		ss.s.log.Warn().Str("addr", ss.ip).Err(err).Msg("pairing: key installation refused")
		return 1
	}
	if err != nil {
		ss.s.log.Error().Str("addr", ss.ip).Err(err).Msg("pairing: one-time password state not saved")
	}
	for _, a := range added {
		ss.s.log.Info().Str("addr", ss.ip).Str("key", ssh.FingerprintSHA256(a.key)).Str("type", a.key.Type()).Str("comment", sanitizeComment(a.comment)).
			Msg("pairing: SSH key installed (ssh-copy-id)")
	}
	for _, a := range present {
		ss.s.log.Info().Str("addr", ss.ip).Str("key", ssh.FingerprintSHA256(a.key)).
			Msg("pairing: SSH key is installed already")
	}
	return 0
}

// certutil runs corosync-qnetd-certutil in-process on PKIDir: -i, -s -c
// /tmp/FILE -n CLUSTER, -h. -d, -I and -F, and requests outside /tmp, are
// refused. Signing is on behalf of the session's key: a cluster name
// another key had signed first is refused (pki.SignFor).
func (ss *session) certutil(stdout, stderr io.Writer, args []string) int {
	req, code := ss.certutilRequest(stderr, args)
	if code != 0 {
		return code
	}
	var out, errb bytes.Buffer
	var outcome certutilcmd.Outcome
	id := ss.identity
	ss.s.certMu.Lock()
	code = certutilcmd.Run(req.margs, map[string]string{"QNETD_NSS_DB_DIR": ss.s.pkiDir},
		certutilcmd.Options{Identity: &id, Outcome: &outcome}, &out, &errb, ss.s.now)
	ss.s.certMu.Unlock()
	_, _ = stdout.Write(ss.s.rewritePaths(out.Bytes()))
	_, _ = stderr.Write(ss.s.rewritePaths(errb.Bytes()))
	msg := strings.TrimSpace(string(ss.s.rewritePaths(errb.Bytes())))
	ss.logCertutil(args, req, id, code, msg, outcome)
	return code
}

// certutilReq is a certutil command line as it may run here: margs for
// certutilcmd (paths made real), the operation (i, s or h) and, for the
// log, the request file and cluster named.
type certutilReq struct {
	margs            []string
	op, csr, cluster string
}

// certutilRequest checks a certutil command line; code is non-zero (with
// the reason on stderr) when it may not run.
func (ss *session) certutilRequest(stderr io.Writer, args []string) (req certutilReq, code int) {
	opts, operands, err := getopt.Parse(args, "FGhisc:n:d:I:")
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", certutilProg, err)
		return req, 1
	}
	if len(operands) > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", certutilProg, clip(operands[0]))
		return req, 1
	}
	req.margs = []string{}
	for _, o := range opts {
		switch o.Name {
		case 'd', 'I', 'F':
			fmt.Fprintf(stderr, "%s: option -%c is not available over SSH: the pairing endpoint signs and serves the certificates of %s only; "+
				"the administrator of this qnetd runs it locally\n", certutilProg, o.Name, NSSDBPath)
			ss.s.log.Warn().Str("addr", ss.ip).Strs("args", args).Str("option", "-"+string(o.Name)).
				Msg("pairing: refused a corosync-qnetd-certutil option that is for the administrator only")
			return req, ExitRefused
		case 'c':
			req.csr = o.Arg
			real, code := ss.requestFile(stderr, o.Arg)
			if code != 0 {
				return req, code
			}
			req.margs = append(req.margs, "-c", real)
		case 'n':
			req.cluster = o.Arg
			req.margs = append(req.margs, "-n", o.Arg)
		case 'i', 's', 'h':
			req.op = string(o.Name)
			req.margs = append(req.margs, "-"+req.op)
		}
	}
	return req, 0
}

const certutilProg = "corosync-qnetd-certutil"

// requestFile is the real path of a certificate request to sign: only a
// regular file uploaded to /tmp (or as the NSS database's request) is.
func (ss *session) requestFile(stderr io.Writer, arg string) (real string, code int) {
	n, err := ss.s.resolve(arg)
	if !path.IsAbs(arg) || err != nil || n.kind != vTmpFile {
		fmt.Fprintf(stderr, "%s: over SSH only certificate requests uploaded to %s or as %s/%sCLUSTER can be signed, not %q\n", certutilProg, TmpPath, NSSDBPath, CRQPrefix, clip(arg))
		ss.s.log.Warn().Str("addr", ss.ip).Str("file", clip(arg)).Msg("pairing: refused to sign a request outside " + TmpPath)
		return "", ExitRefused
	}
	if fi, err := os.Lstat(n.real); err == nil && !fi.Mode().IsRegular() {
		fmt.Fprintf(stderr, "%s: %s is not a regular file\n", certutilProg, n.vpath)
		return "", ExitRefused
	}
	return n.real, 0
}

// logCertutil logs what a certutil run did: the CA initialised, a
// certificate signed (and how the key came to own the name), a name
// refused because another key owns it, or a failure.
func (ss *session) logCertutil(args []string, req certutilReq, id pki.Identity, code int, msg string, outcome certutilcmd.Outcome) {
	log := ss.s.log
	var owned *pki.OwnedError
	switch {
	case req.op == "i" && code == 0:
		log.Info().Str("addr", ss.ip).Msg("pairing: certificate authority initialised")
	case req.op == "i" && strings.Contains(msg, "already exists"):
		log.Info().Str("addr", ss.ip).Msg("pairing: asked to initialise the certificate authority: it exists already (normal)")
	case req.op == "s" && code == 0:
		ev := log.Info().Str("addr", ss.ip).Str("cluster", req.cluster).Str("request", req.csr).Str("key", id.Label)
		switch outcome.Result.Claim {
		case pki.ClaimLegacy:
			ev.Msg("pairing: signed certificate for a cluster signed before owners were recorded; this key owns the cluster name now")
		case pki.ClaimNew:
			ev.Msg("pairing: signed certificate for a new cluster; this key owns the cluster name now")
		default:
			ev.Msg("pairing: signed certificate again for a cluster this key owns")
		}
	case req.op == "s" && errors.As(outcome.Err, &owned):
		log.Warn().Str("addr", ss.ip).Str("cluster", req.cluster).Str("key", id.Label).Str("owner", owned.Owner.Label).
			Time("owner_since", owned.Owner.Claimed).
			Msg("pairing: refused to sign a cluster name that another key owns; if the request is legitimate, forget the cluster " +
				"(on the status page, or with corosync-qnetd-certutil -F -n CLUSTER) and have the node sign again")
	case code != 0:
		log.Warn().Str("addr", ss.ip).Strs("args", args).Int("exit", code).Str("error", msg).
			Msg("pairing: corosync-qnetd-certutil failed")
	}
}

// tool runs read-only corosync-qnetd-tool commands (-s, -l, -v, -c).
func (ss *session) tool(stdout, stderr io.Writer, args []string) int {
	opts, operands, err := getopt.Parse(args, "Hhlsvc:p:")
	if err == nil && len(operands) > 0 {
		err = fmt.Errorf("unexpected argument %q", clip(operands[0]))
	}
	if err != nil {
		fmt.Fprintf(stderr, "corosync-qnetd-tool: %v\n", err)
		return 1
	}
	for _, o := range opts {
		if o.Name == 'H' || o.Name == 'p' {
			fmt.Fprintf(stderr, "corosync-qnetd-tool: option -%c is not available over SSH (read-only: -s, -l, -v, -c)\n", o.Name)
			ss.s.log.Warn().Str("addr", ss.ip).Strs("args", args).Str("option", "-"+string(o.Name)).Msg("pairing: refused a corosync-qnetd-tool option")
			return ExitRefused
		}
	}
	if ss.s.cfg.Tool == nil {
		fmt.Fprintln(stderr, "corosync-qnetd-tool: not available on this pairing endpoint")
		return ExitRefused
	}
	ss.s.log.Info().Str("addr", ss.ip).Strs("args", args).Msg("pairing: corosync-qnetd-tool")
	return ss.s.cfg.Tool(args, stdout, stderr)
}

// sftp serves the sftp subsystem.
func (ss *session) sftp(ch ssh.Channel) int {
	ss.s.log.Debug().Str("addr", ss.ip).Msg("pairing: sftp session")
	fs := &sftpFS{s: ss.s, ip: ss.ip}
	rs := sftp.NewRequestServer(noClose{ch}, fs.handlers())
	err := rs.Serve()
	rs.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		ss.s.log.Debug().Str("addr", ss.ip).Err(err).Msg("pairing: sftp session ended")
	}
	return 0
}

// noClose keeps the sftp server from closing the channel before the exit
// status is sent.
type noClose struct{ ssh.Channel }

func (noClose) Close() error { return nil }

// splitWords splits a command line like a POSIX shell would for simple
// words: blanks separate words, single quotes, double quotes and
// backslashes quote. Anything a shell would expand or interpret
// (;|&<>()$`*?[]{}~#, newlines) is an error: no command line we accept
// needs them.
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		var err error
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			continue
		case c == '\'':
			i, err = singleQuoted(line, i, &cur)
		case c == '"':
			i, err = doubleQuoted(line, i, &cur)
		case c == '\\':
			if i+1 >= len(line) || line[i+1] == '\n' {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(line[i])
		case strings.IndexByte(";|&<>()$`*?[]{}\n\r\x00", c) >= 0,
			c == '~' && !inWord, c == '#' && !inWord:
			return nil, fmt.Errorf("shell syntax %q", c)
		default:
			cur.WriteByte(c)
		}
		if err != nil {
			return nil, err
		}
		inWord = true
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// singleQuoted copies the text of the '...' starting at line[i] to cur
// and returns the index of its closing quote.
func singleQuoted(line string, i int, cur *strings.Builder) (int, error) {
	j := strings.IndexByte(line[i+1:], '\'')
	if j < 0 {
		return i, errors.New("unterminated quote")
	}
	cur.WriteString(line[i+1 : i+1+j])
	return i + j + 1, nil
}

// doubleQuoted copies the text of the "..." starting at line[i] to cur,
// with \", \\, \$ and \` unescaped, and returns the index of its closing
// quote. An expansion ($ or `) is an error.
func doubleQuoted(line string, i int, cur *strings.Builder) (int, error) {
	for i++; i < len(line) && line[i] != '"'; i++ {
		switch line[i] {
		case '$', '`':
			return i, errors.New("expansion")
		case '\\':
			if i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0 {
				i++
			}
		}
		cur.WriteByte(line[i])
	}
	if i >= len(line) {
		return i, errors.New("unterminated quote")
	}
	return i, nil
}

// realTmp maps a /tmp file's virtual path to the real one (for tests).
func (s *Server) realTmp(name string) string { return filepath.Join(s.tmpDir, name) }
