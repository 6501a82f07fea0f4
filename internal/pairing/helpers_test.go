package pairing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// ---- log capture -------------------------------------------------------

// logBuf collects the server's log and wakes waiters on every write.
type logBuf struct {
	mu   sync.Mutex
	b    bytes.Buffer
	wake chan struct{}
}

func newLogBuf() *logBuf { return &logBuf{wake: make(chan struct{})} }

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.b.Write(p)
	close(l.wake)
	l.wake = make(chan struct{})
	return n, err
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) Count(sub string) int { return strings.Count(l.String(), sub) }

// wait blocks until the log contains sub (event-driven: woken by writes).
func (l *logBuf) wait(t *testing.T, sub string) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ok := strings.Contains(l.b.String(), sub)
		wake := l.wake
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			t.Fatalf("log never contained %q; log:\n%s", sub, l.String())
		}
	}
}

// ---- fake clock --------------------------------------------------------

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ---- servers -----------------------------------------------------------

var (
	hostKeysOnce sync.Once
	hostKeysDir  string
	hostKeysErr  error
)

// copyHostKeys gives a test data dir the same pre-made host keys (making
// an RSA key per test would be slow).
func copyHostKeys(t *testing.T, dataDir string) {
	t.Helper()
	hostKeysOnce.Do(func() {
		hostKeysDir, hostKeysErr = os.MkdirTemp("", "qnetd-pairing-hostkeys-")
		if hostKeysErr == nil {
			_, hostKeysErr = loadHostKeys(hostKeysDir, zerolog.Nop())
		}
	})
	require.NoError(t, hostKeysErr)
	dst := filepath.Join(dataDir, "ssh")
	require.NoError(t, os.MkdirAll(dst, 0o700))
	for _, n := range []string{hostKeyED25519, hostKeyRSA, hostKeyED25519 + ".pub", hostKeyRSA + ".pub"} {
		data, err := os.ReadFile(filepath.Join(hostKeysDir, n))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, n), data, 0o600))
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if hostKeysDir != "" {
		os.RemoveAll(hostKeysDir)
	}
	os.Exit(code)
}

type testServer struct {
	t       *testing.T
	s       *Server
	cfg     Config
	addr    string
	port    int
	dataDir string
	pkiDir  string
	log     *logBuf
	clock   *fakeClock
	done    chan error
}

// startServer starts a pairing server on 127.0.0.1:<free port>.
func startServer(t *testing.T, mutate func(*Config)) *testServer {
	t.Helper()
	root := t.TempDir()
	ts := &testServer{t: t, dataDir: filepath.Join(root, "data"), pkiDir: filepath.Join(root, "nssdb"), log: newLogBuf(),
		clock: &fakeClock{t: time.Now()}}
	require.NoError(t, os.MkdirAll(ts.pkiDir, 0o770))
	copyHostKeys(t, ts.dataDir)
	ts.cfg = Config{DataDir: ts.dataDir, PKIDir: ts.pkiDir, Log: zerolog.New(ts.log).Level(zerolog.DebugLevel), Now: ts.clock.Now}
	if mutate != nil {
		mutate(&ts.cfg)
	}
	s, err := New(ts.cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts.s, ts.addr, ts.port = s, l.Addr().String(), l.Addr().(*net.TCPAddr).Port
	ts.done = make(chan error, 1)
	go func() { ts.done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		require.ErrorIs(t, <-ts.done, ErrClosed)
	})
	return ts
}

// knownHosts is a known_hosts line set for the server.
func (ts *testServer) knownHosts() string {
	var b strings.Builder
	for _, k := range ts.s.HostPublicKeys() {
		fmt.Fprintf(&b, "[127.0.0.1]:%d %s\n", ts.port, k)
	}
	return b.String()
}

// ---- OpenSSH client side -------------------------------------------------

// client is a simulated Proxmox node's root account: a HOME with .ssh,
// an RSA key (pvecm uses /root/.ssh/id_rsa) and its known_hosts.
type client struct {
	t          *testing.T
	home       string
	key        string // private key path
	knownHosts string
	askpass    string
	askLog     string
	password   string
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing tools %v (Debian: openssh-client, libnss3-tools, corosync-qdevice, util-linux)", missing)
	if os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func newClient(t *testing.T) *client {
	t.Helper()
	requireTools(t, "ssh", "scp", "sftp", "ssh-keygen", "ssh-copy-id")
	home := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".ssh"), 0o700))
	c := &client{t: t, home: home, key: filepath.Join(home, ".ssh", "id_rsa"),
		knownHosts: filepath.Join(home, ".ssh", "known_hosts"), askLog: filepath.Join(home, "askpass.log")}
	out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "root@pve-test", "-f", c.key).CombinedOutput()
	require.NoError(t, err, string(out))
	// SSH_ASKPASS answers the first-contact question with "yes" and
	// password prompts with $ASKPASS_PASSWORD; it records every prompt.
	c.askpass = filepath.Join(home, "askpass.sh")
	script := "#!/bin/sh\nprintf '%s\\n--\\n' \"$1\" >> \"$ASKPASS_LOG\"\ncase \"$1\" in\n  *'continue connecting'*) echo yes ;;\n  *) printf '%s\\n' \"$ASKPASS_PASSWORD\" ;;\nesac\n"
	require.NoError(t, os.WriteFile(c.askpass, []byte(script), 0o700))
	return c
}

func (c *client) pub() string {
	data, err := os.ReadFile(c.key + ".pub")
	require.NoError(c.t, err)
	return strings.TrimSpace(string(data))
}

func (c *client) trust(ts *testServer) {
	require.NoError(c.t, os.WriteFile(c.knownHosts, []byte(ts.knownHosts()), 0o600))
}

// opts are the options every ssh/scp/sftp call gets: nothing from the
// host's /root/.ssh, /etc/ssh or an agent.
func (c *client) opts(extra ...string) []string {
	o := []string{"-F", "/dev/null",
		"-o", "UserKnownHostsFile=" + c.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes", "-i", c.key,
		"-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=0", "-o", "LogLevel=ERROR"}
	return append(o, extra...)
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// run runs a client tool with the client's HOME and askpass.
func (c *client) run(stdin []byte, name string, args ...string) result {
	c.t.Helper()
	return c.runWith(nil, stdin, name, args...)
}

// runWith is run with extra environment variables.
func (c *client) runWith(env []string, stdin []byte, name string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{"HOME=" + c.home, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C", "SSH_ASKPASS=" + c.askpass, "SSH_ASKPASS_REQUIRE=force", "ASKPASS_LOG=" + c.askLog,
		"ASKPASS_PASSWORD=" + c.password}
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = c.home
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		c.t.Fatalf("%s: %v", name, err)
	}
	require.NoError(c.t, ctx.Err(), "%s %v timed out: %s", name, args, r)
	return r
}

// ssh runs a remote command with BatchMode, as pvecm does.
func (c *client) ssh(ts *testServer, extra []string, command ...string) result {
	c.t.Helper()
	// ssh takes the first value given for an option: extra comes first.
	args := append(append([]string{}, extra...), c.opts("-p", fmt.Sprint(ts.port), "-o", "BatchMode=yes")...)
	args = append(args, "-lroot", "127.0.0.1")
	return c.run([]byte{}, "ssh", append(args, command...)...)
}

// scp copies with scp -o BatchMode=yes; legacy adds -O.
func (c *client) scp(ts *testServer, legacy bool, src, dst string) result {
	c.t.Helper()
	args := c.opts("-P", fmt.Sprint(ts.port), "-o", "BatchMode=yes")
	if legacy {
		args = append([]string{"-O"}, args...)
	}
	return c.run([]byte{}, "scp", append(args, src, dst)...)
}

// remote names a remote path as pvecm does: root@[IP]:PATH.
func remote(p string) string { return "root@[127.0.0.1]:" + p }

// ---- file system snapshots ----------------------------------------------

// snapshot maps every file under dir to its hash (links to their target).
func snapshot(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				m[p] = "link:" + target
			case d.IsDir():
				m[p] = "dir"
			default:
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				sum := sha256.Sum256(data)
				m[p] = hex.EncodeToString(sum[:])
			}
			return nil
		})
		require.NoError(t, err)
	}
	return m
}

// ---- Go SSH client -----------------------------------------------------

func signerFromFile(t *testing.T, path string) ssh.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	s, err := ssh.ParsePrivateKey(data)
	require.NoError(t, err)
	return s
}

// makeCSR makes a DER certificate request for cn.
func makeCSR(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	require.NoError(t, err)
	return der
}

// dialGo logs in with Go's SSH client from a local address.
func (ts *testServer) dialGo(local string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	d := net.Dialer{Timeout: 20 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: "root", Auth: auth, Timeout: 20 * time.Second,
		HostKeyCallback:   ssh.FixedHostKey(ts.s.hostKeys[0].PublicKey()),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(nc, ts.addr, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}
