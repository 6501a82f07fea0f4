// Package upstreamtest starts Debian's corosync-qnetd for tests that
// compare it with ours, and Debian's mosquitto for the MQTT tests. Upstream binds its port itself and takes no
// listener, so a port is tried and, when it turns out to be taken (the
// daemon exits before it is ready), another one; the daemon's own
// "ready" line says it listens, so a test never talks to somebody else's
// socket.
package upstreamtest

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary returns the path of Debian's program name; without it the test
// is skipped, or fails when QNETD_REQUIRE_UPSTREAM is set (CI).
func Binary(t testing.TB, name string) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/" + name, "/usr/bin/" + name} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
		t.Fatalf("%s is not installed but QNETD_REQUIRE_UPSTREAM is set", name)
	}
	t.Skipf("Debian's %s is not installed (make test installs it)", name)
	return ""
}

// Qnetd is a running corosync-qnetd.
type Qnetd struct {
	// Addr is where clients connect (127.0.0.1:port).
	Addr string
	Port int
	// Sock is its local IPC socket.
	Sock string
}

// Ports are tried from below Linux's ephemeral range (32768 and up by
// default), so that no outgoing connection of the machine holds one.
const (
	portLow  = 20000
	portHigh = 32000
	attempts = 8
)

// Start runs corosync-qnetd -f -d -s off [-l host] with its lock and IPC
// socket in a temporary directory and waits until it is ready. It is
// stopped, by PID, when the test ends: "shutdown" over IPC, else SIGTERM,
// else SIGKILL.
func Start(t testing.TB, host string) *Qnetd {
	t.Helper()
	bin := Binary(t, "corosync-qnetd")
	var q *Qnetd
	onFreePort(t, "corosync-qnetd", func(port int) (string, bool) {
		var log string
		var ok bool
		q, log, ok = try(t, bin, host, port)
		return log, ok
	})
	return q
}

// onFreePort calls try with ports from portLow to portHigh until it
// starts the program (true) or fails for another reason than a taken
// port.
func onFreePort(t testing.TB, name string, try func(port int) (log string, ok bool)) {
	t.Helper()
	var tried []string
	for range attempts {
		port := portLow + rand.IntN(portHigh-portLow)
		log, ok := try(port)
		if ok {
			return
		}
		if !strings.Contains(log, "in use") {
			t.Fatalf("%s did not start on port %d:\n%s", name, port, log)
		}
		tried = append(tried, strconv.Itoa(port))
	}
	t.Fatalf("%s found every port taken: %s", name, strings.Join(tried, ", "))
}

func try(t testing.TB, bin, host string, port int) (*Qnetd, string, bool) {
	dir := t.TempDir()
	q := &Qnetd{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, Sock: filepath.Join(dir, "qnetd.sock")}
	args := []string{"-f", "-d", "-s", "off", "-p", strconv.Itoa(port),
		"-S", "lock_file=" + filepath.Join(dir, "qnetd.pid") + ",local_socket_file=" + q.Sock}
	if host != "" {
		args = append(args, "-l", host)
	}
	cmd := exec.Command(bin, args...)
	log, ok, exited := startUntil(t, "corosync-qnetd", cmd, "QNetd ready to provide service")
	if !ok {
		return nil, log, false
	}
	t.Cleanup(func() { stop(cmd, q, exited) })
	return q, log, true
}

// startUntil starts cmd in a process group of its own and reads its
// standard error until a line contains ready. It reports false with what
// the program logged when it exits first; exited closes once it has.
func startUntil(t testing.TB, name string, cmd *exec.Cmd, ready string) (log string, ok bool, exited chan struct{}) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited = make(chan struct{})
	readyCh := make(chan struct{})
	var mu sync.Mutex
	var logBuf bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			if !signalled {
				mu.Lock()
				logBuf.WriteString(sc.Text() + "\n")
				mu.Unlock()
			}
			if !signalled && strings.Contains(sc.Text(), ready) {
				signalled = true
				close(readyCh)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(exited)
	}()
	logged := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logBuf.String()
	}
	select {
	case <-readyCh:
		return logged(), true, exited
	case <-exited:
		return logged(), false, exited
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("%s did not become ready:\n%s", name, logged())
	}
	return "", false, exited
}

func stop(cmd *exec.Cmd, q *Qnetd, exited chan struct{}) {
	// "shutdown" over IPC ends its loop at once; SIGTERM only closes the
	// IPC socket and the loop then sleeps until the next event.
	if c, err := net.Dial("unix", q.Sock); err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, "shutdown \n")
		_, _ = io.ReadAll(c)
		c.Close()
	}
	select {
	case <-exited:
		return
	case <-time.After(5 * time.Second):
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if c, err := net.Dial("tcp", q.Addr); err == nil {
		c.Close() // wake its poll loop
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}
