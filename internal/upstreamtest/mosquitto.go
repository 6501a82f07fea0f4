package upstreamtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Mosquitto is a running Debian mosquitto broker on loopback that
// accepts only User with Password.
type Mosquitto struct {
	Host     string
	Port     int
	User     string
	Password string
}

// StartMosquitto runs mosquitto on 127.0.0.1 with a password file and
// no persistence, on a port it tries (and another one when that is
// taken), and waits for its "running" line. It is stopped, by PID, when
// the test ends.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	bin := Binary(t, "mosquitto")
	passwd := Binary(t, "mosquitto_passwd")
	dir := t.TempDir()
	m := &Mosquitto{Host: "127.0.0.1", User: "addons", Password: "secret-" + strconv.Itoa(rand.IntN(1e6))}
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-c", "-b", pwFile, m.User, m.Password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	var tried []string
	for range attempts {
		port := portLow + rand.IntN(portHigh-portLow)
		log, ok := tryMosquitto(t, bin, dir, pwFile, port)
		if ok {
			m.Port = port
			return m
		}
		if !strings.Contains(log, "in use") {
			t.Fatalf("mosquitto did not start on port %d:\n%s", port, log)
		}
		tried = append(tried, strconv.Itoa(port))
	}
	t.Fatalf("mosquitto found every port taken: %s", strings.Join(tried, ", "))
	return nil
}

func tryMosquitto(t testing.TB, bin, dir, pwFile string, port int) (string, bool) {
	conf := filepath.Join(dir, "mosquitto-"+strconv.Itoa(port)+".conf")
	// Started as root, mosquitto switches to its own user, which cannot
	// read the test's private directory: it stays the test's user.
	me := "root"
	if u, err := user.Current(); err == nil {
		me = u.Username
	}
	text := fmt.Sprintf("user %s\nlistener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\npersistence false\n"+
		"log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n", me, port, pwFile)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatalf("mosquitto config: %v", err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("mosquitto: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	ready := make(chan struct{})
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
			if !signalled && strings.Contains(sc.Text(), " running") {
				signalled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(exited)
	}()
	log := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logBuf.String()
	}
	select {
	case <-ready:
	case <-exited:
		return log(), false
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("mosquitto did not become ready:\n%s", log())
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return log(), true
}
