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
	ta, problem, help := parseToolArgs(args)
	if problem != "" {
		fmt.Fprintf(stderr, "%s: %s\n", ToolName, problem)
	}
	if problem != "" || help || ta.op == ToolNone {
		toolUsage(stdout)
		return ExitUsage
	}
	return ta.run(stdout, stderr)
}

// toolArgs is what the tool's command line asks for.
type toolArgs struct {
	op      ToolOp
	verbose bool
	cluster *string
	path    string
}

// toolOptSpec is the tool's getopt string.
const toolOptSpec = "Hhlsvc:p:"

// parseToolArgs reads the command line as GNU getopt "Hhlsvc:p:" does:
// options are processed in order, operands are skipped (permuted), "--"
// ends the options. It stops at the first problem (an invalid option or a
// missing argument, in getopt's words) or at -h (help).
func parseToolArgs(args []string) (ta toolArgs, problem string, help bool) {
	ta.path = DefaultSocketPath
args:
	for i := 0; i < len(args) && args[i] != "--"; i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		for j := 1; j < len(a); j++ {
			ch := a[j]
			k := strings.IndexByte(toolOptSpec, ch)
			switch {
			case k < 0 || ch == ':':
				return ta, fmt.Sprintf("invalid option -- '%c'", ch), false
			case k+1 < len(toolOptSpec) && toolOptSpec[k+1] == ':':
				arg, at, ok := optArg(args, i, j)
				if !ok {
					return ta, fmt.Sprintf("option requires an argument -- '%c'", ch), false
				}
				ta.setArg(ch, arg)
				i = at
				continue args
			case ch == 'h':
				return ta, "", true
			}
			ta.setFlag(ch)
		}
	}
	return ta, "", false
}

// optArg is the argument of the option at args[i][j]: the rest of the
// word, or else the next word (at is then its index).
func optArg(args []string, i, j int) (arg string, at int, ok bool) {
	switch a := args[i]; {
	case j+1 < len(a):
		return a[j+1:], i, true
	case i+1 < len(args):
		return args[i+1], i + 1, true
	}
	return "", i, false
}

func (ta *toolArgs) setArg(ch byte, arg string) {
	if ch == 'c' {
		ta.cluster = &arg
	} else {
		ta.path = arg
	}
}

func (ta *toolArgs) setFlag(ch byte) {
	switch ch {
	case 'H':
		ta.op = ToolShutdown
	case 'l':
		ta.op = ToolList
	case 's':
		ta.op = ToolStatus
	case 'v':
		ta.verbose = true
	}
}

// run sends the command to qnetd's socket and prints its reply.
func (ta toolArgs) run(stdout, stderr io.Writer) int {
	f, err := dialUnix(ta.path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: Can't connect to qnetd socket (is QNetd running?): %s\n", ToolName, strerror(err))
		return ExitSocketConnect
	}
	defer f.Close()
	cmd, ok := BuildCommand(ta.op, ta.verbose, ta.cluster)
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
