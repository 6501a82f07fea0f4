package adminipc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ToolName is the program name in the tool's messages.
const ToolName = "corosync-qnetd-tool"

// Exit codes of corosync-qnetd-tool.
const (
	ExitOK            = 0
	ExitUsage         = 1
	ExitInternalError = 2
	ExitSocketConnect = 3 // also "Unknown status line"
	ExitQNetdError    = 4
)

// toolSendMax is QNETD_DEFAULT_IPC_MAX_RECEIVE_SIZE: the tool's command
// buffer, including the "\n\0" it ends with.
const toolSendMax = 4096

// statusLineMax is the tool's status line buffer (IPC_READ_BUF_SIZE),
// including the terminating NUL.
const statusLineMax = 512

// ToolOp is a corosync-qnetd-tool operation.
type ToolOp uint8

const (
	ToolNone ToolOp = iota
	ToolShutdown
	ToolStatus
	ToolList
)

// BuildCommand is the request line the tool sends (store_command): the
// operation word, "verbose " with -v, "cluster <quoted> " with -c (for
// every operation), then "\n". ok is false when it does not fit the
// tool's 4096-byte buffer ("Can't store command").
func BuildCommand(op ToolOp, verbose bool, cluster *string) (string, bool) {
	var b strings.Builder
	switch op {
	case ToolShutdown:
		b.WriteString("shutdown ")
	case ToolStatus:
		b.WriteString("status ")
	case ToolList:
		b.WriteString("list ")
	default:
		return "", false
	}
	if verbose {
		b.WriteString("verbose ")
	}
	if cluster != nil {
		b.WriteString("cluster ")
		b.WriteString(QuoteWord(*cluster))
		b.WriteString(" ")
	}
	if b.Len()+2 > toolSendMax {
		return "", false
	}
	b.WriteString("\n")
	return b.String(), true
}

func toolUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s [-Hhlsv] [-c cluster_name] [-p qnetd_ipc_socket_path]\n", ToolName)
}

// ToolMain is corosync-qnetd-tool: it returns the exit status.
func ToolMain(args []string, stdout, stderr io.Writer) int {
	op := ToolNone
	verbose := false
	var cluster *string
	path := DefaultSocketPath

	// GNU getopt "Hhlsvc:p:": options are processed in order, operands
	// are skipped (permuted), "--" ends the options; -h or an error prints
	// the usage on stdout and exits 1 at once.
	const spec = "Hhlsvc:p:"
	bad := func(msg string) int {
		fmt.Fprintf(stderr, "%s: %s\n", ToolName, msg)
		toolUsage(stdout)
		return ExitUsage
	}
args:
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		for j := 1; j < len(a); j++ {
			ch := a[j]
			k := strings.IndexByte(spec, ch)
			if k < 0 || ch == ':' {
				return bad(fmt.Sprintf("invalid option -- '%c'", ch))
			}
			if k+1 < len(spec) && spec[k+1] == ':' {
				var arg string
				switch {
				case j+1 < len(a):
					arg = a[j+1:]
				case i+1 < len(args):
					i++
					arg = args[i]
				default:
					return bad(fmt.Sprintf("option requires an argument -- '%c'", ch))
				}
				if ch == 'c' {
					v := arg
					cluster = &v
				} else {
					path = arg
				}
				continue args
			}
			switch ch {
			case 'H':
				op = ToolShutdown
			case 'l':
				op = ToolList
			case 's':
				op = ToolStatus
			case 'v':
				verbose = true
			case 'h':
				toolUsage(stdout)
				return ExitUsage
			}
		}
	}
	if op == ToolNone {
		toolUsage(stdout)
		return ExitUsage
	}

	f, err := dialUnix(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: Can't connect to qnetd socket (is QNetd running?): %s\n", ToolName, strerror(err))
		return ExitSocketConnect
	}
	defer f.Close()
	cmd, ok := BuildCommand(op, verbose, cluster)
	if !ok {
		fmt.Fprintf(stderr, "%s: Can't store command\n", ToolName)
		return ExitInternalError
	}
	if _, err := io.WriteString(f, cmd); err != nil {
		fmt.Fprintf(stderr, "%s: Can't send command\n", ToolName)
		return ExitInternalError
	}
	return readReply(f, stdout, stderr)
}

// readReply is read_ipc_reply: the status line (\r ignored) decides, the
// rest is copied to stdout (OK) or, after "Error: ", to stderr. A
// connection closed before the status line ended is success with no
// output, as upstream.
func readReply(r io.Reader, stdout, stderr io.Writer) int {
	br := bufio.NewReader(r)
	var status []byte
	for {
		ch, err := br.ReadByte()
		if err != nil {
			return ExitOK
		}
		if ch == '\r' {
			continue
		}
		if ch == '\n' {
			break
		}
		status = append(status, ch)
		if len(status) > statusLineMax {
			fmt.Fprintf(stderr, "%s: Internal error during IPC status line read\n", ToolName)
			return ExitInternalError
		}
	}
	if len(status)+1 > statusLineMax {
		fmt.Fprintf(stderr, "%s: Internal error during IPC status line read\n", ToolName)
		return ExitInternalError
	}
	line := cstr(string(status))
	switch {
	case equalFold(line, "OK"):
		_, _ = io.Copy(stdout, br)
		return ExitOK
	case equalFold(line, "Error"):
		fmt.Fprint(stderr, "Error: ")
		_, _ = io.Copy(stderr, br)
		return ExitQNetdError
	}
	fmt.Fprintf(stderr, "%s: Unknown status line returned by IPC server\n", ToolName)
	return ExitSocketConnect
}

// dialUnix connects like upstream's unix_socket_client_create: a blocking
// connect (a full backlog waits instead of failing), ENAMETOOLONG for an
// empty or too long path.
func dialUnix(path string) (*os.File, error) {
	if len(path) == 0 || len(path) >= sunPathMax {
		return nil, syscall.ENAMETOOLONG
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// strerror spells an errno as glibc does ("No such file or directory");
// Go's texts are the same words in lower case.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" && 'a' <= s[0] && s[0] <= 'z' {
			s = string(s[0]-'a'+'A') + s[1:]
		}
		return s
	}
	return err.Error()
}
