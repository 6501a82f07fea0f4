package pairing

import (
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"mvdan.cc/sh/v3/interp"

	"github.com/qnetd-addon/qnetd/internal/version"
)

// The virtual commands of the pairing shell (shell.go): what crmsh asks of
// a qnetd host, answered as the running add-on is.

// qnetdPackage and qnetdUnit are what crmsh asks about.
const (
	qnetdPackage = "corosync-qnetd"
	qnetdUnit    = "corosync-qnetd"
)

func packageVersion() string { return version.Core + "-1" }

// dpkgQuery answers "dpkg-query --status|-s|-W PKG" and "dpkg -s PKG".
func dpkgQuery(hc interp.HandlerContext, prog string, args []string) int {
	mode, pkgs := "", []string{}
	for _, a := range args {
		switch a {
		case "-s", "--status":
			mode = "status"
		case "-W", "--show":
			mode = "show"
		default:
			if strings.HasPrefix(a, "-") {
				fmt.Fprintf(hc.Stderr, "%s: option %s is not available on this endpoint\n", prog, clip(a))
				return 2
			}
			pkgs = append(pkgs, a)
		}
	}
	if mode == "" || len(pkgs) == 0 {
		fmt.Fprintf(hc.Stderr, "%s: this endpoint answers only %s -s|--status PACKAGE\n", prog, prog)
		return 2
	}
	code := 0
	for _, p := range pkgs {
		if p != qnetdPackage {
			fmt.Fprintf(hc.Stderr, "dpkg-query: package '%s' is not installed and no information is available\n", clip(p))
			code = 1
			continue
		}
		if mode == "show" {
			fmt.Fprintf(hc.Stdout, "%s\t%s\n", p, packageVersion())
			continue
		}
		fmt.Fprintf(hc.Stdout, "Package: %s\nStatus: install ok installed\nVersion: %s\nDescription: cluster engine quorum device network daemon (the Home Assistant add-on)\n\n",
			p, packageVersion())
	}
	return code
}

// rpmQuery answers "rpm -q [--quiet] PKG".
func rpmQuery(hc interp.HandlerContext, args []string) int {
	query, quiet, pkgs := false, false, []string{}
	for _, a := range args {
		switch a {
		case "-q", "--query":
			query = true
		case "--quiet":
			quiet = true
		default:
			if strings.HasPrefix(a, "-") {
				fmt.Fprintf(hc.Stderr, "rpm: option %s is not available on this endpoint\n", clip(a))
				return 1
			}
			pkgs = append(pkgs, a)
		}
	}
	if !query || len(pkgs) == 0 {
		fmt.Fprintln(hc.Stderr, "rpm: this endpoint answers only rpm -q [--quiet] PACKAGE")
		return 1
	}
	code := 0
	for _, p := range pkgs {
		switch {
		case p != qnetdPackage:
			if !quiet {
				fmt.Fprintf(hc.Stdout, "package %s is not installed\n", clip(p))
			}
			code = 1
		case !quiet:
			fmt.Fprintf(hc.Stdout, "%s-%s\n", p, packageVersion())
		}
	}
	return code
}

// systemctl answers for corosync-qnetd as the running add-on is: active
// and enabled; it cannot be stopped from here. Other units do not exist.
func (sb *sandbox) systemctl(hc interp.HandlerContext, args []string) int {
	quiet, words, code := systemctlArgs(hc, args)
	if code != 0 {
		return code
	}
	r := systemctlRun{sb: sb, hc: hc, quiet: quiet}
	verb, units := words[0], words[1:]
	switch verb {
	case "is-active":
		return r.isActive(units)
	case "is-enabled":
		return r.isEnabled(units)
	case "list-unit-files":
		return r.listUnitFiles(units)
	case "status":
		return r.status(units)
	case "start", "enable", "restart", "reload", "try-restart", "reload-or-restart", "try-reload-or-restart":
		return r.start(verb, units)
	case "stop", "disable", "kill", "mask":
		fmt.Fprintf(hc.Stderr, "qnetd pairing: corosync-qnetd here is the Home Assistant add-on; stop or disable it in Home Assistant\n")
		sb.ss.s.log.Warn().Str("addr", sb.ss.ip).Str("verb", verb).Msg("pairing: refused systemctl: the add-on is stopped in Home Assistant")
		return 1
	}
	fmt.Fprintf(hc.Stderr, "systemctl: %s is not available on this endpoint\n", clip(verb))
	return 1
}

// systemctlArgs splits systemctl's arguments into -q and the words (verb
// and units); other harmless options are ignored, the rest refused (code
// 1, with the reason on stderr).
func systemctlArgs(hc interp.HandlerContext, args []string) (quiet bool, words []string, code int) {
	for _, a := range args {
		switch {
		case a == "-q" || a == "--quiet":
			quiet = true
		case a == "--now" || a == "--no-pager" || a == "--no-legend" || a == "--system" || a == "--no-ask-password":
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(hc.Stderr, "systemctl: option %s is not available on this endpoint\n", clip(a))
			return false, nil, 1
		default:
			words = append(words, a)
		}
	}
	if len(words) == 0 {
		fmt.Fprintln(hc.Stderr, "systemctl: this endpoint answers is-active, is-enabled, list-unit-files, status, start, enable, restart for corosync-qnetd")
		return false, nil, 1
	}
	return quiet, words, 0
}

// systemctlRun is one systemctl call; with quiet its answers are not
// printed (its errors are).
type systemctlRun struct {
	sb    *sandbox
	hc    interp.HandlerContext
	quiet bool
}

func (r systemctlRun) out(s string) {
	if !r.quiet {
		fmt.Fprintln(r.hc.Stdout, s)
	}
}

func ourUnit(u string) bool { return strings.TrimSuffix(u, ".service") == qnetdUnit }

func (r systemctlRun) isActive(units []string) int {
	code := 0
	for _, u := range units {
		if ourUnit(u) {
			r.out("active")
		} else {
			r.out("inactive")
			code = 3
		}
	}
	return code
}

func (r systemctlRun) isEnabled(units []string) int {
	code := 0
	for _, u := range units {
		if ourUnit(u) {
			r.out("enabled")
		} else {
			fmt.Fprintf(r.hc.Stderr, "Failed to get unit file state for %s: No such file or directory\n", clip(u))
			code = 1
		}
	}
	return code
}

func (r systemctlRun) listUnitFiles(patterns []string) int {
	match := len(patterns) == 0
	for _, u := range patterns {
		if ok, _ := path.Match(u, qnetdUnit+".service"); ok || ourUnit(u) {
			match = true
		}
	}
	if !match {
		r.out("0 unit files listed.")
		return 1
	}
	r.out("UNIT FILE              STATE   PRESET\n" + qnetdUnit + ".service enabled enabled\n\n1 unit files listed.")
	return 0
}

func (r systemctlRun) status(units []string) int {
	code := 0
	for _, u := range units {
		if !ourUnit(u) {
			fmt.Fprintf(r.hc.Stderr, "Unit %s could not be found.\n", clip(u))
			code = 4
			continue
		}
		r.out("● " + qnetdUnit + ".service - Corosync Qdevice Network daemon (Home Assistant add-on)\n     Active: active (running)")
	}
	return code
}

// start answers start, enable, restart and the like: the add-on runs
// corosync-qnetd already, so there is nothing to do.
func (r systemctlRun) start(verb string, units []string) int {
	code := 0
	for _, u := range units {
		if !ourUnit(u) {
			fmt.Fprintf(r.hc.Stderr, "Failed to %s %s: Unit %s not found.\n", verb, clip(u), clip(u))
			code = 5
		}
	}
	if code == 0 {
		r.sb.ss.s.log.Info().Str("addr", r.sb.ss.ip).Str("verb", verb).
			Msg("pairing: systemctl for corosync-qnetd: the add-on runs it already, nothing to do")
	}
	return code
}

// lockDirs are the directories scripts make in /run: crmsh's remote
// locks (mkdir is atomic, rm -rf releases). They live in memory, like
// /run on a host, and a forgotten one goes after lockDirAge.
type lockDirs struct {
	mu   sync.Mutex
	dirs map[string]time.Time
}

func (l *lockDirs) expire(now time.Time) {
	for d, t := range l.dirs {
		if now.Sub(t) > lockDirAge {
			delete(l.dirs, d)
		}
	}
}

func (l *lockDirs) has(p string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(time.Now())
	_, ok := l.dirs[p]
	return ok
}

func (l *lockDirs) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(time.Now())
	out := make([]string, 0, len(l.dirs))
	for d := range l.dirs {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// errLockExists and errLockFull are mkdir's failures.
var (
	errLockExists = fmt.Errorf("File exists")
	errLockFull   = fmt.Errorf("No space left on device (at most %d directories in %s)", maxLockDirs, RunPath)
)

func (l *lockDirs) make(p string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(time.Now())
	if l.dirs == nil {
		l.dirs = map[string]time.Time{}
	}
	if _, ok := l.dirs[p]; ok {
		return errLockExists
	}
	if len(l.dirs) >= maxLockDirs {
		return errLockFull
	}
	l.dirs[p] = time.Now()
	return nil
}

func (l *lockDirs) remove(p string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.dirs[p]
	delete(l.dirs, p)
	return ok
}

// lockPath reports whether p may be a lock directory: one plain name
// directly in /run.
func lockPath(p string) bool {
	dir, name := path.Split(p)
	if path.Clean(dir) != RunPath || name == "" || name == "." || name == ".." || len(name) > 64 {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// splitOpts separates "-x"-style options from operands ("--" ends them).
func splitOpts(args []string) (opts string, operands []string) {
	for i, a := range args {
		if a == "--" {
			return opts, append(operands, args[i+1:]...)
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			opts += strings.TrimLeft(a, "-") + " "
			continue
		}
		operands = append(operands, a)
	}
	return opts, operands
}

// mkdir makes lock directories in /run.
func (sb *sandbox) mkdir(hc interp.HandlerContext, args []string) int {
	opts, dirs := splitOpts(args)
	parents := strings.Contains(opts, "p") || strings.Contains(opts, "parents")
	if len(dirs) == 0 {
		fmt.Fprintln(hc.Stderr, "mkdir: missing operand")
		return 1
	}
	code := 0
	for _, d := range dirs {
		p := absPath(hc, d)
		if parents && (shellDirs[p] || p == "/") {
			continue
		}
		if !lockPath(p) {
			fmt.Fprintf(hc.Stderr, "mkdir: cannot create directory '%s': Permission denied (only %s/NAME)\n", clip(d), RunPath)
			sb.ss.s.log.Warn().Str("addr", sb.ss.ip).Str("path", clip(p)).Msg("pairing: refused mkdir outside " + RunPath)
			code = 1
			continue
		}
		if err := sb.ss.s.locks.make(p); err != nil && !(parents && err == errLockExists) {
			fmt.Fprintf(hc.Stderr, "mkdir: cannot create directory '%s': %v\n", clip(d), err)
			code = 1
		}
	}
	return code
}

// rm removes lock directories and uploaded requests.
func (sb *sandbox) rm(hc interp.HandlerContext, prog string, args []string) int {
	opts, targets := splitOpts(args)
	force := prog == "rm" && strings.ContainsAny(opts, "f")
	if len(targets) == 0 && !force {
		fmt.Fprintf(hc.Stderr, "%s: missing operand\n", prog)
		return 1
	}
	code := 0
	for _, t := range targets {
		p := absPath(hc, t)
		if sb.ss.s.locks.remove(p) {
			continue
		}
		if n, err := sb.ss.s.resolve(p); err == nil && n.kind == vTmpFile && prog == "rm" {
			if err := removeUpload(n.real); err == nil || force {
				continue
			}
		}
		switch {
		case lockPath(p) && force:
		case lockPath(p):
			fmt.Fprintf(hc.Stderr, "%s: cannot remove '%s': No such file or directory\n", prog, clip(t))
			code = 1
		default:
			fmt.Fprintf(hc.Stderr, "%s: cannot remove '%s': Permission denied\n", prog, clip(t))
			code = 1
		}
	}
	return code
}

// cat prints served files, or its standard input.
func (sb *sandbox) cat(hc interp.HandlerContext, args []string) int {
	opts, files := splitOpts(args)
	if opts != "" {
		fmt.Fprintln(hc.Stderr, "cat: options are not available on this endpoint")
		return 1
	}
	if len(files) == 0 {
		if _, err := io.Copy(hc.Stdout, hc.Stdin); err != nil {
			fmt.Fprintf(hc.Stderr, "cat: %v\n", err)
			return 1
		}
		return 0
	}
	code := 0
	for _, f := range files {
		p := absPath(hc, f)
		if p == "/dev/null" {
			continue
		}
		n, err := sb.ss.s.resolve(p)
		var data []byte
		if err == nil && n.kind != vDir {
			data, _, err = readServed(n.real)
		} else if err == nil {
			err = fmt.Errorf("Is a directory")
		}
		if err != nil {
			fmt.Fprintf(hc.Stderr, "cat: %s: No such file or directory\n", clip(f))
			code = 1
			continue
		}
		if _, err := hc.Stdout.Write(data); err != nil {
			return 1
		}
		if n.kind == vCert {
			sb.ss.s.fetched(n, sb.ss.ip)
		}
	}
	return code
}

// removeUpload removes an uploaded file (never a link's target).
func removeUpload(real string) error {
	if _, err := statReal(real); err != nil {
		return err
	}
	return os.Remove(real)
}
