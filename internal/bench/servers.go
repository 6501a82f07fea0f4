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
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// Server is a qnetd process under test.
type Server struct {
	Name string
	Addr string
	// ClientTLS is the client side of STARTTLS for a node of cluster
	// (nil when the server runs without TLS).
	ClientTLS func(cluster string) (*tls.Config, error)
	cmd       *exec.Cmd
	dir       string
}

// PID returns the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop ends the server (by PID) and removes its files.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
	if s.dir != "" && os.Getenv("QNETD_BENCH_KEEP") == "" {
		os.RemoveAll(s.dir)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond) // a daemon gives no readiness signal of its own
	}
	return fmt.Errorf("nothing listens on %s after %s", addr, d)
}

// start runs argv with a high open-file limit (both servers get the same;
// upstream's packaging leaves it at 1024, which caps it near 1016 clients).
func start(name, dir string, argv []string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i, a := range argv {
		argv[i] = strings.ReplaceAll(strings.ReplaceAll(a, "{PORT}", strconv.Itoa(port)), "{DIR}", dir)
	}
	script := "ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$@\""
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "qnetd"}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &Server{Name: name, Addr: addr, cmd: cmd, dir: dir}
	if err := waitListening(addr, 15*time.Second); err != nil {
		s.Stop()
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		return nil, fmt.Errorf("%s: %w\n%s", name, err, log)
	}
	return s, nil
}

// StartOurs starts our binary as corosync-qnetd.
func StartOurs(bin string, tlsOn bool) (*Server, error) {
	dir, err := os.MkdirTemp("", "qnetd-bench-ours-")
	if err != nil {
		return nil, err
	}
	mode := "off"
	if tlsOn {
		mode = "on"
	}
	s, err := start("ours", dir, []string{bin, "corosync-qnetd", "-f", "-l", "127.0.0.1", "-p", "{PORT}", "-s", mode,
		"-S", "nss_db_dir={DIR}/nssdb,lock_file={DIR}/qnetd.pid,local_socket_file={DIR}/qnetd.sock"})
	if err != nil {
		return nil, err
	}
	if tlsOn {
		a, err := pki.Load(filepath.Join(dir, "nssdb"))
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.ClientTLS = func(cluster string) (*tls.Config, error) { return goSignedClient(a, cluster) }
	}
	return s, nil
}

func goSignedClient(a *pki.Authority, cluster string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cluster}}, key)
	if err != nil {
		return nil, err
	}
	csr, err := pki.ParseCSR(der)
	if err != nil {
		return nil, err
	}
	path, err := a.Sign(csr, cluster, time.Now())
	if err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return nodeTLS(cert, key), nil
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
func StartUpstream(tlsOn bool) (*Server, error) {
	bin, err := exec.LookPath("corosync-qnetd")
	if err != nil {
		return nil, fmt.Errorf("Debian's corosync-qnetd is not installed (apt-get install corosync-qnetd): %w", err)
	}
	dir, err := os.MkdirTemp("", "qnetd-bench-upstream-")
	if err != nil {
		return nil, err
	}
	mode := "off"
	db := filepath.Join(dir, "nssdb")
	if tlsOn {
		mode = "on"
		if err := makeNSSDB(db); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	s, err := start("upstream", dir, []string{bin, "-f", "-l", "127.0.0.1", "-p", "{PORT}", "-s", mode,
		"-S", "nss_db_dir=" + db + ",lock_file={DIR}/qnetd.pid,local_socket_file={DIR}/qnetd.sock"})
	if err != nil {
		return nil, err
	}
	if tlsOn {
		serial := 102
		s.ClientTLS = func(cluster string) (*tls.Config, error) {
			serial++
			return nssSignedClient(db, cluster, serial)
		}
	}
	return s, nil
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
	if err := nsscertutil(db, "", "-C", "-c", "QNet CA", "-i", in, "-o", out, "-m", strconv.Itoa(serial), "-v", "12"); err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	return nodeTLS(cert, key), nil
}
