package pairing

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// secFixture is a server with a paired client key, a CA, a signed
// cluster certificate, a canary secret next to the served files, and a
// snapshot of everything the server may touch.
type secFixture struct {
	ts     *testServer
	c      *client
	canary string // a secret outside the served files
	secret []byte
}

func newSecFixture(t *testing.T, mutate func(*Config)) *secFixture {
	t.Helper()
	c := newClient(t)
	ts := startServer(t, func(cfg *Config) {
		cfg.AuthorizedKeys = []string{c.pub()}
		cfg.Password = "correct horse"
		if mutate != nil {
			mutate(cfg)
		}
	})
	c.trust(ts)
	r := c.ssh(ts, nil, "corosync-qnetd-certutil", "-i")
	require.Equal(t, 0, r.code, r.String())
	f := &secFixture{ts: ts, c: c, canary: filepath.Join(filepath.Dir(ts.pkiDir), "canary-secret"), secret: []byte("CANARY-SECRET-DO-NOT-LEAK\n")}
	require.NoError(t, os.WriteFile(f.canary, f.secret, 0o600))
	return f
}

// noLeak checks that no client output contains the canary or a key.
func (f *secFixture) noLeak(t *testing.T, outs ...string) {
	t.Helper()
	for _, o := range outs {
		require.NotContains(t, o, strings.TrimSpace(string(f.secret)))
		require.NotContains(t, o, "PRIVATE KEY")
	}
}

func (f *secFixture) snap(t *testing.T) map[string]string {
	return snapshot(t, filepath.Dir(f.ts.pkiDir))
}

// TestRefuseShell: no shell, with or without a pty; the refusal is clear
// and the status is 127.
func TestRefuseShell(t *testing.T) {
	f := newSecFixture(t, nil)
	r := f.c.ssh(f.ts, []string{"-T"})
	require.Equal(t, ExitRefused, r.code, r.String())
	require.Contains(t, r.stderr, "no shell")
	f.ts.log.wait(t, `"addr":"127.0.0.1","message":"pairing: refused shell"`)

	// ssh -tt: the pty is refused, which OpenSSH treats as fatal when
	// the tty was asked for explicitly.
	r = f.c.ssh(f.ts, []string{"-tt"})
	require.Equal(t, 255, r.code, r.String())
	require.Contains(t, r.stderr, "PTY allocation request failed")
	f.ts.log.wait(t, `"addr":"127.0.0.1","message":"pairing: refused pty"`)
	r = f.c.ssh(f.ts, []string{"-tt"}, "corosync-qnetd-certutil", "-i")
	require.Equal(t, 255, r.code, r.String())
	require.Contains(t, r.stderr, "PTY allocation request failed")

	// Go's client: pty refused, then a shell gets the message and 127.
	cl, err := f.ts.dialGo("", ssh.PublicKeys(signerFromFile(t, f.c.key)))
	require.NoError(t, err)
	defer cl.Close()
	sess, err := cl.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	require.Error(t, sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}))
	var stderr strings.Builder
	sess.Stderr = &stderr
	require.NoError(t, sess.Shell())
	err = sess.Wait()
	var ee *ssh.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	require.Equal(t, ExitRefused, ee.ExitStatus())
	require.Contains(t, stderr.String(), "no shell")
}

// TestRefuseCommands: everything outside the allowlist exits 127 with a
// message, including shell syntax around allowed commands; the server
// keeps serving.
func TestRefuseCommands(t *testing.T) {
	f := newSecFixture(t, nil)
	before := f.snap(t)
	// Each is run as a shell would run it, with every command virtual:
	// what is not available is refused (127), the rest fails or does
	// nothing; nothing leaks and nothing is written.
	for cmd, want := range map[string]int{
		"id": 127, "sh": 0, "sh -c id": 127, "/bin/sh -c 'cat /etc/shadow'": 1, "cat /etc/corosync/qnetd/nssdb/qnetd-pki.pem": 1,
		"corosync-qnetd-certutil -i; id": 127, "corosync-qnetd-certutil -i && id": 1, "corosync-qnetd-certutil -i | cat": 0,
		"corosync-qnetd-certutil -i $(id)": 1, "corosync-qnetd-certutil -i `id`": 1, "corosync-qnetd-certutil -i > /tmp/x": 1,
		"QNETD_NSS_DB_DIR=/tmp/evil corosync-qnetd-certutil -i": 1, "env corosync-qnetd-certutil -i": 127,
		"./corosync-qnetd-certutil -i": 127, "/tmp/corosync-qnetd-certutil -i": 127, "exit 0; id": 0, "exec sh -c 'id'": 127,
		"corosync-qnetd-certutil -d /tmp/evil -i": 127, "corosync-qnetd-certutil -I /etc/shadow": 127,
		"corosync-qnetd-certutil -s -c /etc/corosync/qnetd/nssdb/qnetd-pki.pem -n x": 127,
		"corosync-qnetd-certutil -s -c ../../etc/shadow -n x":                        127, "corosync-qnetd-certutil -s -c /tmp/../etc/shadow -n x": 127,
		"corosync-qnetd-certutil -s -c " + f.canary + " -n x": 127, "corosync-qnetd-tool -H": 127, "corosync-qnetd-tool -p /run/x.sock -s": 127,
		"scp -r -f /etc": 127, "scp -f": 127, "scp -t -f /tmp": 127, "sftp": 127, "rsync --server . /tmp": 127, "pvecm apiver": 127,
		"sudo -u nobody corosync-qnetd-tool -s": 1, "sudo -H /usr/bin/id": 127, "/usr/lib/openssh/sftp-server-evil": 127,
	} {
		r := f.c.ssh(f.ts, nil, cmd)
		assert.Equal(t, want, r.code, "%q: %s", cmd, r)
		f.noLeak(t, r.stdout, r.stderr)
	}
	require.NoDirExists(t, "/tmp/evil")
	require.Equal(t, before, f.snap(t), "nothing written")
	// Still serving.
	r := f.c.ssh(f.ts, nil, "corosync-qnetd-certutil", "-i")
	require.Equal(t, 1, r.code, r.String())
	require.Contains(t, r.stderr, "already exists")
}

// TestEnvInjection: environment requests are refused; the certificate
// tool works on PKIDir whatever the client sends.
func TestEnvInjection(t *testing.T) {
	c := newClient(t)
	ts := startServer(t, func(cfg *Config) { cfg.AuthorizedKeys = []string{c.pub()} })
	c.trust(ts)
	evil := filepath.Join(t.TempDir(), "evil")
	r := c.ssh(ts, []string{"-o", "SetEnv=QNETD_NSS_DB_DIR=" + evil, "-o", "SetEnv=LD_PRELOAD=/tmp/evil.so"},
		"corosync-qnetd-certutil", "-i")
	require.Equal(t, 0, r.code, r.String())
	require.NoDirExists(t, evil)
	require.FileExists(t, filepath.Join(ts.pkiDir, "qnetd-cacert.crt"))
	ts.log.wait(t, "environment variable ignored")

	cl, err := ts.dialGo("", ssh.PublicKeys(signerFromFile(t, c.key)))
	require.NoError(t, err)
	defer cl.Close()
	sess, err := cl.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	require.Error(t, sess.Setenv("QNETD_NSS_DB_DIR", evil), "env request refused")
}

// TestSCPWriteOutsideTmp: scp -t /etc (legacy and SFTP) and writes to the
// certificate directory are refused; nothing is written anywhere.
func TestSCPWriteOutsideTmp(t *testing.T) {
	f := newSecFixture(t, nil)
	src := filepath.Join(f.c.home, "payload")
	require.NoError(t, os.WriteFile(src, []byte("payload\n"), 0o644))
	before := f.snap(t)
	name := fmt.Sprintf("qnetd-pairing-test-%d", time.Now().UnixNano())
	for _, legacy := range []bool{true, false} {
		for _, dst := range []string{"/etc/", "/etc/" + name, "/etc/corosync/qnetd/nssdb/", "/etc/corosync/qnetd/nssdb/qnetd-cacert.crt",
			"/etc/corosync/qnetd/nssdb/qnetd-pki.pem", "/", "/root/.ssh/authorized_keys", "/tmp/../etc/" + name, "/tmp/.hidden", "/tmp/sub/x",
			"/etc/corosync/qnetd/nssdb/qdevice-net-node.crq.", "/etc/corosync/qnetd/nssdb/qdevice-net-node.crq.*.lan",
			"/etc/corosync/qnetd/nssdb/qdevice-net-node.crq.a/b", "/etc/corosync/qnetd/nssdb/qdevice-net-node.crqX"} {
			r := f.c.scp(f.ts, legacy, src, remote(dst))
			assert.NotEqual(t, 0, r.code, "legacy=%v %s: %s", legacy, dst, r)
		}
	}
	// The raw command, as a legacy scp client sends it.
	r := f.c.ssh(f.ts, nil, "scp", "-t", "/etc")
	require.Equal(t, 1, r.code, r.String())
	require.Contains(t, r.stdout, "only /tmp and /etc/corosync/qnetd/nssdb/qdevice-net-node.crq.CLUSTER are writable")
	require.NoFileExists(t, "/etc/"+name)
	require.Equal(t, before, f.snap(t), "nothing written")
	f.ts.log.wait(t, "only /tmp and /etc/corosync/qnetd/nssdb/qdevice-net-node.crq.CLUSTER are writable")
}

// TestSFTPTraversal: ../ and absolute paths outside the tree, with the
// real sftp client and with Go's, never reach a file outside the tree.
func TestSFTPTraversal(t *testing.T) {
	f := newSecFixture(t, nil)
	before := f.snap(t)
	rel, err := filepath.Rel("/", f.canary)
	require.NoError(t, err)
	local := filepath.Join(f.c.home, "got")
	for _, cmd := range []string{
		"get ../../../../etc/passwd " + local,
		"get /tmp/../../../etc/passwd " + local,
		"get /etc/corosync/qnetd/nssdb/../../../../" + rel + " " + local,
		"get ../../../../../" + rel + " " + local,
		"get /etc/corosync/qnetd/nssdb/qnetd-pki.pem " + local,
		"get /etc/corosync/qnetd/nssdb/serial.txt " + local,
		"get /etc/corosync/qnetd/nssdb/./qnetd-pki.pem " + local,
		"get /etc/shadow " + local,
		"put " + f.c.key + ".pub ../../../../etc/escape",
		"put " + f.c.key + ".pub ../../../../" + rel,
		"put " + f.c.key + ".pub /etc/corosync/qnetd/nssdb/cluster-evil.crt",
		"mkdir /tmp/sub", "rename /tmp/a /etc/b", "rm /etc/corosync/qnetd/nssdb/qnetd-cacert.crt",
		"chmod 777 /etc/corosync/qnetd/nssdb/qnetd-cacert.crt",
		"ls " + filepath.Dir(f.ts.pkiDir), "ls /..", "ls /root",
	} {
		r := f.sftpBatch(t, cmd)
		if strings.HasPrefix(cmd, "ls /..") {
			// "/.." is "/": only the virtual tree is listed.
			require.Equal(t, 0, r.code, r.String())
			require.NotContains(t, r.stdout, "passwd")
			continue
		}
		assert.NotEqual(t, 0, r.code, "%q: %s", cmd, r)
		f.noLeak(t, r.stdout, r.stderr)
		require.NoFileExists(t, local)
	}
	require.Equal(t, before, f.snap(t), "nothing written")

	// Go's client: precise answers.
	sc := f.sftpGo(t)
	for _, p := range []string{"../../etc/passwd", "/etc/passwd", "/etc/corosync/qnetd/nssdb/qnetd-pki.pem", "/etc/corosync/qnetd/nssdb/serial.txt",
		"/etc/corosync/qnetd/nssdb/pkcs11.txt", "/../../../" + rel, "/tmp/../../" + rel, "/etc/corosync/corosync.conf"} {
		_, err := sc.Open(p)
		assert.Error(t, err, p)
		_, err = sc.Stat(p)
		assert.Error(t, err, p)
	}
	root, err := sc.ReadDir("/")
	require.NoError(t, err)
	require.Equal(t, []string{"etc", "tmp"}, names(root))
	nss, err := sc.ReadDir("/etc/corosync/qnetd/nssdb/")
	require.NoError(t, err)
	require.Equal(t, []string{"qnetd-cacert.crt"}, names(nss), "only the public files are listed")
	got, err := sc.Getwd()
	require.NoError(t, err)
	require.Equal(t, "/", got)
	rp, err := sc.RealPath("../../..")
	require.NoError(t, err)
	require.Equal(t, "/", rp)
	_, err = sc.ReadLink("/etc/corosync/qnetd/nssdb/qnetd-cacert.crt")
	require.Error(t, err)
	_, err = sc.Create("/etc/corosync/qnetd/nssdb/cluster-x.crt")
	require.Error(t, err)
	require.Error(t, sc.Mkdir("/tmp/d"))
	require.Error(t, sc.Rename("/etc/corosync/qnetd/nssdb/qnetd-cacert.crt", "/tmp/ca"))
	require.Error(t, sc.Link("/etc/corosync/qnetd/nssdb/qnetd-cacert.crt", "/tmp/ca"))
	require.Equal(t, before, f.snap(t), "nothing written")
}

func names(fis []os.FileInfo) []string {
	var out []string
	for _, fi := range fis {
		out = append(out, fi.Name())
	}
	return out
}

// sftpBatch runs one command with the real sftp client in batch mode.
func (f *secFixture) sftpBatch(t *testing.T, cmd string) result {
	t.Helper()
	batch := filepath.Join(f.c.home, "batch")
	require.NoError(t, os.WriteFile(batch, []byte(cmd+"\n"), 0o600))
	args := f.c.opts("-P", fmt.Sprint(f.ts.port), "-o", "BatchMode=yes", "-b", batch, "root@127.0.0.1")
	return f.c.run([]byte{}, "sftp", args...)
}

func (f *secFixture) sftpGo(t *testing.T) *sftp.Client {
	t.Helper()
	cl, err := f.ts.dialGo("", ssh.PublicKeys(signerFromFile(t, f.c.key)))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	sc, err := sftp.NewClient(cl)
	require.NoError(t, err)
	t.Cleanup(func() { sc.Close() })
	return sc
}

// TestSymlinkTricks: links cannot be made over sftp; links planted in the
// certificate directory or in /tmp are neither listed, read, signed, nor
// followed when a file of that name is uploaded.
func TestSymlinkTricks(t *testing.T) {
	f := newSecFixture(t, nil)
	r := f.sftpBatch(t, "symlink "+f.canary+" /tmp/link")
	require.NotEqual(t, 0, r.code, r.String())
	r = f.sftpBatch(t, "ln "+"/etc/corosync/qnetd/nssdb/qnetd-cacert.crt /tmp/hard")
	require.NotEqual(t, 0, r.code, r.String())
	sc := f.sftpGo(t)
	require.Error(t, sc.Symlink(f.canary, "/tmp/link"))
	require.Error(t, sc.Symlink("/etc/corosync/qnetd/nssdb/qnetd-pki.pem", "/tmp/link"))
	f.ts.log.wait(t, `"op":"symlink"`)

	// Links planted on the host side (as if by someone with a shell).
	require.NoError(t, os.Symlink(f.canary, filepath.Join(f.ts.pkiDir, "cluster-evil.crt")))
	require.NoError(t, os.Symlink(filepath.Join(f.ts.pkiDir, "qnetd-pki.pem"), filepath.Join(f.ts.pkiDir, "cluster-key.crt")))
	require.NoError(t, os.Symlink(f.canary, f.ts.s.realTmp("link.crq")))
	before := f.snap(t)
	for _, p := range []string{"/etc/corosync/qnetd/nssdb/cluster-evil.crt", "/etc/corosync/qnetd/nssdb/cluster-key.crt", "/tmp/link.crq"} {
		for _, legacy := range []bool{true, false} {
			dst := filepath.Join(f.c.home, "got")
			r := f.c.scp(f.ts, legacy, remote(p), dst)
			assert.NotEqual(t, 0, r.code, "%s legacy=%v: %s", p, legacy, r)
			f.noLeak(t, r.stdout, r.stderr)
			if data, err := os.ReadFile(dst); err == nil {
				f.noLeak(t, string(data))
			}
		}
		_, err := sc.Stat(p)
		assert.Error(t, err, p)
	}
	nss, err := sc.ReadDir("/etc/corosync/qnetd/nssdb")
	require.NoError(t, err)
	require.Equal(t, []string{"qnetd-cacert.crt"}, names(nss))
	tmp, err := sc.ReadDir("/tmp")
	require.NoError(t, err)
	require.Empty(t, names(tmp))
	r = f.c.ssh(f.ts, nil, "corosync-qnetd-certutil", "-s", "-c", "/tmp/link.crq", "-n", "evil")
	require.Equal(t, ExitRefused, r.code, r.String())
	require.Equal(t, before, f.snap(t))

	// Uploading a file named like the link replaces the link, never
	// writes through it.
	src := filepath.Join(f.c.home, "link.crq")
	require.NoError(t, os.WriteFile(src, []byte("not a secret\n"), 0o644))
	for _, legacy := range []bool{true, false} {
		r = f.c.scp(f.ts, legacy, src, remote("/tmp"))
		require.Equal(t, 0, r.code, r.String())
		data, err := os.ReadFile(f.canary)
		require.NoError(t, err)
		require.Equal(t, f.secret, data, "the link target is unchanged")
		fi, err := os.Lstat(f.ts.s.realTmp("link.crq"))
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular())
	}
}

// TestRefuseForwarding: no local, remote or stream-local forwarding, no
// agent or X11 forwarding; nothing is connected to.
func TestRefuseForwarding(t *testing.T) {
	f := newSecFixture(t, nil)
	target, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer target.Close()
	tport := target.Addr().(*net.TCPAddr).Port

	// ssh -W host:port (direct-tcpip)
	r := f.c.ssh(f.ts, []string{"-W", fmt.Sprintf("127.0.0.1:%d", tport)})
	require.Equal(t, 255, r.code, r.String())
	f.ts.log.wait(t, `"channel":"direct-tcpip","message":"pairing: refused a channel (no forwarding)"`)
	// ssh -R (tcpip-forward)
	r = f.c.ssh(f.ts, []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", fmt.Sprintf("0:127.0.0.1:%d", tport)})
	require.Equal(t, 255, r.code, r.String())
	require.Contains(t, r.stderr, "remote port forwarding failed")
	f.ts.log.wait(t, "refused port forwarding request")
	// ssh -L, the local side of which then asks for a direct-tcpip channel:
	// Go's client does the same in one step.
	cl, err := f.ts.dialGo("", ssh.PublicKeys(signerFromFile(t, f.c.key)))
	require.NoError(t, err)
	defer cl.Close()
	_, err = cl.Dial("tcp", target.Addr().String())
	require.Error(t, err)
	_, err = cl.Dial("unix", "/run/corosync-qnetd/corosync-qnetd.sock") // direct-streamlocal@openssh.com
	require.Error(t, err)
	f.ts.log.wait(t, `"channel":"direct-streamlocal@openssh.com","message":"pairing: refused a channel (no forwarding)"`)
	_, err = cl.Listen("tcp", "127.0.0.1:0")
	require.Error(t, err)

	// Agent forwarding (ssh -A, with a real agent the client can use):
	// refused.
	agentDir := t.TempDir()
	agentSock := filepath.Join(agentDir, "agent.sock")
	agentL, err := net.Listen("unix", agentSock)
	require.NoError(t, err)
	defer agentL.Close()
	keyring := agent.NewKeyring()
	go func() {
		for {
			conn, err := agentL.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = agent.ServeAgent(keyring, conn)
			}()
		}
	}()
	cmd := []string{"ssh", "-o", "IdentityAgent=SSH_AUTH_SOCK", "-A", "-o", "ForwardX11=yes"}
	cmd = append(cmd, f.c.opts("-p", fmt.Sprint(f.ts.port), "-o", "BatchMode=yes", "-lroot", "127.0.0.1", "corosync-qnetd-certutil", "-i")...)
	r = f.c.runEnv([]string{"SSH_AUTH_SOCK=" + agentSock, "DISPLAY=127.0.0.1:99"}, cmd...)
	require.Equal(t, 1, r.code, r.String())
	f.ts.log.wait(t, `"addr":"127.0.0.1","message":"pairing: refused agent forwarding"`)

	sess, err := cl.NewSession()
	require.NoError(t, err)
	ok, err := sess.SendRequest("auth-agent-req@openssh.com", true, nil)
	require.NoError(t, err)
	require.False(t, ok, "agent forwarding")
	x11 := ssh.Marshal(struct {
		Single bool
		Proto  string
		Cookie string
		Screen uint32
	}{false, "MIT-MAGIC-COOKIE-1", "00112233445566778899aabbccddeeff", 0})
	ok, err = sess.SendRequest("x11-req", true, x11)
	require.NoError(t, err)
	require.False(t, ok, "X11 forwarding")
	require.NoError(t, sess.Close())
	f.ts.log.wait(t, `"addr":"127.0.0.1","message":"pairing: refused X11 forwarding"`)
	_, err = sess.CombinedOutput("exit") // the session is closed
	require.Error(t, err)

	// Nothing connected to the target.
	for _, l := range []net.Listener{target} {
		require.NoError(t, l.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now()))
		_, err := l.Accept()
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "no connection expected, got %v", err)
	}
	// And the server still serves.
	out, err := f.goRun(t, cl, "corosync-qnetd-certutil -i")
	require.Error(t, err)
	require.Contains(t, out, "already exists")
}

func (f *secFixture) goRun(t *testing.T, cl *ssh.Client, cmd string) (string, error) {
	t.Helper()
	s, err := cl.NewSession()
	require.NoError(t, err)
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

// runEnv runs a client command with extra environment variables.
func (c *client) runEnv(env []string, argv ...string) result {
	c.t.Helper()
	return c.runWith(env, []byte{}, argv[0], argv[1:]...)
}

// TestOversizeRequest: a 1 MiB "certificate request" is refused over
// scp (both modes), sftp, and as keys for the key-install command; nothing
// is left behind and the server keeps serving.
func TestOversizeRequest(t *testing.T) {
	f := newSecFixture(t, nil)
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	src := filepath.Join(f.c.home, "big.crq")
	require.NoError(t, os.WriteFile(src, big, 0o644))
	before := f.snap(t)
	for _, legacy := range []bool{true, false} {
		r := f.c.scp(f.ts, legacy, src, remote("/tmp"))
		require.NotEqual(t, 0, r.code, "legacy=%v: %s", legacy, r)
		r = f.c.scp(f.ts, legacy, src, remote("/tmp/named.crq"))
		require.NotEqual(t, 0, r.code, "legacy=%v: %s", legacy, r)
	}
	sc := f.sftpGo(t)
	w, err := sc.Create("/tmp/big2.crq")
	require.NoError(t, err)
	_, err = w.Write(big)
	require.Error(t, err)
	w.Close()
	f.ts.log.wait(t, `"max_bytes":65536`)
	require.Equal(t, before, f.snap(t), "nothing stored, no partial upload left")

	// A key-install command fed 1 MiB.
	keyInstall := `exec sh -c 'cd; umask 077; mkdir -p ".ssh" && { [ -z ` + "`tail -1c .ssh/authorized_keys 2>/dev/null`" +
		` ] || echo >> ".ssh/authorized_keys" || exit 1; } && cat >> ".ssh/authorized_keys" || exit 1; if type restorecon >/dev/null 2>&1; then restorecon -F ".ssh" ".ssh/authorized_keys"; fi '`
	args := append(f.c.opts("-p", fmt.Sprint(f.ts.port), "-o", "BatchMode=yes"), "-lroot", "127.0.0.1", keyInstall)
	r := f.c.run(big, "ssh", args...)
	require.Equal(t, 1, r.code, r.String())
	require.Contains(t, r.stderr, "more than 65536 bytes")
	// Garbage that is not a key.
	r = f.c.run([]byte("ssh-rsa AAAA garbage\n"), "ssh", args...)
	require.Equal(t, 1, r.code, r.String())
	require.Equal(t, before, f.snap(t))

	// The real request still goes through.
	small := filepath.Join(f.c.home, "small.crq")
	require.NoError(t, os.WriteFile(small, []byte("x"), 0o644))
	r = f.c.scp(f.ts, false, small, remote("/tmp"))
	require.Equal(t, 0, r.code, r.String())
}

// TestWrongPasswords: 100 wrong passwords from one address (real ssh)
// and 100 at once (Go's client) from another are refused and logged; the
// addresses' passwords are blocked, key logins from them and from a third
// address work meanwhile, and the block ends.
func TestWrongPasswords(t *testing.T) {
	f := newSecFixture(t, nil)
	f.c.password = "wrong"
	pw := func(extra ...string) []string {
		o := append([]string{"-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
			"-o", "NumberOfPasswordPrompts=1"}, extra...)
		return o
	}
	for i := 0; i < 100; i++ {
		r := f.c.ssh(f.ts, pw(), "corosync-qnetd-certutil", "-i")
		require.Equal(t, 255, r.code, "attempt %d: %s", i, r)
	}
	f.ts.log.wait(t, "password logins from this address refused after too many failed logins")
	checked := f.ts.log.Count("pairing: wrong password")
	require.GreaterOrEqual(t, checked, freeFailures)
	require.LessOrEqual(t, checked, freeFailures+1, "after the limit, passwords are not even checked")

	// Go's client: 100 connections at once from 127.0.0.3, 3 wrong
	// passwords each (those beyond maxPreAuthPerSource are refused before
	// the handshake).
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := f.ts.dialGo("127.0.0.3", ssh.RetryableAuthMethod(ssh.Password(fmt.Sprintf("wrong-%d", i)), 3))
			if err == nil {
				cl.Close()
				errs <- errors.New("logged in with a wrong password")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	// Another address logs in with the key while both are blocked.
	r := f.c.ssh(f.ts, []string{"-b", "127.0.0.2"}, "corosync-qnetd-certutil", "-i")
	require.Equal(t, 1, r.code, r.String())
	require.Contains(t, r.stderr, "already exists")
	// The blocked addresses cannot log in with the right password...
	_, err := f.ts.dialGo("127.0.0.3", ssh.Password("correct horse"))
	require.Error(t, err)
	// ...but can with a key: a key cannot be guessed, so a block on it
	// would only lock out a real node behind the same address.
	r = f.c.ssh(f.ts, nil, "exit")
	require.Equal(t, 0, r.code, r.String())
	cl, err := f.ts.dialGo("127.0.0.3", ssh.PublicKeys(signerFromFile(t, f.c.key)))
	require.NoError(t, err)
	cl.Close()

	// Once the block is over, the password works again.
	f.ts.clock.Advance(maxBlock + time.Second)
	cl, err = f.ts.dialGo("127.0.0.3", ssh.Password("correct horse"))
	require.NoError(t, err)
	cl.Close()
}

// TestPasswordOnlyInstallsKeys: the password logs in only to install a
// key (the ssh-copy-id command); no commands, no sftp. Without a password
// option and without a valid one-time password, a password is refused
// unchecked and ssh shows why.
func TestPasswordOnlyInstallsKeys(t *testing.T) {
	f := newSecFixture(t, nil)
	cl, err := f.ts.dialGo("", ssh.Password("correct horse"))
	require.NoError(t, err)
	defer cl.Close()
	for _, cmd := range []string{"corosync-qnetd-certutil -i", "scp -f /etc/corosync/qnetd/nssdb/qnetd-cacert.crt", "corosync-qnetd-tool -s"} {
		out, err := f.goRun(t, cl, cmd)
		var ee *ssh.ExitError
		require.True(t, errors.As(err, &ee), "%q: %v", cmd, err)
		require.Equal(t, ExitRefused, ee.ExitStatus())
		require.Contains(t, out, "password login can only install an SSH key")
	}
	_, err = sftp.NewClient(cl)
	require.Error(t, err, "no sftp with the password")
	out, err := f.goRun(t, cl, "exit")
	require.NoError(t, err, out)

	// The real user: no password option, no one-time password, no
	// password login, and the banner says what to do.
	c := newClient(t)
	ts := startServer(t, nil)
	c.trust(ts)
	c.password = "anything"
	r := c.ssh(ts, []string{"-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "LogLevel=INFO"}, "exit")
	require.Equal(t, 255, r.code, r.String())
	require.Contains(t, r.stderr, "Permission denied")
	require.Contains(t, r.stderr, "password logins are off: no pairing password is set and no one-time pairing password is valid")
	_, err = ts.dialGo("", ssh.Password(""))
	require.Error(t, err)

	// Only root.
	k := signerFromFile(t, f.c.key)
	nc, err := net.Dial("tcp", f.ts.addr)
	require.NoError(t, err)
	_, _, _, err = ssh.NewClientConn(nc, f.ts.addr, &ssh.ClientConfig{User: "admin", Auth: []ssh.AuthMethod{ssh.PublicKeys(k)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	require.Error(t, err)
	nc.Close()
	f.ts.log.wait(t, "only root can log in")
}

// TestQnetdTool: corosync-qnetd-tool is read-only.
func TestQnetdTool(t *testing.T) {
	var mu sync.Mutex
	var calls [][]string
	c := newClient(t)
	ts := startServer(t, func(cfg *Config) {
		cfg.AuthorizedKeys = []string{c.pub()}
		cfg.Tool = func(args []string, stdout, stderr io.Writer) int {
			mu.Lock()
			calls = append(calls, args)
			mu.Unlock()
			fmt.Fprintln(stdout, "QNetd address:\t\t\t*:5403")
			return 0
		}
	})
	c.trust(ts)
	r := c.ssh(ts, nil, "corosync-qnetd-tool", "-s")
	require.Equal(t, 0, r.code, r.String())
	require.Contains(t, r.stdout, "QNetd address")
	r = c.ssh(ts, nil, "/usr/bin/corosync-qnetd-tool", "-lv", "-c", "pve")
	require.Equal(t, 0, r.code, r.String())
	for _, bad := range []string{"-H", "-s -p /tmp/sock", "-s extra"} {
		r = c.ssh(ts, nil, "corosync-qnetd-tool "+bad)
		require.NotEqual(t, 0, r.code, "%s: %s", bad, r)
	}
	mu.Lock()
	require.Equal(t, [][]string{{"-s"}, {"-lv", "-c", "pve"}}, calls)
	mu.Unlock()

	// Without a Tool, the command is refused.
	ts2 := startServer(t, func(cfg *Config) { cfg.AuthorizedKeys = []string{c.pub()} })
	c.trust(ts2)
	r = c.ssh(ts2, nil, "corosync-qnetd-tool", "-s")
	require.Equal(t, ExitRefused, r.code, r.String())
}

// TestSignOutsideNames: cluster names cannot name a file outside PKIDir.
func TestSignOutsideNames(t *testing.T) {
	f := newSecFixture(t, nil)
	csr := makeCSR(t, "../../evil")
	require.NoError(t, os.WriteFile(f.ts.s.realTmp("evil.crq"), csr, 0o600))
	before := f.snap(t)
	for _, name := range []string{"../../evil", "a/b", "..", ""} {
		r := f.c.ssh(f.ts, nil, "corosync-qnetd-certutil", "-s", "-c", "/tmp/evil.crq", "-n", "'"+name+"'")
		require.NotEqual(t, 0, r.code, "%q: %s", name, r)
	}
	require.Equal(t, before, f.snap(t))
}
