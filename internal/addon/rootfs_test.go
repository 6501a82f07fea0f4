package addon

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/daemon"
)

// The rootfs scripts run in a bubblewrap sandbox laid out like the add-on
// container: /etc/s6-overlay from the repository, /data and /config from
// temp dirs, the built binary and stand-ins for s6-overlay's with-contenv,
// bashio and halt on PATH under /command.

func requireTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") != "" || os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
				t.Fatalf("%s is not installed (make test installs it)", n)
			}
			t.Skipf("%s is not installed (make test installs it)", n)
		}
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the qnetd binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qnetd-addon-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "qnetd")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/qnetd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

type sandbox struct {
	t    *testing.T
	root string // host side of the sandbox's writable dirs
	// webAddr is the status page's address, read from the daemon's start
	// line: the daemon binds port 0, so no port is guessed.
	webAddr string
	// env, name and value pairs, overrides the sandbox's environment.
	env []string
}

const withContenv = `#!/bin/sh
# stand-in for s6-overlay's with-contenv: the environment is already the container's
exec "$@"
`

const bashioStandIn = `#!/bin/bash
# stand-in for bashio: the functions the scripts use, then the script itself
bashio::log.info() { echo "[INFO] $*" >&2; }
bashio::log.warning() { echo "[WARNING] $*" >&2; }
bashio::log.error() { echo "[ERROR] $*" >&2; }
script=$1
shift
# shellcheck disable=SC1090
source "$script" "$@"
`

const haltStandIn = `#!/bin/sh
# stand-in for s6-overlay's halt: record that the container would stop
echo halted > /run/halted
`

func newSandbox(t *testing.T, options string) *sandbox {
	requireTool(t, "bwrap", "execlineb")
	if os.Geteuid() != 0 {
		t.Skip("the sandbox runs the daemon as root, as the container does")
	}
	sb := &sandbox{t: t, root: t.TempDir()}
	for _, d := range []string{"data", "config", "command", "run/s6/basedir/bin", "run/s6-linux-init-container-results", "tmp"} {
		require.NoError(t, os.MkdirAll(filepath.Join(sb.root, d), 0o755))
	}
	write := func(rel, content string, mode os.FileMode) {
		require.NoError(t, os.WriteFile(filepath.Join(sb.root, rel), []byte(content), mode))
	}
	write("command/with-contenv", withContenv, 0o755)
	write("command/bashio", bashioStandIn, 0o755)
	write("run/s6/basedir/bin/halt", haltStandIn, 0o755)
	write("data/options.json", options, 0o644)
	data, err := os.ReadFile(binary(t))
	require.NoError(t, err)
	write("command/qnetd", string(data), 0o755)
	require.NoError(t, os.Symlink("qnetd", filepath.Join(sb.root, "command/corosync-qnetd-tool")))
	return sb
}

// cmd builds a bwrap command running argv inside the sandbox.
func (sb *sandbox) cmd(argv ...string) *exec.Cmd {
	abs, err := filepath.Abs("../../rootfs/etc/s6-overlay")
	require.NoError(sb.t, err)
	args := []string{
		"--ro-bind", "/usr", "/usr",
		"--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
		"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
		"--dir", "/etc",
		"--ro-bind", "/etc/passwd", "/etc/passwd", "--ro-bind", "/etc/group", "/etc/group",
		"--ro-bind", "/etc/nsswitch.conf", "/etc/nsswitch.conf",
		"--ro-bind", abs, "/etc/s6-overlay",
		"--bind", filepath.Join(sb.root, "data"), "/data",
		"--bind", filepath.Join(sb.root, "config"), "/config",
		"--bind", filepath.Join(sb.root, "run"), "/run",
		"--bind", filepath.Join(sb.root, "tmp"), "/tmp",
		"--ro-bind", filepath.Join(sb.root, "command"), "/command",
		"--proc", "/proc", "--dev", "/dev",
		"--setenv", "PATH", "/command:/usr/bin:/usr/sbin",
		"--setenv", "QNETD_ADDON_INGRESS_ADDR", "127.0.0.1:0",
		"--setenv", "QNETD_ADDON_LISTEN", "127.0.0.1:0",
		"--setenv", "QNETD_ADDON_NSS_LINK", "/tmp/etc-corosync/qnetd/nssdb",
		"--setenv", "QNETD_ADDON_RUN", "/run/corosync-qnetd",
	}
	for i := 0; i+1 < len(sb.env); i += 2 {
		args = append(args, "--setenv", sb.env[i], sb.env[i+1])
	}
	c := exec.Command("bwrap", append(args, argv...)...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return c
}

func (sb *sandbox) health() (int, string) {
	resp, err := http.Get("http://" + sb.webAddr + "/health")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

const goodOptions = `{"port":5403,"log_level":"info","tls_enabled":true,"pairing_enabled":false,"pairing_port":22,"authorized_keys":[]}`

func TestRootfsInitRunHealthAndStop(t *testing.T) {
	sb := newSandbox(t, goodOptions)

	out, err := sb.cmd("execlineb", "-P", "/etc/s6-overlay/s6-rc.d/init-qnetd/up").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "created a new certificate authority")
	require.FileExists(t, filepath.Join(sb.root, "data/nssdb/qnetd-pki.pem"))
	require.FileExists(t, filepath.Join(sb.root, "data/nssdb/qnetd-cacert.crt"))

	run := sb.cmd("/etc/s6-overlay/s6-rc.d/qnetd/run")
	log := watchFor(startedLine)
	run.Stdout, run.Stderr = log, log
	require.NoError(t, run.Start())
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	defer func() { _ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL) }()

	// Every socket is bound once the start line is logged; it names the
	// status page's address.
	select {
	case m := <-log.found:
		sb.webAddr = m[2]
	case err := <-exited:
		t.Fatalf("daemon exited early (%v):\n%s", err, log.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon did not start:\n%s", log.String())
	}
	code, body := sb.health()
	require.Equal(t, http.StatusOK, code, "%s\n%s", body, log.String())
	require.JSONEq(t, `{"status":"ok","checks":{"engine":"ok","listener":"ok","pki":"ok"}}`, body)

	// Inside the container, the upstream tool name answers over the IPC socket.
	out, err = sb.cmd("corosync-qnetd-tool", "-s", "-p", "/run/corosync-qnetd/corosync-qnetd.sock").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "TLS:\t\t\t\tRequired (client certificate required)\n")
	// So does the daemon's own user, as whom the pairing endpoint runs the
	// tool for "ssh root@ha corosync-qnetd-tool" (Debian's corosync-qnetd,
	// which make test installs, creates that user).
	if _, _, ok := daemon.LookupUser("coroqnetd"); ok {
		out, err = sb.cmd("setpriv", "--reuid=coroqnetd", "--regid=coroqnetd", "--clear-groups",
			"corosync-qnetd-tool", "-s", "-p", "/run/corosync-qnetd/corosync-qnetd.sock").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "QNetd address:")
	}
	// The status page is served on the ingress port.
	resp, err := http.Get("http://" + sb.webAddr + "/")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(page), "<title>QNetd status</title>")

	// s6 signals the service's run process, which exec'd into the daemon:
	// the one child of bwrap.
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", run.Process.Pid, run.Process.Pid))
	require.NoError(t, err)
	daemon, err := strconv.Atoi(strings.Fields(string(kids))[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(daemon, syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "SIGTERM must end the daemon with exit 0\n%s", log.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon did not stop on SIGTERM\n%s", log.String())
	}
	require.Contains(t, log.String(), "shutting down")

	// finish: a clean stop, a crash and a kill leave the container
	// running (s6 restarts the daemon); only a daemon that could not start
	// halts it, with that exit code.
	for _, args := range [][]string{{"0", "0"}, {"1", "0"}, {"2", "0"}, {"256", "9"}} {
		out, err = sb.cmd(append([]string{"/etc/s6-overlay/s6-rc.d/qnetd/finish"}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.NoFileExists(t, filepath.Join(sb.root, "run/halted"), "finish %v", args)
	}
	require.Contains(t, string(out), "ended by signal 9")
	out, err = sb.cmd("/etc/s6-overlay/s6-rc.d/qnetd/finish", strconv.Itoa(ExitCannotStart), "0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "could not start")
	require.FileExists(t, filepath.Join(sb.root, "run/halted"))
	ec, err := os.ReadFile(filepath.Join(sb.root, "run/s6-linux-init-container-results/exitcode"))
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(ExitCannotStart)+"\n", string(ec))
}

// A daemon that cannot bind its port exits with ExitCannotStart, the code
// on which the finish script stops the container.
func TestRootfsRunCannotStart(t *testing.T) {
	sb := newSandbox(t, goodOptions)
	out, err := sb.cmd("execlineb", "-P", "/etc/s6-overlay/s6-rc.d/init-qnetd/up").CombinedOutput()
	require.NoError(t, err, "%s", out)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	sb.env = []string{"QNETD_ADDON_LISTEN", taken.Addr().String()}
	out, err = sb.cmd("/etc/s6-overlay/s6-rc.d/qnetd/run").CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", out)
	require.Equal(t, ExitCannotStart, ee.ExitCode(), "%s", out)
	require.Contains(t, string(out), "qnetd cannot start")
	require.Contains(t, string(out), "address already in use")
}

func TestRootfsBadOptionsStopTheStart(t *testing.T) {
	sb := newSandbox(t, `{"port":70000,"log_level":"info","tls_enabled":true,"pairing_enabled":false,"pairing_port":22,"authorized_keys":[]}`)
	out, err := sb.cmd("execlineb", "-P", "/etc/s6-overlay/s6-rc.d/init-qnetd/up").CombinedOutput()
	require.Error(t, err, "a bad option must fail the init stage")
	require.Contains(t, string(out), "option 'port': 70000 is not valid: a TCP port from 1 to 65535")
	require.NoFileExists(t, filepath.Join(sb.root, "data/nssdb/qnetd-pki.pem"), "nothing half-configured")
}

func TestShellcheck(t *testing.T) {
	requireTool(t, "shellcheck")
	scripts, err := filepath.Glob("../../rootfs/etc/s6-overlay/s6-rc.d/*/*")
	require.NoError(t, err)
	var checked []string
	for _, s := range scripts {
		if st, err := os.Stat(s); err != nil || st.IsDir() {
			continue
		}
		data, err := os.ReadFile(s)
		require.NoError(t, err)
		if !strings.HasPrefix(string(data), "#!") {
			continue
		}
		st, err := os.Stat(s)
		require.NoError(t, err)
		require.NotZero(t, st.Mode()&0o111, "%s must be executable", s)
		require.True(t, strings.HasPrefix(string(data), "#!/command/with-contenv bashio\n"), "%s: shebang", s)
		checked = append(checked, s)
	}
	require.Len(t, checked, 3)
	out, err := exec.Command("shellcheck", append([]string{"-s", "bash"}, checked...)...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, standIn := range []string{withContenv, bashioStandIn, haltStandIn} {
		c := exec.Command("shellcheck", "-")
		c.Stdin = strings.NewReader(standIn)
		out, err := c.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
}

// The test and build scripts, each checked from its own directory so that
// shellcheck follows what it sources.
func TestShellcheckScripts(t *testing.T) {
	requireTool(t, "shellcheck")
	var scripts []string
	for _, g := range []string{"../../scripts/*.sh", "../../test/*/*.sh"} {
		m, err := filepath.Glob(g)
		require.NoError(t, err)
		scripts = append(scripts, m...)
	}
	require.Contains(t, scripts, "../../test/container/run.sh")
	for _, s := range scripts {
		c := exec.Command("shellcheck", "-x", filepath.Base(s))
		c.Dir = filepath.Dir(s)
		out, err := c.CombinedOutput()
		require.NoError(t, err, "%s: %s", s, out)
	}
}

func TestS6Layout(t *testing.T) {
	base := "../../rootfs/etc/s6-overlay/s6-rc.d"
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(base, rel))
		require.NoError(t, err)
		return strings.TrimSpace(string(b))
	}
	require.Equal(t, "oneshot", read("init-qnetd/type"))
	require.Equal(t, "longrun", read("qnetd/type"))
	require.Equal(t, "/etc/s6-overlay/s6-rc.d/init-qnetd/run", read("init-qnetd/up"))
	require.FileExists(t, filepath.Join(base, "qnetd/dependencies.d/init-qnetd"))
	require.FileExists(t, filepath.Join(base, "user/contents.d/init-qnetd"))
	require.FileExists(t, filepath.Join(base, "user/contents.d/qnetd"))
}

// templateRules are the s6-overlay and bashio rules of Home Assistant's
// add-on template (home-assistant/addons-example, example/apparmor.txt):
// without them s6-overlay v3 cannot run its programs from /package and
// /command or its generated scripts under /run, and bashio cannot run.
var templateRules = []string{
	"file,",
	"signal (send) set=(kill,term,int,hup,cont),",
	"/init ix,",
	"/bin/** ix,",
	"/usr/bin/** ix,",
	"/run/{s6,s6-rc*,service}/** ix,",
	"/package/** ix,",
	"/command/** ix,",
	"/etc/services.d/** rwix,",
	"/etc/cont-init.d/** rwix,",
	"/etc/cont-finish.d/** rwix,",
	"/run/{,**} rwk,",
	"/dev/tty rw,",
	"/usr/lib/bashio/** ix,",
	"/tmp/** rwk,",
	"/data/** rw,",
}

// ourRules are what the add-on needs beyond the template: bashio's sourced
// files, the service scripts, the data, the import folder (addon_config),
// upstream's certificate path, the ports and dropping privileges.
var ourRules = []string{
	"/usr/lib/bashio/** r,",
	"/etc/s6-overlay/** rix,",
	"/usr/bin/qnetd rix,",
	"/data/** rwkl,",
	"/config/** rw,",
	"/etc/corosync/{,**} rwl,",
	"network inet stream,",
	"network inet6 stream,",
	"network unix stream,",
	"capability chown,",
	"capability setuid,",
	"capability setgid,",
	"capability net_bind_service,",
	"capability kill,",
}

func TestAppArmorProfile(t *testing.T) {
	data, err := os.ReadFile("../../apparmor.txt")
	require.NoError(t, err)
	rules := map[string]bool{}
	var profiles []string
	for _, line := range strings.Split(string(data), "\n") {
		rules[strings.TrimSpace(line)] = true
		// The Supervisor renames the one line that starts with "profile ".
		if strings.HasPrefix(line, "profile ") {
			profiles = append(profiles, line)
		}
	}
	require.Equal(t, []string{"profile qnetd flags=(attach_disconnected,mediate_deleted) {"}, profiles)
	for _, r := range append(append([]string{}, templateRules...), ourRules...) {
		require.True(t, rules[r], "apparmor.txt lacks %q", r)
	}

	requireTool(t, "apparmor_parser")
	out, err := exec.Command("apparmor_parser", "-Q", "-K", "../../apparmor.txt").CombinedOutput()
	require.NoError(t, err, "%s", out)
	// The check can fail: a profile with a syntax error does not compile.
	broken := filepath.Join(t.TempDir(), "apparmor.txt")
	require.NoError(t, os.WriteFile(broken, []byte(strings.Replace(string(data), "/init ix,", "/init ix", 1)), 0o644))
	out, err = exec.Command("apparmor_parser", "-Q", "-K", broken).CombinedOutput()
	require.Error(t, err, "%s", out)
}
