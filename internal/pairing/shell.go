package pairing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// The pairing endpoint's shell. crmsh sends its remote commands as exec
// strings ("corosync-qnetd-tool -l -c pve") or, newer versions, as a script
// on the standard input of "/bin/sh" or "sudo -H /bin/sh". Both are read by a
// POSIX shell parser and run by an interpreter inside this process: every
// external command goes to a virtual implementation below or is refused,
// every file access to the virtual tree (vfs.go). No process is ever
// started and no real file outside the tree is ever opened.
//
// The interpreter has no hook on memory, so what a script may do is bounded
// before it runs (checkScript): no loops, functions, background jobs or
// eval, few expansions, so that doubling a variable cannot go on; and while
// it runs: commands, output, standard input and time.
const (
	// MaxScript is the longest script or exec string, in bytes.
	MaxScript = 32 << 10
	// maxScriptStatements bounds the statements of one script.
	maxScriptStatements = 256
	// maxScriptExpansions bounds the parameter expansions and command
	// substitutions of one script: each can at most double a variable,
	// so a value stays below (script + stdin) × 2^(max/2).
	maxScriptExpansions = 16
	// maxScriptCommands bounds the commands a session's scripts run in
	// all, nested shells included.
	maxScriptCommands = 1024
	// maxScriptOutput bounds what a script writes, stdout and stderr
	// together.
	maxScriptOutput = 1 << 20
	// maxScriptStdin bounds what a script may read from the session.
	maxScriptStdin = 64 << 10
	// ScriptTimeout is how long a script may run.
	ScriptTimeout = 20 * time.Second
	// maxShellDepth bounds sh -c inside sh -c.
	maxShellDepth = 2
	// maxLockDirs bounds the directories scripts may make in /run (crmsh's
	// remote locks); lockDirAge is when a forgotten one goes.
	maxLockDirs = 16
	lockDirAge  = time.Hour
)

// RunPath is the virtual /run, where crmsh makes its lock directories.
const RunPath = "/run"

// shellDirs are directories a script sees besides the served tree.
var shellDirs = map[string]bool{"/root": true, RunPath: true, "/dev": true}

// errScript is a refusal of what a script is or does.
type errScript struct{ why string }

func (e *errScript) Error() string { return e.why }

func refusedScript(format string, a ...any) error { return &errScript{fmt.Sprintf(format, a...)} }

// checkScript refuses what would let a script run without bound.
func checkScript(f *syntax.File) error {
	var err error
	stmts, exps := 0, 0
	syntax.Walk(f, func(n syntax.Node) bool {
		if err != nil {
			return false
		}
		switch n := n.(type) {
		case *syntax.Stmt:
			stmts++
			if n.Background || n.Coprocess {
				err = refusedScript("background jobs (&) are not allowed")
			}
		case *syntax.WhileClause, *syntax.ForClause:
			err = refusedScript("loops are not allowed")
		case *syntax.FuncDecl:
			err = refusedScript("functions are not allowed")
		case *syntax.ProcSubst:
			err = refusedScript("process substitution is not allowed")
		case *syntax.CoprocClause:
			err = refusedScript("coprocesses are not allowed")
		case *syntax.ParamExp:
			exps++
			if n.Repl != nil {
				err = refusedScript("pattern replacement (${name/pattern/string}) is not allowed")
			}
		case *syntax.CmdSubst:
			exps++
		case *syntax.Word:
			w := *n // SplitBraces replaces the parts it splits
			if syntax.SplitBraces(&w) {
				err = refusedScript("brace expansion ({a,b}, {1..9}) is not allowed")
			}
		}
		return true
	})
	switch {
	case err != nil:
		return err
	case stmts > maxScriptStatements:
		return refusedScript("more than %d statements", maxScriptStatements)
	case exps > maxScriptExpansions:
		return refusedScript("more than %d expansions ($name, $(command))", maxScriptExpansions)
	}
	return nil
}

// forbiddenBuiltins would run text as code, look at the real file system
// (type, hash and command search the real PATH) or act on the process.
var forbiddenBuiltins = map[string]string{
	"eval": "eval", "source": "source", ".": ". (source)", "trap": "trap", "alias": "alias",
	"unalias": "unalias", "type": "type", "hash": "hash", "command": "command", "builtin": "builtin",
	"enable": "enable",
	// act on the add-on's own process (the interpreter lacks them today;
	// they stay refused if a later version has them)
	"kill": "kill", "umask": "umask", "ulimit": "ulimit", "suspend": "suspend", "bg": "bg", "fg": "fg", "disown": "disown",
}

// wideFormat is a printf conversion with a field width or precision of
// four digits or more, or one taken from an argument: the builtin would
// build the whole field in memory.
var wideFormat = regexp.MustCompile(`%[-+ #0']*(\*|[0-9]{4,}|[0-9]*\.(\*|[0-9]{4,}))`)

// sandbox is one script run: its session and the budgets nested shells
// share.
type sandbox struct {
	ss       *session
	depth    int
	commands *atomic.Int64
	output   *atomic.Int64
	// ran lists the commands, for the log.
	mu  *sync.Mutex
	ran *[]string
}

// capWriter stops writing once the script's output budget is spent.
type capWriter struct {
	w    io.Writer
	left *atomic.Int64
}

var errOutputLimit = fmt.Errorf("output larger than %d bytes: stopped", maxScriptOutput)

func (c capWriter) Write(p []byte) (int, error) {
	if c.left.Add(-int64(len(p))) < 0 {
		return 0, errOutputLimit
	}
	return c.w.Write(p)
}

// runShell runs an exec string as a script, with the session's channel as
// its standard input.
func (ss *session) runShell(stdin io.Reader, stdout, stderr io.Writer, src string) int {
	ctx, cancel := context.WithTimeout(context.Background(), ScriptTimeout)
	defer cancel()
	var commands, output atomic.Int64
	output.Store(maxScriptOutput)
	ran := []string{}
	sb := &sandbox{ss: ss, commands: &commands, output: &output, mu: &sync.Mutex{}, ran: &ran}
	code := sb.run(ctx, src, io.LimitReader(stdin, maxScriptStdin), capWriter{stdout, &output}, capWriter{stderr, &output}, nil)
	sb.mu.Lock()
	ss.s.log.Info().Str("addr", ss.ip).Int("bytes", len(src)).Strs("commands", ran).Int("exit", code).
		Msg("pairing: shell script ran")
	sb.mu.Unlock()
	return code
}

// run parses and runs one script; params are its positional parameters
// and options (interp.Params).
func (sb *sandbox) run(ctx context.Context, src string, stdin io.Reader, stdout, stderr io.Writer, params []string) int {
	log := sb.ss.s.log
	if len(src) > MaxScript {
		fmt.Fprintf(stderr, "qnetd pairing: script larger than %d bytes: refused\n", MaxScript)
		log.Warn().Str("addr", sb.ss.ip).Int("bytes", len(src)).Msg("pairing: shell script refused: too large")
		return ExitRefused
	}
	f, err := syntax.NewParser().Parse(strings.NewReader(src), "sh")
	if err != nil {
		fmt.Fprintf(stderr, "sh: %v\n", err)
		return 2
	}
	if err := checkScript(f); err != nil {
		fmt.Fprintf(stderr, "qnetd pairing: script refused: %v. %s.\n", err, allowedHelp)
		log.Warn().Str("addr", sb.ss.ip).Str("reason", err.Error()).Str("script", clip(src)).Msg("pairing: shell script refused")
		return ExitRefused
	}
	opts := []interp.RunnerOption{
		interp.StdIO(stdin, stdout, stderr),
		interp.Env(expand.ListEnviron("HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh",
			"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "PWD=/root", "LANG=C")),
		interp.CallHandler(sb.call),
		interp.ExecHandlers(func(interp.ExecHandlerFunc) interp.ExecHandlerFunc { return sb.exec }),
		interp.OpenHandler(sb.open),
		interp.StatHandler(sb.stat),
		interp.AccessHandler(sb.access),
		interp.ReadDirHandler2(sb.readDir),
	}
	if len(params) > 0 {
		opts = append(opts, interp.Params(params...))
	}
	r, err := interp.New(opts...)
	if err != nil {
		fmt.Fprintf(stderr, "sh: %v\n", err)
		return 2
	}
	r.Dir = "/root"
	err = r.Run(ctx, f)
	var refused *errScript
	switch {
	case errors.As(err, &refused):
		fmt.Fprintf(stderr, "qnetd pairing: %v. %s.\n", err, allowedHelp)
		log.Warn().Str("addr", sb.ss.ip).Str("reason", err.Error()).Msg("pairing: shell script stopped")
		return ExitRefused
	case ctx.Err() != nil:
		// whatever the command that was cut short made of it
		fmt.Fprintf(stderr, "qnetd pairing: script stopped after %s\n", ScriptTimeout)
		log.Warn().Str("addr", sb.ss.ip).Dur("limit", ScriptTimeout).Msg("pairing: shell script stopped: time limit")
		return 124
	}
	if status, ok := interp.IsExitStatus(err); ok {
		return int(status)
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "sh: %v\n", err)
	return 1
}

// call sees every command, builtins included, after expansion.
func (sb *sandbox) call(ctx context.Context, args []string) ([]string, error) {
	if sb.commands.Add(1) > maxScriptCommands {
		return nil, refusedScript("more than %d commands", maxScriptCommands)
	}
	if what, ok := forbiddenBuiltins[args[0]]; ok {
		return nil, refusedScript("%s is not allowed", what)
	}
	switch args[0] {
	case "printf":
		for _, a := range args[1:] {
			if wideFormat.MatchString(a) {
				return nil, refusedScript("printf field widths of 1000 and more are not allowed")
			}
		}
	case "cd", "pwd":
		for _, a := range args[1:] {
			if a == "-P" {
				return nil, refusedScript("%s -P is not allowed", args[0])
			}
		}
	}
	sb.mu.Lock()
	if len(*sb.ran) < 64 {
		*sb.ran = append(*sb.ran, clip(strings.Join(args, " ")))
	}
	sb.mu.Unlock()
	return args, nil
}

// exec runs an external command: a virtual one, or a refusal.
func (sb *sandbox) exec(ctx context.Context, args []string) error {
	hc := interp.HandlerCtx(ctx)
	code := sb.command(ctx, hc, args)
	if code == 0 {
		return nil
	}
	return interp.NewExitStatus(uint8(code))
}

func (sb *sandbox) command(ctx context.Context, hc interp.HandlerContext, args []string) int {
	ss := sb.ss
	name := commandName(args[0])
	switch name {
	case "sudo":
		rest, err := sudoCommand(args[1:])
		if err != nil {
			fmt.Fprintf(hc.Stderr, "sudo: %v\n", err)
			return 1
		}
		return sb.command(ctx, hc, rest)
	case "sh", "bash", "dash":
		return sb.nested(ctx, hc, name, args[1:])
	case "corosync-qnetd-certutil":
		return ss.certutil(hc.Stdout, hc.Stderr, args[1:])
	case "corosync-qnetd-tool":
		return ss.tool(hc.Stdout, hc.Stderr, args[1:])
	case "dpkg-query", "dpkg":
		return dpkgQuery(hc, name, args[1:])
	case "rpm":
		return rpmQuery(hc, args[1:])
	case "systemctl":
		return sb.systemctl(hc, args[1:])
	case "mkdir":
		return sb.mkdir(hc, args[1:])
	case "rm", "rmdir":
		return sb.rm(hc, name, args[1:])
	case "cat":
		return sb.cat(hc, args[1:])
	}
	fmt.Fprintf(hc.Stderr, "qnetd pairing: %s: command not allowed. %s.\n", clip(args[0]), allowedHelp)
	ss.s.log.Warn().Str("addr", ss.ip).Str("command", clip(strings.Join(args, " "))).Msg("pairing: refused command in a shell script")
	return ExitRefused
}

// sudoCommand strips sudo's options that keep the user root; the
// session is root already.
func sudoCommand(args []string) ([]string, error) {
	errUser := errors.New("only root is available on this endpoint")
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "--":
			if len(args) == 1 {
				return nil, errors.New("no command")
			}
			return args[1:], nil
		case a == "-u" || a == "--user":
			if len(args) < 2 || !rootUser(args[1]) {
				return nil, errUser
			}
			args = args[2:]
		case strings.HasPrefix(a, "--user="):
			if !rootUser(strings.TrimPrefix(a, "--user=")) {
				return nil, errUser
			}
			args = args[1:]
		case sudoHarmless[a]:
			args = args[1:]
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("option %s is not available on this endpoint", clip(a))
		default:
			return args, nil
		}
	}
	return nil, errors.New("no command")
}

// sudoHarmless are the sudo options that change nothing for root.
var sudoHarmless = map[string]bool{"-H": true, "-E": true, "-n": true, "-S": true, "-HE": true, "-EH": true,
	"--set-home": true, "--preserve-env": true, "--non-interactive": true, "--stdin": true}

func rootUser(u string) bool { return u == "root" || u == "#0" }

// nested runs sh or bash inside a script: "sh -c SCRIPT [NAME [ARGS]]",
// or "sh" (or "sh -s") reading the script from its standard input.
func (sb *sandbox) nested(ctx context.Context, hc interp.HandlerContext, name string, args []string) int {
	if sb.depth+1 > maxShellDepth {
		fmt.Fprintf(hc.Stderr, "qnetd pairing: %s: shells nest at most %d deep\n", name, maxShellDepth)
		return ExitRefused
	}
	var opts []string
	script, fromArg := "", false
	for len(args) > 0 && (strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[0], "+")) && args[0] != "-" && args[0] != "--" {
		a := args[0]
		args = args[1:]
		if strings.ContainsRune(a, 'c') {
			if len(args) == 0 {
				fmt.Fprintf(hc.Stderr, "%s: -c: option requires an argument\n", name)
				return 2
			}
			script, fromArg, args = args[0], true, args[1:]
			a = strings.ReplaceAll(a, "c", "")
		}
		a = strings.ReplaceAll(a, "s", "")
		if a != "-" && a != "+" {
			opts = append(opts, a)
		}
	}
	if len(args) > 0 && (args[0] == "-" || args[0] == "--") {
		args = args[1:]
	}
	stdin := hc.Stdin
	if !fromArg {
		if len(args) > 0 {
			fmt.Fprintf(hc.Stderr, "qnetd pairing: %s: running script files is not allowed; send the script on standard input\n", name)
			return ExitRefused
		}
		data, err := io.ReadAll(io.LimitReader(hc.Stdin, MaxScript+1))
		if err != nil {
			fmt.Fprintf(hc.Stderr, "%s: %v\n", name, err)
			return 2
		}
		script, stdin = string(data), strings.NewReader("")
	} else if len(args) > 0 {
		args = args[1:] // $0
	}
	params := append(opts, "--")
	params = append(params, args...)
	child := *sb
	child.depth++
	return child.run(ctx, script, stdin, hc.Stdout, hc.Stderr, params)
}

// absPath is p relative to the script's directory, cleaned.
func absPath(hc interp.HandlerContext, p string) string {
	if !path.IsAbs(p) {
		p = path.Join(hc.Dir, p)
	}
	return path.Clean(p)
}

// devNull is /dev/null.
type devNull struct{}

func (devNull) Read([]byte) (int, error)    { return 0, io.EOF }
func (devNull) Write(p []byte) (int, error) { return len(p), nil }
func (devNull) Close() error                { return nil }

type writeOnly struct{ io.Writer }

func (writeOnly) Read([]byte) (int, error) { return 0, errors.New("not readable") }
func (writeOnly) Close() error             { return nil }

type readOnly struct{ io.Reader }

func (readOnly) Write([]byte) (int, error) { return 0, os.ErrPermission }
func (readOnly) Close() error              { return nil }

// open serves redirections: /dev/null, /dev/stdout, /dev/stderr, and the
// served files read-only.
func (sb *sandbox) open(ctx context.Context, p string, flag int, _ os.FileMode) (io.ReadWriteCloser, error) {
	hc := interp.HandlerCtx(ctx)
	p = absPath(hc, p)
	switch p {
	case "/dev/null":
		return devNull{}, nil
	case "/dev/stdout":
		return writeOnly{hc.Stdout}, nil
	case "/dev/stderr":
		return writeOnly{hc.Stderr}, nil
	}
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_TRUNC) != 0 {
		sb.ss.s.log.Warn().Str("addr", sb.ss.ip).Str("path", clip(p)).Msg("pairing: shell script may not write files")
		return nil, &fs.PathError{Op: "open", Path: p, Err: fmt.Errorf("%w: scripts write no files here; upload with scp or sftp", os.ErrPermission)}
	}
	n, err := sb.ss.s.resolve(p)
	if err != nil {
		return nil, err // names the path already
	}
	if n.kind == vDir {
		return nil, &fs.PathError{Op: "open", Path: p, Err: errors.New("is a directory")}
	}
	data, _, err := readServed(n.real)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
	}
	return readOnly{bytes.NewReader(data)}, nil
}

// stat answers test -e/-f/-d and cd from the virtual tree.
func (sb *sandbox) stat(ctx context.Context, name string, _ bool) (fs.FileInfo, error) {
	hc := interp.HandlerCtx(ctx)
	p := absPath(hc, name)
	if shellDirs[p] || sb.ss.s.locks.has(p) {
		return fileInfo{name: path.Base(p), mode: fs.ModeDir | 0o755}, nil
	}
	if p == "/dev/null" {
		return fileInfo{name: "null", mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}, nil
	}
	n, err := sb.ss.s.resolve(p)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: os.ErrNotExist}
	}
	fi, err := sb.ss.s.stat(n)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: os.ErrNotExist}
	}
	return fi, nil
}

// access: what exists may be read; directories may be entered; only
// uploads and lock directories may be written.
func (sb *sandbox) access(ctx context.Context, p string, mode interp.AccessMode) error {
	fi, err := sb.stat(ctx, p, true)
	if err != nil {
		return err
	}
	denied := &fs.PathError{Op: "access", Path: p, Err: os.ErrPermission}
	if mode&interp.AccessExec != 0 && !fi.IsDir() {
		return denied
	}
	if mode&interp.AccessWrite != 0 {
		n, err := sb.ss.s.resolve(p)
		if (err != nil || n.kind != vTmpFile) && !sb.ss.s.locks.has(absPath(interp.HandlerCtx(ctx), p)) {
			return denied
		}
	}
	return nil
}

// readDir serves globbing from the virtual tree.
func (sb *sandbox) readDir(ctx context.Context, p string) ([]fs.DirEntry, error) {
	hc := interp.HandlerCtx(ctx)
	p = absPath(hc, p)
	var infos []os.FileInfo
	if p == RunPath {
		for _, l := range sb.ss.s.locks.list() {
			infos = append(infos, fileInfo{name: path.Base(l), mode: fs.ModeDir | 0o755})
		}
	} else if n, err := sb.ss.s.resolve(p); err == nil {
		infos, _ = sb.ss.s.list(n)
	}
	out := make([]fs.DirEntry, 0, len(infos))
	for _, fi := range infos {
		out = append(out, fs.FileInfoToDirEntry(fi))
	}
	return out, nil
}
