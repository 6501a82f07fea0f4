package pairing

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCrmsh441ExecStrings: what crmsh 4.4.1 (Debian 12) sends to the qnetd
// host for "crm cluster init qdevice", in its order, each as the exec
// string its ssh call makes (utils.get_stdout_or_raise_error, lock.py,
// ServiceManager, qdevice.py), with the file transfers by the real scp as
// parallax does them.
func TestCrmsh441ExecStrings(t *testing.T) {
	f := newSecFixture(t, func(cfg *Config) {
		// No cluster called hacluster yet: -l -c lists nothing.
		cfg.Tool = func(args []string, stdout, stderr io.Writer) int { return 0 }
	})
	ssh := func(cmd string) result {
		t.Helper()
		return f.c.ssh(f.ts, []string{"-o", "StrictHostKeyChecking=no"}, cmd)
	}
	steps := []struct {
		cmd  string
		code int
		out  string
	}{
		{"dpkg-query --status corosync-qnetd", 0, "Status: install ok installed"},
		{"systemctl is-active corosync-qnetd", 0, "active"},
		{"corosync-qnetd-tool -l -c hacluster", 0, ""},
		{"test -f /etc/corosync/qnetd/nssdb/cluster-hacluster.crt", 1, ""},
		{"mkdir /run/.crmsh_lock_directory", 0, ""},
		{"test -f /etc/corosync/qnetd/nssdb/qnetd-cacert.crt", 0, ""},
		{"rm -rf /run/.crmsh_lock_directory", 0, ""},
	}
	for _, s := range steps {
		r := ssh(s.cmd)
		require.Equal(t, s.code, r.code, "%s: %s", s.cmd, r)
		require.Contains(t, r.stdout, s.out, s.cmd)
	}
	// The lock is atomic: a second mkdir fails while the first holds it.
	require.Equal(t, 0, ssh("mkdir /run/.crmsh_lock_directory").code)
	r := ssh("mkdir /run/.crmsh_lock_directory")
	require.Equal(t, 1, r.code, r.String())
	require.Contains(t, r.stderr, "File exists")
	require.Equal(t, 0, ssh("rm -rf /run/.crmsh_lock_directory").code)

	// Step 2: parallax_slurp is scp of the CA; step 6 parallax_copy is scp
	// of the request into the nssdb directory; step 7 signs it there.
	local := t.TempDir()
	r = f.c.scp(f.ts, false, remote("/etc/corosync/qnetd/nssdb/qnetd-cacert.crt"), filepath.Join(local, "qnetd-cacert.crt"))
	require.Equal(t, 0, r.code, r.String())
	crq := filepath.Join(local, "qdevice-net-node.crq")
	require.NoError(t, os.WriteFile(crq, makeCSR(t, "hacluster"), 0o600))
	r = f.c.scp(f.ts, false, crq, remote("/etc/corosync/qnetd/nssdb/qdevice-net-node.crq.hacluster"))
	require.Equal(t, 0, r.code, r.String())
	r = ssh("corosync-qnetd-certutil -s -c /etc/corosync/qnetd/nssdb/qdevice-net-node.crq.hacluster -n hacluster")
	require.Equal(t, 0, r.code, r.String())
	r = f.c.scp(f.ts, false, remote("/etc/corosync/qnetd/nssdb/cluster-hacluster.crt"), filepath.Join(local, "cluster-hacluster.crt"))
	require.Equal(t, 0, r.code, r.String())
	require.FileExists(t, filepath.Join(f.ts.pkiDir, "cluster-hacluster.crt"))
	require.Equal(t, 0, ssh("test -f /etc/corosync/qnetd/nssdb/cluster-hacluster.crt").code, "the signed certificate shows")

	// Enabling and starting the service: the add-on runs it already.
	for _, s := range []struct {
		cmd  string
		code int
		out  string
	}{
		{"systemctl list-unit-files corosync-qnetd.service", 0, "corosync-qnetd.service enabled"},
		{"systemctl is-enabled corosync-qnetd.service", 0, "enabled"},
		{"systemctl enable corosync-qnetd.service", 0, ""},
		{"systemctl start corosync-qnetd.service", 0, ""},
		{"systemctl is-active firewalld.service", 3, "inactive"},
		{"rpm -q --quiet corosync-qnetd", 0, ""},
		{"rpm -q pacemaker", 1, "not installed"},
		{"dpkg-query --status pacemaker", 1, ""},
	} {
		r := ssh(s.cmd)
		require.Equal(t, s.code, r.code, "%s: %s", s.cmd, r)
		require.Contains(t, r.stdout, s.out, s.cmd)
	}
	r = ssh("systemctl stop corosync-qnetd.service")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "stop or disable it in Home Assistant")
	f.ts.log.wait(t, "pairing: shell script ran")
}

// TestCrmshStdinScripts: newer crmsh sends each remote command as a script
// on the standard input of /bin/sh, or of "sudo -H /bin/sh", and runs sftp
// through sudo; the scripts here are the shapes its source builds.
func TestCrmshStdinScripts(t *testing.T) {
	f := newSecFixture(t, nil)
	sh := func(shell, script string) result {
		t.Helper()
		args := append(f.c.opts("-p", fmt.Sprint(f.ts.port), "-o", "BatchMode=yes", "-o", "EscapeChar=none", "-T"), "-lroot", "127.0.0.1", shell)
		return f.c.run([]byte(script), "ssh", args...)
	}
	for _, shell := range []string{"/bin/sh", "/bin/bash", "sudo -H /bin/sh", "sudo -H -u root /bin/bash"} {
		r := sh(shell, "rpm -q --quiet corosync-qnetd || dpkg-query --status corosync-qnetd >/dev/null 2>&1\n")
		require.Equal(t, 0, r.code, "%s: %s", shell, r)
		r = sh(shell, "set -e\nmkdir /run/.crmsh_lock_directory\n")
		require.Equal(t, 0, r.code, "%s: %s", shell, r)
		r = sh(shell, "if [ -d /run/.crmsh_lock_directory ]; then echo locked; fi\nrm -rf /run/.crmsh_lock_directory\n")
		require.Equal(t, 0, r.code, "%s: %s", shell, r)
		require.Equal(t, "locked\n", r.stdout)
		r = sh(shell, "test -f /etc/corosync/qnetd/nssdb/qnetd-cacert.crt && systemctl is-active corosync-qnetd.service\n")
		require.Equal(t, 0, r.code, "%s: %s", shell, r)
		require.Equal(t, "active\n", r.stdout)
		r = sh(shell, `x=$(corosync-qnetd-tool -s | head -1)`)
		require.Equal(t, 127, r.code, "head is not available: %s", r)
	}
	// sftp through sudo, as crmsh 4.6 runs it: -s names the server.
	local := t.TempDir()
	crq := filepath.Join(local, "crq")
	require.NoError(t, os.WriteFile(crq, makeCSR(t, "suse"), 0o600))
	batch := fmt.Sprintf("get -p /etc/corosync/qnetd/nssdb/qnetd-cacert.crt %s/ca.crt\nput -p %s /etc/corosync/qnetd/nssdb/qdevice-net-node.crq.suse\n", local, crq)
	args := append(f.c.opts("-P", fmt.Sprint(f.ts.port), "-o", "BatchMode=yes", "-s", "sudo -H /usr/lib/openssh/sftp-server", "-b", "-"), "root@127.0.0.1")
	r := f.c.run([]byte(batch), "sftp", args...)
	require.Equal(t, 0, r.code, r.String())
	require.FileExists(t, filepath.Join(local, "ca.crt"))
	r = sh("sudo -H /bin/sh", "corosync-qnetd-certutil -s -c /etc/corosync/qnetd/nssdb/qdevice-net-node.crq.suse -n suse\n")
	require.Equal(t, 0, r.code, r.String())
	require.FileExists(t, filepath.Join(f.ts.pkiDir, "cluster-suse.crt"))
}

// TestShellEscapes: what a script might try to reach outside the sandbox
// through the interpreter's own features; nothing leaks, nothing real runs,
// nothing is written.
func TestShellEscapes(t *testing.T) {
	f := newSecFixture(t, nil)
	before := f.snap(t)
	canaryDir := filepath.Dir(f.canary)
	for script, want := range map[string]int{
		"echo $(id)":                        0,
		"x=`cat " + f.canary + "`; echo $x": 0,
		"cat < " + f.canary:                 1,
		"echo $(< /etc/shadow)":             1,
		"echo hi > /etc/evil":               1,
		"echo hi >> /tmp/x":                 1,
		"exec 3>/tmp/x":                     1,
		"cat <<EOF\n$(id)\nEOF":             0,
		"echo /etc/*":                       0,
		"echo " + canaryDir + "/*":          0,
		"cd /etc/corosync/qnetd/nssdb && cat qnetd-pki.pem": 1,
		"cd " + canaryDir:     1,
		"eval id":             127,
		". /etc/profile":      127,
		"source /etc/profile": 127,
		"trap id EXIT":        127,
		"alias x=id":          127,
		"type id":             127,
		"command -v id":       127,
		"builtin eval id":     127,
		"PATH=/tmp:$PATH; id": 127,
		"LD_PRELOAD=/tmp/x.so corosync-qnetd-certutil -i": 1,
		"sh -c 'sh -c \"sh -c id\"'":                      127,
		"f() { f; }; f":                                   127,
		"while :; do :; done":                             127,
		"for i in 1 2; do id; done":                       127,
		"id &":                                            127,
		"echo {1..100000000}":                             127,
		"x=aaaa; echo ${x//a/bbbbbbbb}":                   127,
		"printf '%1000000000d' 1":                         127,
		"printf '%*d' 1000000000 1":                       127,
		"cat /proc/self/environ":                          1,
		"ls /":                                            127,
		"/usr/bin/python3 -c 1":                           127,
		"mkdir /etc/x":                                    1,
		"mkdir /run/../etc/x":                             1,
		"rm -rf /etc/corosync/qnetd/nssdb/qnetd-cacert.crt": 1,
		"test -e " + f.canary:                               1,
		"[ -r " + f.canary + " ]":                           1,
		"kill -9 1":                                         127, // the process's own signals and umask stay out of reach
		"umask 000":                                         127,
		"ulimit -n 1":                                       127,
	} {
		r := f.c.ssh(f.ts, nil, script)
		assert.Equal(t, want, r.code, "%q: %s", script, r)
		f.noLeak(t, r.stdout, r.stderr)
		assert.NotContains(t, r.stdout, "uid=", script)
	}
	require.Equal(t, before, f.snap(t), "nothing written")
	require.NoFileExists(t, "/etc/evil")
	require.FileExists(t, filepath.Join(f.ts.pkiDir, "qnetd-cacert.crt"))
}

// TestShellBounds: every bound of the interpreter, with the message.
func TestShellBounds(t *testing.T) {
	f := newSecFixture(t, nil)
	doubling := func(n int) string {
		return "x=" + strings.Repeat("a", 1000) + strings.Repeat("\nx=$x$x", n) + "\necho ${#x}"
	}
	for _, c := range []struct {
		script, want string
		code         int
	}{
		{doubling(7), "128000", 0},
		{doubling(8), "more than 16 expansions", 127},
		{strings.Repeat(":\n", maxScriptStatements+1), "more than 256 statements", 127},
		{"echo " + strings.Repeat("a", MaxScript), "larger than", 127},
	} {
		r := f.c.ssh(f.ts, nil, c.script)
		require.Equal(t, c.code, r.code, "%.40q: %s", c.script, r)
		require.Contains(t, r.stdout+r.stderr, c.want)
	}
	// Commands in all, nested shells included.
	inner := strings.TrimSuffix(strings.Repeat(": ; ", 250), "; ")
	script := strings.TrimSuffix(strings.Repeat("sh -c '"+inner+"'\n", 5), "\n")
	r := f.c.ssh(f.ts, nil, script)
	require.Equal(t, 127, r.code, r.String())
	require.Contains(t, r.stderr, "more than 1024 commands")
	// Lock directories.
	for i := 0; i < maxLockDirs; i++ {
		require.Equal(t, 0, f.c.ssh(f.ts, nil, fmt.Sprintf("mkdir /run/lock%d", i)).code)
	}
	r = f.c.ssh(f.ts, nil, "mkdir /run/one-too-many")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "No space left on device")
	require.Equal(t, 0, f.c.ssh(f.ts, nil, "rm -rf /run/lock*").code, "globbing sees the lock directories")
	require.Equal(t, 0, f.c.ssh(f.ts, nil, "mkdir /run/again").code)
}

// sandboxFor is a sandbox on a bare session, for bounds that need a clock
// or a reader the SSH client cannot give.
func sandboxFor(t *testing.T) *sandbox {
	ts := startServer(t, nil)
	var commands, output atomic.Int64
	output.Store(maxScriptOutput)
	ran := []string{}
	return &sandbox{ss: &session{s: ts.s, ip: "192.0.2.9"}, commands: &commands, output: &output, mu: &sync.Mutex{}, ran: &ran}
}

// TestShellTimeLimit: a script that waits on its input forever is stopped
// when its time is up.
func TestShellTimeLimit(t *testing.T) {
	sb := sandboxFor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	var stderr strings.Builder
	code := sb.run(ctx, "read x", pr, io.Discard, &stderr, nil)
	require.Equal(t, 124, code, stderr.String())
	require.Contains(t, stderr.String(), "script stopped after")
}

// TestShellOutputLimit: output beyond the budget is not written.
func TestShellOutputLimit(t *testing.T) {
	var left atomic.Int64
	left.Store(10)
	var b strings.Builder
	w := capWriter{&b, &left}
	_, err := w.Write([]byte("12345"))
	require.NoError(t, err)
	_, err = w.Write([]byte("123456"))
	require.ErrorIs(t, err, errOutputLimit)
	require.Equal(t, "12345", b.String())
}

// TestShellWorstCaseMemory: the largest value an accepted script can build
// (a script of MaxScript bytes doubled as often as the expansions allow)
// stays within tens of megabytes.
func TestShellWorstCaseMemory(t *testing.T) {
	sb := sandboxFor(t)
	lit := strings.Repeat("a", MaxScript-200)
	script := "x=" + lit + strings.Repeat("\nx=$x$x", maxScriptExpansions/2)
	require.LessOrEqual(t, len(script), MaxScript)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	code := sb.run(context.Background(), script, strings.NewReader(""), io.Discard, io.Discard, nil)
	runtime.ReadMemStats(&after)
	require.Equal(t, 0, code)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("worst accepted script: %d bytes allocated", alloc)
	require.Less(t, alloc, uint64(128<<20))
}

// FuzzShellScript: any script, as a client sends it, is parsed, checked
// and run in the sandbox without a panic, within its time, writing
// nothing outside the uploads.
func FuzzShellScript(f *testing.F) {
	for _, s := range []string{"corosync-qnetd-tool -s", "mkdir /run/x && rm -rf /run/x", "x=$(cat /etc/corosync/qnetd/nssdb/qnetd-cacert.crt); echo ${#x}",
		"sh -c 'sudo -H /bin/sh'", "case $x in a) echo a;; esac", "[[ -d /run ]] && echo ${x:-y}", "cat <<EOF\n$HOME\nEOF", "echo *"} {
		f.Add(s)
	}
	root := f.TempDir()
	data, pkiDir := filepath.Join(root, "data"), filepath.Join(root, "nssdb")
	require.NoError(f, os.MkdirAll(pkiDir, 0o770))
	s, err := New(Config{DataDir: data, PKIDir: pkiDir, Log: zerolog.Nop()})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, src string) {
		var commands, output atomic.Int64
		output.Store(maxScriptOutput)
		ran := []string{}
		sb := &sandbox{ss: &session{s: s, ip: "192.0.2.9"}, commands: &commands, output: &output, mu: &sync.Mutex{}, ran: &ran}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		code := sb.run(ctx, src, strings.NewReader(""), capWriter{io.Discard, &output}, capWriter{io.Discard, &output}, nil)
		require.GreaterOrEqual(t, code, 0)
		require.LessOrEqual(t, code, 255)
	})
}

// TestRealCrmsh: Debian's crmsh 4.4.1 itself (test/crmsh/crmsh-qdevice.py
// drives crmsh.qdevice.QDevice as "crm cluster init qdevice" does) pairs
// with the endpoint on loopback: its ssh-copy-id with the one-time
// password, valid_qnetd, the remote lock, the CA, the upload into the nssdb
// directory, the signing and the certificate, enable and start. The
// container test runs the same against the add-on with real nodes.
func TestRealCrmsh(t *testing.T) {
	requireTools(t, "ssh", "scp", "ssh-copy-id", "ssh-keygen")
	if _, err := os.Stat("/usr/lib/python3/dist-packages/crmsh/qdevice.py"); err != nil {
		msg := "Debian's crmsh is not installed (apt-get install crmsh)"
		if os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ts := startServer(t, func(cfg *Config) {
		cfg.Tool = func(args []string, stdout, stderr io.Writer) int { return 0 } // no cluster hacluster yet
	})
	ot, err := ts.s.RenewOneTime()
	require.NoError(t, err)
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	require.NoError(t, os.WriteFile(pw, []byte(ot.Password+"\n"), 0o600))
	xfer := filepath.Join(dir, "xfer")
	require.NoError(t, os.MkdirAll(xfer, 0o700))
	script, err := filepath.Abs("../../test/crmsh/crmsh-ssh.sh")
	require.NoError(t, err)
	env := append(os.Environ(), "QNETD_HOST=127.0.0.1", "RIG_XFER="+xfer, "CRMSH_STATE="+filepath.Join(dir, "node"),
		"CRMSH_CLUSTER=hacluster", "PAIRING_PASSWORD_FILE="+pw, fmt.Sprintf("CRMSH_PORT=%d", ts.port))
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "crmsh-ssh.sh %v:\n%s", args, out)
		return string(out)
	}
	out := run("-i")
	require.Contains(t, out, "fetch_qnetd_crt_from_qnetd")
	require.FileExists(t, filepath.Join(xfer, "qnetd-cacert.crt"))
	csr := filepath.Join(dir, "qdevice-net-node.crq")
	require.NoError(t, os.WriteFile(csr, makeCSR(t, "hacluster"), 0o600))
	run("-s", "-c", csr, "-n", "hacluster")
	require.FileExists(t, filepath.Join(xfer, "cluster-hacluster.crt"))
	require.FileExists(t, filepath.Join(ts.pkiDir, "cluster-hacluster.crt"))
	for _, want := range []string{`"commands":["dpkg-query --status corosync-qnetd"]`, `"commands":["mkdir /run/.crmsh_lock_directory"]`,
		`"commands":["rm -rf /run/.crmsh_lock_directory"]`, "the one-time pairing password is used up",
		"signed certificate for a new cluster", `"commands":["systemctl start corosync-qnetd.service"]`} {
		require.Contains(t, ts.log.String(), want)
	}
	require.Equal(t, OneTimeUsed, ts.s.OneTime().View(time.Now()).State, "crmsh's key used it up")
}
