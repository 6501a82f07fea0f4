package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// testConfig is a daemon with every part, on sockets bound here.
func testConfig(t *testing.T) Config {
	dir := t.TempDir()
	scfg := server.DefaultConfig()
	scfg.Engine.TLS = wire.TLSSupportedOn
	return Config{
		Server:   scfg,
		Listener: listen(t),
		PKIDir:   filepath.Join(dir, "nssdb"),
		LockFile: filepath.Join(dir, "run", "qnetd.pid"),
		IPC:      adminipc.Config{Path: filepath.Join(dir, "qnetd.sock")},
		Web:      &WebConfig{Listener: listen(t)},
		Pairing:  &PairingConfig{Listener: listen(t), Endpoint: pairing.Config{DataDir: dir, PKIDir: filepath.Join(dir, "nssdb"), PublicHost: "192.0.2.1"}},
		Log:      zerolog.Nop(),
	}
}

// serve starts a daemon on cfg and stops it when the test ends.
func serve(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	d, err := Start(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Wait(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func tool(t *testing.T, sock string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	code := adminipc.ToolMain(append([]string{"-p", sock}, args...), &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	return out.String()
}

// TestEveryPartServesAndStops: one Config starts the protocol server, the
// IPC socket, the status page and the pairing endpoint; a node votes, the
// tool and the page see it; cancelling stops it all and frees the lock.
func TestEveryPartServesAndStops(t *testing.T) {
	cfg := testConfig(t)
	d, err := Start(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Wait(ctx) }()

	c, err := client.Dial(d.Addr().String(), client.NewNode(client.Settings{Cluster: "c", NodeID: 1, Algorithm: wire.AlgoTest,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000}), 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil))

	require.Contains(t, tool(t, cfg.IPC.Path, "-s"), "Connected clusters:\t\t1\n")
	require.Contains(t, tool(t, cfg.IPC.Path, "-s"), "QNetd address:\t\t\t*:"+fmt.Sprint(d.Addr().(*net.TCPAddr).Port)+"\n",
		"the bound port, not the configured 5403")
	resp, err := http.Get("http://" + d.WebAddr().String() + "/health")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.JSONEq(t, `{"status":"ok","checks":{"engine":"ok","listener":"ok","pki":"ok"}}`, string(body))
	// The page pushes every change as an event: the cluster shows up.
	body = []byte(pageEventWith(t, "http://"+d.WebAddr().String()+"/api/events", `"name":"c"`))
	require.Contains(t, string(body), fmt.Sprintf(`"port":%d`, d.PairingAddr().(*net.TCPAddr).Port), "the pairing card shows the bound port")
	ssh, err := net.Dial("tcp", d.PairingAddr().String())
	require.NoError(t, err)
	banner := make([]byte, 4)
	_, err = io.ReadFull(ssh, banner)
	require.NoError(t, err)
	require.Equal(t, "SSH-", string(banner))
	ssh.Close()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop")
	}
	_, err = os.Lstat(cfg.IPC.Path)
	require.True(t, os.IsNotExist(err), "the IPC socket is removed")
	_, err = cfg.Listener.Accept()
	require.Error(t, err, "the qnetd listener is closed")
	unlock, err := lockPIDFile(cfg.LockFile)
	require.NoError(t, err, "the lock is released")
	unlock()
}

// pageEventWith reads the page's event stream until an event contains want.
func pageEventWith(t *testing.T, url, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(data, want) {
			return data
		}
	}
	t.Fatalf("no page event with %s: %v", want, sc.Err())
	return ""
}

// TestFailedStartClosesWhatItOpened: when a late step fails (here the
// status page's address is taken), every socket opened before it is
// closed and the lock released, so that the next start can succeed.
func TestFailedStartClosesWhatItOpened(t *testing.T) {
	cfg := testConfig(t)
	taken := listen(t)
	cfg.Web = &WebConfig{Addr: taken.Addr().String()}
	cfg.Pairing.Listener = nil
	cfg.Pairing.Port = 0
	_, err := Start(cfg)
	require.ErrorContains(t, err, "status page on "+taken.Addr().String())

	_, err = cfg.Listener.Accept()
	require.Error(t, err, "the qnetd listener is closed")
	_, err = os.Lstat(cfg.IPC.Path)
	require.True(t, os.IsNotExist(err), "the IPC socket is removed")
	unlock, err := lockPIDFile(cfg.LockFile)
	require.NoError(t, err, "the lock is released")
	unlock()
}

// TestIPCShutdownStops: "corosync-qnetd-tool -H" ends Wait cleanly.
func TestIPCShutdownStops(t *testing.T) {
	cfg := testConfig(t)
	cfg.Web, cfg.Pairing = nil, nil
	cfg.Server.Engine.TLS = wire.TLSUnsupported
	d, err := Start(cfg)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- d.Wait(context.Background()) }()
	tool(t, cfg.IPC.Path, "-H")
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no stop after -H")
	}
}

// TestSecondInstanceRefused takes the lock here and tries again from a
// second process (the lock is held per open file description; a second
// process is what upstream's users run into).
func TestSecondInstanceRefused(t *testing.T) {
	if path := os.Getenv("QNETD_LOCK_PROBE"); path != "" {
		_, err := lockPIDFile(path)
		fmt.Print(err)
		return
	}
	path := filepath.Join(t.TempDir(), "run", "qnetd.pid")
	unlock, err := lockPIDFile(path)
	require.NoError(t, err)
	defer unlock()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("%d\n", os.Getpid()), string(data))
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondInstanceRefused$")
	cmd.Env = append(os.Environ(), "QNETD_LOCK_PROBE="+path)
	out, err := cmd.Output()
	require.NoError(t, err)
	require.Contains(t, string(out), "another instance is running (lock held on lock_file "+path+")")
}

// TestPairingPortTakenKeepsQnetd: when the pairing port is taken (an SSH
// add-on on port 22), qnetd still starts; the log and the status page say
// what to do.
func TestPairingPortTakenKeepsQnetd(t *testing.T) {
	taken := listen(t)
	cfg := testConfig(t)
	var logBuf syncBuf
	cfg.Log = zerolog.New(&logBuf)
	cfg.Pairing.Listener = nil
	cfg.Pairing.Port = taken.Addr().(*net.TCPAddr).Port
	d, err := Start(cfg)
	require.NoError(t, err, "a taken pairing port does not stop qnetd")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Wait(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Nil(t, d.PairingAddr())
	require.Contains(t, logBuf.String(), "pairing is off: its port is taken")
	require.Contains(t, logBuf.String(), fmt.Sprintf(`"pairing_port":%d`, cfg.Pairing.Port))

	resp, err := http.Get("http://" + d.WebAddr().String() + "/api/status")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), fmt.Sprintf("The pairing port %d is taken", cfg.Pairing.Port))
	require.Contains(t, string(body), "Set the option pairing_port to a free port")
	c, err := client.Dial(d.Addr().String(), client.NewNode(client.Settings{Cluster: "c"}), 5*time.Second)
	require.NoError(t, err, "qnetd serves")
	c.Close()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
