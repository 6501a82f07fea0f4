// Package bench measures our qnetd against Debian's corosync-qnetd on
// loopback, in the same run, with the protocol-level client: each workload
// runs against both servers and the report shows the ratio.
package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// Server is a qnetd process under test. Its port and data directory stay
// the same across Restart and Start, like a daemon restarted in place.
type Server struct {
	Name string
	Addr string
	Port int
	TLS  bool
	// Dir holds the server's files (NSS or PKI directory, lock file, local
	// socket, server.log).
	Dir string
	// ClientTLS is the client side of STARTTLS for a node of cluster
	// (nil when the server runs without TLS). Configurations are cached
	// per cluster.
	ClientTLS func(cluster string) (*tls.Config, error)

	// Supervise restarts the process 100 ms after it dies of a signal
	// nobody here sent, as systemd does for corosync-qnetd
	// (Restart=on-abnormal).
	Supervise bool

	argv      []string
	openFiles int // 0: as high as allowed
	removeDir bool
	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{}
	exitErr   error
	stopping  bool          // a signal of ours is on its way
	crashes   []string      // abnormal exits, in order
	prevCPU   time.Duration // CPU time of the processes since Start that ended
	prevHWM   int64         // their peak RSS
}

// Crashes lists the abnormal exits (a signal nobody here sent) since the
// server was created.
func (s *Server) Crashes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.crashes...)
}

// Stats is ReadProc of the current process, with the CPU time and peak of
// the processes that crashed since Start (and were restarted) added in.
func (s *Server) Stats() (ProcStat, error) {
	s.mu.Lock()
	pid, cpu, hwm := s.cmd.Process.Pid, s.prevCPU, s.prevHWM
	s.mu.Unlock()
	st, err := ReadProc(pid)
	st.CPU += cpu
	st.HWM = max(st.HWM, hwm)
	return st, err
}

// PID returns the current server process's id.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Exited reports whether the current process has ended (by itself or by
// Kill/Stop), with its exit status.
func (s *Server) Exited() (bool, error) {
	s.mu.Lock()
	ch := s.exited
	s.mu.Unlock()
	select {
	case <-ch:
		return true, s.exitErr
	default:
		return false, nil
	}
}

// signalAndWait sends sig to the current process (by PID) and waits for
// it to end; after grace it is killed.
func (s *Server) signalAndWait(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, ch := s.cmd, s.exited
	s.stopping = true
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-ch:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-ch
	}
}

// Kill ends the process with SIGKILL (a crash: nothing is cleaned up).
func (s *Server) Kill() { s.signalAndWait(syscall.SIGKILL, 10*time.Second) }

// Terminate ends the process with SIGTERM, as systemd stops a daemon.
func (s *Server) Terminate() { s.signalAndWait(syscall.SIGTERM, 10*time.Second) }

// Stop ends the server and removes its files (QNETD_BENCH_KEEP=1 keeps them).
func (s *Server) Stop() {
	s.Terminate()
	if s.removeDir && os.Getenv("QNETD_BENCH_KEEP") == "" {
		os.RemoveAll(s.Dir)
	}
}

// Restart stops the process (SIGTERM) and starts it again.
func (s *Server) Restart() error {
	s.Terminate()
	return s.Start()
}

// Log is the server's output so far (of every process started).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the process (again) and waits until it listens.
func (s *Server) Start() error {
	s.mu.Lock()
	s.stopping, s.prevCPU, s.prevHWM = false, 0, 0
	s.mu.Unlock()
	return s.launch()
}

func (s *Server) launch() error {
	// Both servers get the same high open-file limit (upstream's packaging
	// leaves it at 1024, which caps it near 1016 clients).
	script := "ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$@\""
	if s.openFiles > 0 {
		// Soft and hard limit: Go programs raise the soft one at start.
		script = "ulimit -n " + strconv.Itoa(s.openFiles) + " && exec \"$@\""
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "qnetd"}, s.argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	started := time.Now()
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited, s.exitErr = cmd, exited, nil
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		ps := cmd.ProcessState
		s.prevCPU += ps.UserTime() + ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			s.prevHWM = max(s.prevHWM, ru.Maxrss<<10)
		}
		restart := !s.stopping && !ps.Exited()
		if restart {
			s.crashes = append(s.crashes, fmt.Sprintf("%s after %s", ps, time.Since(started).Round(time.Millisecond)))
		}
		restart = restart && s.Supervise
		s.mu.Unlock()
		close(exited)
		if restart {
			time.Sleep(100 * time.Millisecond) // systemd's RestartSec default
			if err := s.launch(); err != nil {
				s.mu.Lock()
				s.crashes = append(s.crashes, "restart failed: "+err.Error())
				s.mu.Unlock()
			}
		}
	}()
	if err := waitListening(s.Addr, exited, 20*time.Second); err != nil {
		s.Kill()
		return fmt.Errorf("%s: %w\n%s", s.Name, err, tail(s.Log(), 2000))
	}
	return nil
}

func (s *Server) logPath() string {
	return filepath.Join(s.Dir, "server-"+strconv.Itoa(s.Port)+".log")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitListening waits until addr accepts a connection: a daemon gives no
// readiness signal of its own, so this polls.
func waitListening(addr string, exited <-chan struct{}, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the process exited")
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s after %s", addr, d)
}

// Options configure a server under test.
type Options struct {
	TLS        bool
	MaxClients int
	// Dir reuses a data directory (kept by Stop); empty = a new temporary
	// one. Two servers may share one: lock file, local socket and log are
	// named after the port.
	Dir string
	// Port; 0 = a free one.
	Port int
	// ClientTLS reuses the client side of an earlier server with the same
	// Dir (same CA), which saves signing certificates again.
	ClientTLS func(cluster string) (*tls.Config, error)
	// OpenFiles is the process's open-file limit (soft and hard); 0 = as
	// high as allowed.
	OpenFiles int
}

func newServer(name string, o Options, argv func(dir string, port int) []string) (*Server, error) {
	s := &Server{Name: name, TLS: o.TLS, Dir: o.Dir, openFiles: o.OpenFiles}
	if s.Dir == "" {
		dir, err := os.MkdirTemp("", "qnetd-bench-"+name+"-")
		if err != nil {
			return nil, err
		}
		s.Dir, s.removeDir = dir, true
	}
	s.Port = o.Port
	if s.Port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = p
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	s.argv = argv(s.Dir, s.Port)
	if o.MaxClients > 0 {
		s.argv = append(s.argv, "-m", strconv.Itoa(o.MaxClients))
	}
	return s, nil
}

func tlsMode(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// StartOurs starts our binary as corosync-qnetd.
func StartOurs(bin string, tlsOn bool) (*Server, error) {
	return StartOursWith(bin, Options{TLS: tlsOn})
}

// StartOursWith starts our binary as corosync-qnetd with options.
func StartOursWith(bin string, o Options) (*Server, error) {
	s, err := newServer("ours", o, func(dir string, port int) []string {
		return []string{bin, "corosync-qnetd", "-f", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-s", tlsMode(o.TLS),
			"-S", "nss_db_dir=" + filepath.Join(dir, "nssdb") + ",lock_file=" + filepath.Join(dir, fmt.Sprintf("qnetd-%d.pid", port)) +
				",local_socket_file=" + filepath.Join(dir, fmt.Sprintf("qnetd-%d.sock", port))}
	})
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		if s.removeDir {
			os.RemoveAll(s.Dir)
		}
		return nil, err
	}
	if o.TLS && o.ClientTLS != nil {
		s.ClientTLS = o.ClientTLS
	} else if o.TLS {
		a, err := pki.Load(filepath.Join(s.Dir, "nssdb"))
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.ClientTLS = cachedTLS(func(cluster string) (*tls.Config, error) { return GoSignedClient(a, cluster) })
	}
	return s, nil
}

func cachedTLS(mk func(cluster string) (*tls.Config, error)) func(string) (*tls.Config, error) {
	var mu sync.Mutex
	cache := map[string]*tls.Config{}
	return func(cluster string) (*tls.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := cache[cluster]; ok {
			return c, nil
		}
		c, err := mk(cluster)
		if err == nil {
			cache[cluster] = c
		}
		return c, err
	}
}

// GoSignedClient makes a node's TLS configuration for cluster with a
// certificate signed by a, in memory (nothing is written to a's directory).
func GoSignedClient(a *pki.Authority, cluster string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1<<20)),
		Subject:      pkix.Name{CommonName: cluster},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CA, key.Public(), a.CAKey)
	if err != nil {
		return nil, err
	}
	return nodeTLS(der, key), nil
}

// nodeTLS is the node side: it presents its certificate and, like
// corosync-qdevice, insists on the "Qnetd Server" name (the chain is not
// checked here: the benchmark measures the server).
func nodeTLS(certDER []byte, key *ecdsa.PrivateKey) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{{Certificate: [][]byte{certDER}, PrivateKey: key}},
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cn := cs.PeerCertificates[0].Subject.CommonName; cn != pki.ServerCommonName {
				return fmt.Errorf("server certificate is for %q", cn)
			}
			return nil
		},
	}
}

// StartUpstream starts Debian's corosync-qnetd, with an NSS database made
// the way its certutil script makes one when TLS is on.
func StartUpstream(tlsOn bool) (*Server, error) { return StartUpstreamWith(Options{TLS: tlsOn}) }

// StartUpstreamWith starts Debian's corosync-qnetd with options.
func StartUpstreamWith(o Options) (*Server, error) {
	bin, err := exec.LookPath("corosync-qnetd")
	if err != nil {
		return nil, fmt.Errorf("Debian's corosync-qnetd is not installed (apt-get install corosync-qnetd): %w", err)
	}
	s, err := newServer("upstream", o, func(dir string, port int) []string {
		return []string{bin, "-f", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-s", tlsMode(o.TLS),
			"-S", "nss_db_dir=" + filepath.Join(dir, "nssdb") + ",lock_file=" + filepath.Join(dir, fmt.Sprintf("qnetd-%d.pid", port)) +
				",local_socket_file=" + filepath.Join(dir, fmt.Sprintf("qnetd-%d.sock", port))}
	})
	if err != nil {
		return nil, err
	}
	db := filepath.Join(s.Dir, "nssdb")
	if o.TLS {
		if _, err := os.Stat(filepath.Join(db, "cert9.db")); err != nil {
			if err := makeNSSDB(db); err != nil {
				s.cleanup()
				return nil, err
			}
		}
	}
	if err := s.Start(); err != nil {
		s.cleanup()
		return nil, err
	}
	if o.TLS && o.ClientTLS != nil {
		s.ClientTLS = o.ClientTLS
	} else if o.TLS {
		var smu sync.Mutex
		serial := 102 + int(time.Now().UnixNano()%1000)*1000
		s.ClientTLS = cachedTLS(func(cluster string) (*tls.Config, error) {
			smu.Lock()
			serial++
			n := serial
			smu.Unlock()
			return nssSignedClient(db, cluster, n)
		})
	}
	return s, nil
}

func (s *Server) cleanup() {
	if s.removeDir {
		os.RemoveAll(s.Dir)
	}
}

func upstreamVersion() string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "corosync-qnetd").Output()
	if err != nil {
		return "unknown"
	}
	return "corosync-qnetd " + strings.TrimSpace(string(out))
}

func nsscertutil(db string, stdin string, args ...string) error {
	cmd := exec.Command("certutil", append(args, "-d", "sql:"+db, "-f", filepath.Join(db, "pwdfile.txt"))...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("certutil %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// makeNSSDB builds what upstream's corosync-qnetd-certutil -i builds: a CA
// "QNet CA" (CA, path length 0) and a server certificate "QNetd Cert"
// with CN "Qnetd Server".
func makeNSSDB(db string) error {
	if _, err := exec.LookPath("certutil"); err != nil {
		return errors.New("NSS certutil is not installed (apt-get install libnss3-tools)")
	}
	if err := os.MkdirAll(db, 0o700); err != nil {
		return err
	}
	noise := make([]byte, 64)
	_, _ = rand.Read(noise)
	if err := os.WriteFile(filepath.Join(db, "noise.txt"), noise, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(db, "pwdfile.txt"), nil, 0o600); err != nil {
		return err
	}
	z := filepath.Join(db, "noise.txt")
	if err := nsscertutil(db, "", "-N"); err != nil {
		return err
	}
	if err := nsscertutil(db, "y\n0\ny\n", "-S", "-n", "QNet CA", "-s", "CN=QNet CA", "-x", "-t", "CT,,", "-m", "101", "-v", "1200", "-z", z, "-2"); err != nil {
		return err
	}
	return nsscertutil(db, "", "-S", "-n", "QNetd Cert", "-s", "CN=Qnetd Server", "-c", "QNet CA", "-t", "u,u,u", "-m", "102", "-v", "1200", "-z", z)
}

func nssSignedClient(db, cluster string, serial int) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cluster}}, key)
	if err != nil {
		return nil, err
	}
	in := filepath.Join(db, "req-"+strconv.Itoa(serial)+".der")
	out := filepath.Join(db, "cert-"+strconv.Itoa(serial)+".der")
	if err := os.WriteFile(in, der, 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(in)
	defer os.Remove(out)
	if err := nsscertutil(db, "", "-C", "-c", "QNet CA", "-i", in, "-o", out, "-m", strconv.Itoa(serial), "-v", "12"); err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	return nodeTLS(cert, key), nil
}
