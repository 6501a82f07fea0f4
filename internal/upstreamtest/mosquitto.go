package upstreamtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
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
	onFreePort(t, "mosquitto", func(port int) (string, bool) {
		m.Port = port
		return tryMosquitto(t, bin, dir, pwFile, port)
	})
	return m
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
	log, ok, exited := startUntil(t, "mosquitto", cmd, " running")
	if !ok {
		return log, false
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
	return log, true
}
