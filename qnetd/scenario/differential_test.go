package scenario_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/server/servertest"

	"github.com/qnetd-addon/qnetd/qnetd/scenario"
)

// upstreamQnetd starts Debian's corosync-qnetd on a free loopback port and
// returns its address and a function that reads its client count over its
// IPC socket. The process is ended (by PID) when the test ends.
func upstreamQnetd(t *testing.T) (string, func() (int, error)) {
	t.Helper()
	bin, err := exec.LookPath("corosync-qnetd")
	if err != nil {
		if os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
			t.Fatalf("corosync-qnetd is not installed but QNETD_REQUIRE_UPSTREAM is set: %v", err)
		}
		t.Skip("Debian's corosync-qnetd is not installed (make test installs it); differential test not run")
	}
	dir := t.TempDir()
	port := freePort(t)
	sock := filepath.Join(dir, "qnetd.sock")
	cmd := exec.Command(bin, "-f", "-s", "off", "-l", "127.0.0.1", "-p", strconv.Itoa(port),
		"-S", "lock_file="+filepath.Join(dir, "qnetd.pid")+",local_socket_file="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(dir, "qnetd.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitListening(t, addr)
	return addr, func() (int, error) { return ipcClients(sock) }
}

var clientsLine = regexp.MustCompile(`(?m)^Connected clients:\s+(\d+)$`)

// ipcClients asks corosync-qnetd's admin socket for its client count.
func ipcClients(sock string) (int, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("status \n")); err != nil {
		return 0, err
	}
	var b strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	m := clientsLine.FindStringSubmatch(b.String())
	if m == nil {
		return 0, fmt.Errorf("no client count in %q", b.String())
	}
	return strconv.Atoi(m[1])
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond) // the reference daemon gives no readiness signal on its own
	}
	t.Fatalf("nothing listens on %s", addr)
}

// ourQnetd runs our server in-process with TLS off on a loopback port.
func ourQnetd(t *testing.T) (string, func() (int, error)) {
	t.Helper()
	srv, ln := servertest.Start(t, nil)
	return ln.Addr().String(), func() (int, error) { return srv.NumConnections(), nil }
}

// TestDifferential plays every engine scenario over TCP against Debian's
// corosync-qnetd and against our server: both must print exactly the
// expected votes. Each file gets fresh servers.
func TestDifferential(t *testing.T) {
	if testing.Short() {
		t.Skip("differential test needs real time; not run with -short")
	}
	files, err := filepath.Glob("../engine/testdata/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	servers := []struct {
		name  string
		start func(*testing.T) (string, func() (int, error))
	}{{"upstream", upstreamQnetd}, {"ours", ourQnetd}}
	for _, path := range files {
		f, err := scenario.Parse(path)
		require.NoError(t, err)
		t.Run(filepath.Base(path), func(t *testing.T) {
			if f.SkipDifferential != "" {
				t.Skipf("in-process only: %s", f.SkipDifferential)
			}
			for _, srv := range servers {
				t.Run(srv.name, func(t *testing.T) {
					addr, clients := srv.start(t)
					tr := scenario.NewTCPTransport(addr)
					tr.Clients = clients
					defer tr.CloseAll()
					got, err := scenario.RunFile(f, tr)
					require.NoError(t, err)
					for i, b := range f.Blocks {
						require.Equal(t, b.Want, got[i], "%s:%d (%s)", path, b.Line, srv.name)
					}
				})
			}
		})
	}
}
