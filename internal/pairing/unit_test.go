package pairing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// The key-install commands ssh-copy-id sends (installkeys_sh, run through
// the shell as the script does): OpenSSH 8.4 (PVE 7), 9.2 (PVE 8) and the
// current one (10.x, PVE 9).
var sshCopyIDCommands = map[string]string{
	"8.4": `exec sh -c 'cd; umask 077; mkdir -p .ssh &&   { [ -z ` + "`tail -1c .ssh/authorized_keys 2>/dev/null`" + ` ] || echo >> .ssh/authorized_keys; } &&   cat >> .ssh/authorized_keys ||   exit 1; if type restorecon >/dev/null 2>&1; then   restorecon -F .ssh .ssh/authorized_keys; fi '`,
	"9.2": `exec sh -c 'cd; umask 077; mkdir -p ".ssh" && { [ -z ` + "`tail -1c .ssh/authorized_keys 2>/dev/null`" + ` ] || echo >> ".ssh/authorized_keys" || exit 1; } && cat >> ".ssh/authorized_keys" || exit 1; if type restorecon >/dev/null 2>&1; then restorecon -F ".ssh" ".ssh/authorized_keys"; fi '`,
	"10":  `exec sh -c ' cd; umask 077; AUTH_KEY_FILE=".ssh/authorized_keys"; [ -f /etc/openwrt_release ] && { [ "$LOGNAME" = "root" ] || [ "$(id -u)" = "0" ]; } && AUTH_KEY_FILE=/etc/dropbear/authorized_keys; [ "` + "`uname -s`" + `" = "Haiku" ] && AUTH_KEY_FILE=config/settings/ssh/authorized_keys; AUTH_KEY_DIR=` + "`dirname \"${AUTH_KEY_FILE}\"`" + `; mkdir -p "${AUTH_KEY_DIR}" && { [ -z "` + "`tail -1c \"${AUTH_KEY_FILE}\" 2>/dev/null`" + `" ] || echo >> "${AUTH_KEY_FILE}" || exit 1; } && cat >> "${AUTH_KEY_FILE}" || exit 1; if type restorecon >/dev/null 2>&1; then restorecon -F "${AUTH_KEY_DIR}" "${AUTH_KEY_FILE}"; fi '`,
}

func TestIsKeyInstall(t *testing.T) {
	for v, cmd := range sshCopyIDCommands {
		assert.True(t, isKeyInstall(cmd), v)
		words, err := splitWords(cmd)
		require.NoError(t, err)
		assert.Equal(t, []string{"exec", "sh", "-c"}, words[:3], "%s: only the shape is recognised, nothing is run", v)
	}
	for _, cmd := range []string{"exec sh -c 'id'", "cat >> .ssh/authorized_keys", "sh -c 'cat >> .ssh/authorized_keys'",
		"exec sh -c 'cat >> .ssh/authorized_keys", "exit", ""} {
		assert.False(t, isKeyInstall(cmd), cmd)
	}
}

// TestKeyInstallVariants: each ssh-copy-id version's command, sent with
// the password login and the keys on stdin, installs the keys (and only
// into our store).
func TestKeyInstallVariants(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Password = "pw" })
	for v, cmd := range sshCopyIDCommands {
		signer := newSigner(t)
		cl, err := ts.dialGo("", ssh.Password("pw"))
		require.NoError(t, err)
		sess, err := cl.NewSession()
		require.NoError(t, err)
		sess.Stdin = bytes.NewReader(append(ssh.MarshalAuthorizedKey(signer.PublicKey()), []byte("\n# a comment\n")...))
		out, err := sess.CombinedOutput(cmd)
		require.NoError(t, err, "%s: %s", v, out)
		cl.Close()
		cl, err = ts.dialGo("", ssh.PublicKeys(signer))
		require.NoError(t, err, v)
		cl.Close()
	}
	require.Equal(t, 3, ts.log.Count("SSH key installed (ssh-copy-id)"))
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(key)
	require.NoError(t, err)
	return s
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		"corosync-qnetd-certutil -i":                               {"corosync-qnetd-certutil", "-i"},
		"  corosync-qnetd-certutil   -s -c /tmp/a.crq -n pve ":     {"corosync-qnetd-certutil", "-s", "-c", "/tmp/a.crq", "-n", "pve"},
		`corosync-qnetd-certutil -n 'my cluster' -s -c "/tmp/a b"`: {"corosync-qnetd-certutil", "-n", "my cluster", "-s", "-c", "/tmp/a b"},
		`scp -f /etc/corosync/qnetd/nssdb/cluster-pve\ 1.crt`:      {"scp", "-f", "/etc/corosync/qnetd/nssdb/cluster-pve 1.crt"},
		`a''b "c\"d"`:    {"ab", `c"d`},
		"exit":           {"exit"},
		"":               nil,
		"scp -t -- /tmp": {"scp", "-t", "--", "/tmp"},
		"corosync-qnetd-certutil -s -c /tmp/a~b -n x#y":                        {"corosync-qnetd-certutil", "-s", "-c", "/tmp/a~b", "-n", "x#y"},
		"corosync-qnetd-certutil -s -c '/tmp/$(id)' -n '`id`;'":                {"corosync-qnetd-certutil", "-s", "-c", "/tmp/$(id)", "-n", "`id`;"},
		"corosync-qnetd-tool -s -c 'a|b'":                                      {"corosync-qnetd-tool", "-s", "-c", "a|b"},
		"corosync-qnetd-certutil -i\t-G":                                       {"corosync-qnetd-certutil", "-i", "-G"},
		"/usr/sbin/corosync-qnetd-certutil -i":                                 {"/usr/sbin/corosync-qnetd-certutil", "-i"},
		`scp -v -p -d -t /tmp`:                                                 {"scp", "-v", "-p", "-d", "-t", "/tmp"},
		"corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n pve-test1": {"corosync-qnetd-certutil", "-s", "-c", "/tmp/qdevice-net-node.crq", "-n", "pve-test1"},
	} {
		got, err := splitWords(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"a;b", "a|b", "a&b", "a && b", "a > f", "a < f", "$(id)", "`id`", "a $HOME", `"$HOME"`, "a\nb", "'unterminated",
		`"unterminated`, `trailing\`, "~/x", "# comment", "a*", "a?", "a[b]", "{a,b}", "(a)", "a\x00b"} {
		_, err := splitWords(in)
		assert.Error(t, err, "%q", in)
	}
}

func TestCommandName(t *testing.T) {
	for in, want := range map[string]string{
		"corosync-qnetd-certutil": "corosync-qnetd-certutil", "/usr/bin/corosync-qnetd-certutil": "corosync-qnetd-certutil",
		"/usr/sbin/corosync-qnetd-tool": "corosync-qnetd-tool", "/bin/scp": "scp", "/tmp/scp": "/tmp/scp",
		"./scp": "./scp", "../bin/scp": "../bin/scp", "bin/scp": "bin/scp",
	} {
		assert.Equal(t, want, commandName(in), in)
	}
}

func TestLimiter(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(clk.Now)
	for i := 1; i < freeFailures; i++ {
		n, block := l.fail("10.0.0.5")
		require.Equal(t, i, n)
		require.Zero(t, block)
		b, _, _ := l.blocked("10.0.0.5")
		require.False(t, b)
	}
	n, block := l.fail("10.0.0.5")
	require.Equal(t, freeFailures, n)
	require.Equal(t, firstBlock, block)
	b, until, first := l.blocked("10.0.0.5")
	require.True(t, b)
	require.True(t, first)
	require.Equal(t, clk.Now().Add(firstBlock), until)
	_, _, first = l.blocked("10.0.0.5")
	require.False(t, first, "a block is announced once")
	b, _, _ = l.blocked("10.0.0.6")
	require.False(t, b, "other addresses are not affected")

	clk.Advance(firstBlock)
	b, _, _ = l.blocked("10.0.0.5")
	require.False(t, b, "the block ends")
	_, block = l.fail("10.0.0.5")
	require.Equal(t, 2*firstBlock, block, "every further failure doubles the block")
	for range 40 {
		_, block = l.fail("10.0.0.5")
	}
	require.Equal(t, maxBlock, block, "capped")

	l.success("10.0.0.5")
	b, _, _ = l.blocked("10.0.0.5")
	require.False(t, b, "a login forgets the failures")

	l.fail("10.0.0.7")
	clk.Advance(failureWindow + time.Second)
	n, _ = l.fail("10.0.0.7")
	require.Equal(t, 1, n, "old failures are forgotten")

	// Bounded memory.
	for i := range maxTracked + 100 {
		l.fail(fmt.Sprintf("10.1.%d.%d", i/256, i%256))
	}
	require.LessOrEqual(t, len(l.m), maxTracked)
}

func TestResolve(t *testing.T) {
	s := &Server{pkiDir: "/data/nssdb", tmpDir: "/data/ssh/tmp"}
	type want struct {
		kind vkind
		real string
		err  error
	}
	for in, w := range map[string]want{
		"/":                          {kind: vDir},
		"":                           {kind: vDir},
		"..":                         {kind: vDir},
		"/../../..":                  {kind: vDir},
		"/etc/corosync/qnetd/nssdb/": {kind: vDir},
		"/tmp":                       {kind: vDir},
		"/etc/corosync/qnetd/nssdb/qnetd-cacert.crt":       {kind: vCert, real: "/data/nssdb/qnetd-cacert.crt"},
		"/etc/corosync/qnetd/nssdb/cluster-pve.crt":        {kind: vCert, real: "/data/nssdb/cluster-pve.crt"},
		"etc/corosync/qnetd/nssdb/cluster-pve.crt":         {kind: vCert, real: "/data/nssdb/cluster-pve.crt"},
		"/tmp/../etc/corosync/qnetd/nssdb/cluster-pve.crt": {kind: vCert, real: "/data/nssdb/cluster-pve.crt"},
		"/tmp/qdevice-net-node.crq":                        {kind: vTmpFile, real: "/data/ssh/tmp/qdevice-net-node.crq"},
		"/../../tmp/x.crq":                                 {kind: vTmpFile, real: "/data/ssh/tmp/x.crq"},
		"/etc/corosync/qnetd/nssdb/qnetd-pki.pem":          {err: os.ErrNotExist},
		"/etc/corosync/qnetd/nssdb/serial.txt":             {err: os.ErrNotExist},
		"/etc/corosync/qnetd/nssdb/cluster-.crt":           {err: os.ErrNotExist},
		"/etc/corosync/qnetd/nssdb/cluster-x.crt/..":       {kind: vDir},
		"/etc/corosync/qnetd/nssdb/.cluster-x.crt":         {err: os.ErrNotExist},
		"/tmp/.hidden":                {err: os.ErrNotExist},
		"/tmp/-rf":                    {err: os.ErrNotExist},
		"/tmp/a/b":                    {err: os.ErrNotExist},
		"/tmp/a b":                    {err: os.ErrNotExist},
		"/etc/passwd":                 {err: os.ErrPermission},
		"/etc/corosync/corosync.conf": {err: os.ErrPermission},
		"/data/nssdb/qnetd-pki.pem":   {err: os.ErrPermission},
		"/root/.ssh/authorized_keys":  {err: os.ErrPermission},
		"/tmp/x\x00y":                 {err: os.ErrPermission},
		"/etc/corosync/qnetd/nssdb/cluster-" + strings.Repeat("a", 10) + ".crt": {kind: vCert, real: "/data/nssdb/cluster-aaaaaaaaaa.crt"},
	} {
		n, err := s.resolve(in)
		if w.err != nil {
			assert.True(t, errors.Is(err, w.err), "%q: %v", in, err)
			continue
		}
		require.NoError(t, err, in)
		assert.Equal(t, w.kind, n.kind, in)
		assert.Equal(t, w.real, n.real, in)
		if w.real != "" {
			assert.Equal(t, filepath.Clean(w.real), n.real)
		}
	}
}

// TestLegacySCPPreserve: scp -O -p (times) works both ways, and scp
// accepts a target file name in /tmp.
func TestLegacySCPPreserve(t *testing.T) {
	c := newClient(t)
	ts := startServer(t, func(cfg *Config) { cfg.AuthorizedKeys = []string{c.pub()} })
	c.trust(ts)
	require.Equal(t, 0, c.ssh(ts, nil, "corosync-qnetd-certutil", "-i").code)
	csr := filepath.Join(c.home, "req.crq")
	require.NoError(t, os.WriteFile(csr, makeCSR(t, "pve"), 0o600))
	for _, legacy := range []bool{true, false} {
		args := c.opts("-p", "-P", fmt.Sprint(ts.port), "-o", "BatchMode=yes")
		if legacy {
			args = append([]string{"-O"}, args...)
		}
		r := c.run([]byte{}, "scp", append(args, csr, remote("/tmp/renamed.crq"))...)
		require.Equal(t, 0, r.code, r.String())
		require.FileExists(t, ts.s.realTmp("renamed.crq"))
		dst := filepath.Join(c.home, fmt.Sprintf("ca-%v.crt", legacy))
		r = c.run([]byte{}, "scp", append(args, remote("/etc/corosync/qnetd/nssdb/qnetd-cacert.crt"), dst)...)
		require.Equal(t, 0, r.code, r.String())
		want, err := os.ReadFile(filepath.Join(ts.pkiDir, "qnetd-cacert.crt"))
		require.NoError(t, err)
		got, err := os.ReadFile(dst)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	r := c.ssh(ts, nil, "corosync-qnetd-certutil", "-s", "-c", "/tmp/renamed.crq", "-n", "pve")
	require.Equal(t, 0, r.code, r.String())
	r = c.ssh(ts, nil, "corosync-qnetd-certutil", "-s", "-c", "/tmp/missing.crq", "-n", "pve")
	require.Equal(t, 2, r.code, r.String())
	require.Equal(t, "Can't open certificate file /tmp/missing.crq\n", r.stderr, "paths are shown as the nodes see them")
}

// TestSessionLimit: one connection cannot open sessions without bound.
func TestSessionLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Password = "pw" })
	cl, err := ts.dialGo("", ssh.Password("pw"))
	require.NoError(t, err)
	defer cl.Close()
	for range maxSessions {
		s, err := cl.NewSession()
		require.NoError(t, err)
		defer s.Close()
	}
	_, err = cl.NewSession()
	require.Error(t, err)
}
