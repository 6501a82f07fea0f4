// Package pairing is the restricted SSH endpoint that answers Proxmox's
// `pvecm qdevice setup ADDRESS` unchanged. pvecm talks to the qnetd host as
// root over SSH: ssh-copy-id, then `ssh -o BatchMode=yes -lroot ADDRESS
// corosync-qnetd-certutil ...` and scp (the SFTP subsystem with OpenSSH >=
// 9.0, legacy `scp -f` / `scp -t` before). This server does exactly that
// and nothing else:
//
//   - exec: ssh-copy-id's `exit` key test and its key-install command (the
//     keys on stdin are validated and appended to our own store),
//     `corosync-qnetd-certutil -i`, `corosync-qnetd-certutil -s -c
//     /tmp/FILE -n CLUSTER` (run in-process on PKIDir), read-only
//     `corosync-qnetd-tool` (-s, -l, -v, -c), `scp -f FILE` and `scp -t
//     /tmp`; anything else is refused with a message and exit status 127;
//   - the sftp subsystem over a virtual tree holding only
//     /etc/corosync/qnetd/nssdb/qnetd-cacert.crt and cluster-*.crt
//     (read-only) and a writable /tmp for certificate requests, each at
//     most pki.MaxCSRSize bytes;
//   - no shell, no pty, no port, agent or X11 forwarding, no environment.
//
// Logins: public keys (Config.AuthorizedKeys plus keys installed by
// ssh-copy-id), and the password when one is configured, which can only
// install a key. Failed logins are logged and rate-limited per source
// address.
//
// Files, under DataDir/ssh: ssh_host_ed25519_key, ssh_host_rsa_key (and
// .pub), created once; authorized_keys (keys installed by ssh-copy-id);
// tmp/ (the virtual /tmp).
package pairing

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
)

// Virtual paths the endpoint serves, as pvecm names them.
const (
	NSSDBPath = "/etc/corosync/qnetd/nssdb"
	TmpPath   = "/tmp"
)

// ServerVersion is the SSH identification string. It must not start with
// "dropbear" (ssh-copy-id would then write /etc/dropbear/authorized_keys)
// nor "NetScreen".
const ServerVersion = "SSH-2.0-qnetd_pairing"

// Limits.
const (
	// MaxUpload bounds one file uploaded to /tmp (a certificate request).
	MaxUpload = 64 << 10
	// maxTmpFiles bounds the files kept in /tmp.
	maxTmpFiles = 32
	// maxKeyInput bounds the keys ssh-copy-id sends on stdin.
	maxKeyInput = 64 << 10
	// maxStoredKeys bounds the keys installed by ssh-copy-id.
	maxStoredKeys = 64
	// maxServedFile bounds a certificate file served for download.
	maxServedFile = 1 << 20
	// maxConns bounds simultaneous connections, maxConnsPerIP those from
	// one address.
	maxConns      = 32
	maxConnsPerIP = 8
	// maxSessions bounds the sessions open at once on one connection.
	maxSessions = 4
	// handshakeTimeout bounds the key exchange and login.
	handshakeTimeout = 30 * time.Second
	// connLifetime bounds one logged-in connection.
	connLifetime = 10 * time.Minute
	// tmpMaxAge: files in /tmp older than this are removed.
	tmpMaxAge = 24 * time.Hour
)

// User is the only login name accepted: pvecm logs in as root.
const User = "root"

// Config configures the pairing endpoint.
type Config struct {
	// Addr is the listen address for ListenAndServe (default ":22").
	Addr string
	// DataDir holds the endpoint's state in DataDir/ssh: host keys,
	// installed authorized keys and the files uploaded to /tmp.
	DataDir string
	// PKIDir is the certificate directory served as
	// /etc/corosync/qnetd/nssdb and used by corosync-qnetd-certutil.
	PKIDir string
	// Password, when not empty, allows password logins as root, which
	// can only install a key (ssh-copy-id).
	Password string
	// AuthorizedKeys are authorized_keys lines from the options; lines
	// with options (from=, command=, ...) are ignored with a warning.
	AuthorizedKeys []string
	// PublicHost is the address the Proxmox nodes use, for the
	// ~/.ssh/config stanza in the log (optional).
	PublicHost string
	// Tool, when set, answers read-only corosync-qnetd-tool commands. It
	// is called only with -s, -l, -v and -c CLUSTER (never -H or -p), and
	// has adminipc.ToolMain's signature.
	Tool func(args []string, stdout, stderr io.Writer) int
	// Log receives the endpoint's log.
	Log zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is the pairing SSH endpoint.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	now      func() time.Time
	dir      string // DataDir/ssh
	tmpDir   string // DataDir/ssh/tmp: the virtual /tmp
	pkiDir   string
	hostKeys []ssh.Signer
	keys     *keyStore
	limiter  *limiter
	certMu   sync.Mutex // one corosync-qnetd-certutil at a time
	tmpMu    sync.Mutex // uploads to /tmp

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	perIP     map[string]int
	wg        sync.WaitGroup
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("pairing: server closed")

// New loads or creates the host keys and the key store.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("pairing: DataDir is not set")
	}
	if cfg.PKIDir == "" {
		return nil, errors.New("pairing: PKIDir is not set")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pkiDir, err := filepath.Abs(cfg.PKIDir)
	if err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Log,
		now:       cfg.Now,
		dir:       filepath.Join(dataDir, "ssh"),
		pkiDir:    pkiDir,
		limiter:   newLimiter(cfg.Now),
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
		perIP:     map[string]int{},
	}
	s.tmpDir = filepath.Join(s.dir, "tmp")
	for _, d := range []string{s.dir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("pairing: create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("pairing: %w", err)
		}
	}
	if s.hostKeys, err = loadHostKeys(s.dir, s.log); err != nil {
		return nil, err
	}
	if s.keys, err = loadKeyStore(filepath.Join(s.dir, "authorized_keys"), cfg.AuthorizedKeys, s.log); err != nil {
		return nil, err
	}
	s.cleanTmp()
	return s, nil
}

// HostKeyFingerprints returns the host keys' SHA256 fingerprints as the
// ssh client shows them at first contact: "ED25519 key fingerprint is
// SHA256:...".
func (s *Server) HostKeyFingerprints() []string {
	var out []string
	for _, k := range s.hostKeys {
		out = append(out, fmt.Sprintf("%s key fingerprint is %s", keyTypeName(k.PublicKey()), ssh.FingerprintSHA256(k.PublicKey())))
	}
	return out
}

// HostPublicKeys returns the host keys in authorized_keys / known_hosts
// format.
func (s *Server) HostPublicKeys() []string {
	var out []string
	for _, k := range s.hostKeys {
		out = append(out, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.PublicKey()))))
	}
	return out
}

// SSHConfigStanza is what to add to /root/.ssh/config on the Proxmox node
// that runs `pvecm qdevice setup HOST` when the endpoint does not listen
// on port 22: pvecm has no port option.
func SSHConfigStanza(host string, port int) string {
	if host == "" {
		host = "HOME-ASSISTANT-IP"
	}
	return fmt.Sprintf("Host %s\n    Port %d\n    User root\n", host, port)
}

// ListenAndServe listens on cfg.Addr (default ":22") and serves.
func (s *Server) ListenAndServe() error {
	addr := s.cfg.Addr
	if addr == "" {
		addr = ":22"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pairing: listen on %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Serve accepts connections on l until Close. It logs the host key
// fingerprints and, when the port is not 22, the ~/.ssh/config stanza.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	s.logStart(l.Addr())

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Error().Err(err).Dur("retry_in", backoff).Msg("pairing: cannot accept connection")
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("pairing: accept: %w", err)
		}
		backoff = 0
		ip := remoteIP(c.RemoteAddr())
		if blocked, until, first := s.limiter.blocked(ip); blocked {
			if first {
				s.log.Warn().Str("addr", ip).Time("until", until).
					Msgf("pairing: refusing SSH connections from %s until %s after too many failed logins", ip, until.Format(time.TimeOnly))
			}
			c.Close()
			continue
		}
		if ok, why := s.track(c, ip); !ok {
			// Debug: a flood from one address must not flood the log; its
			// failed logins are logged and block it.
			s.log.Debug().Str("addr", ip).Msgf("pairing: connection from %s closed: %s", ip, why)
			c.Close()
			continue
		}
		go func() {
			defer s.untrack(c, ip)
			s.handleConn(c)
		}()
	}
}

func (s *Server) logStart(addr net.Addr) {
	port := 0
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = ta.Port
	}
	ev := s.log.Info().Str("addr", addr.String()).Strs("host_keys", s.HostKeyFingerprints())
	ev.Msgf("pairing: SSH endpoint for `pvecm qdevice setup` listening on %s; check these host key fingerprints at the first-contact prompt: %s",
		addr, strings.Join(s.HostKeyFingerprints(), "; "))
	if s.cfg.Password != "" {
		s.log.Info().Msg("pairing: password login is on (only to install a key with ssh-copy-id); switch it off once paired")
	}
	if port != 0 && port != 22 {
		s.log.Info().Int("port", port).Msgf("pairing: the SSH port is %d, not 22: pvecm has no port option, so add this to /root/.ssh/config on the Proxmox node first:\n%s",
			port, SSHConfigStanza(s.cfg.PublicHost, port))
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(c net.Conn, ip string) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return false, "shutting down"
	case len(s.conns) >= maxConns:
		return false, fmt.Sprintf("too many SSH connections (%d)", maxConns)
	case s.perIP[ip] >= maxConnsPerIP:
		return false, fmt.Sprintf("too many SSH connections from this address (%d)", maxConnsPerIP)
	}
	s.conns[c] = struct{}{}
	s.perIP[ip]++
	s.wg.Add(1)
	return true, ""
}

func (s *Server) untrack(c net.Conn, ip string) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// Close stops the listeners, closes every connection and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// connState is what one connection's login did.
type connState struct {
	ip             string
	passwordFailed bool
	keyRejected    string // fingerprint of the last rejected key
	badUser        string
	blocked        bool
}

func (s *Server) serverConfig(st *connState) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		ServerVersion: ServerVersion,
		MaxAuthTries:  6,
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if b, _, _ := s.limiter.blocked(st.ip); b {
				st.blocked = true
				return nil, errors.New("too many failed logins")
			}
			if meta.User() != User {
				st.badUser = meta.User()
				return nil, errors.New("unknown user")
			}
			if k, ok := s.keys.lookup(key); ok {
				return &ssh.Permissions{Extensions: map[string]string{
					"auth": "publickey", "key": ssh.FingerprintSHA256(key), "type": key.Type(), "comment": k.comment, "source": k.source,
				}}, nil
			}
			st.keyRejected = ssh.FingerprintSHA256(key)
			return nil, errors.New("key not authorised")
		},
	}
	if s.cfg.Password != "" {
		cfg.PasswordCallback = func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if b, _, _ := s.limiter.blocked(st.ip); b {
				st.blocked = true
				return nil, errors.New("too many failed logins")
			}
			ok := subtle.ConstantTimeCompare(pw, []byte(s.cfg.Password)) == 1
			if ok && meta.User() == User {
				return &ssh.Permissions{Extensions: map[string]string{"auth": "password"}}, nil
			}
			st.passwordFailed = true
			n, block := s.limiter.fail(st.ip)
			ev := s.log.Warn().Str("addr", st.ip).Str("user", meta.User()).Int("failures", n)
			if block > 0 {
				ev = ev.Dur("blocked_for", block)
			}
			ev.Msgf("pairing: wrong password for %q from %s (%d recent failures from this address)", meta.User(), st.ip, n)
			return nil, errors.New("wrong password")
		}
	}
	for _, k := range s.hostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

func (s *Server) handleConn(c net.Conn) {
	st := &connState{ip: remoteIP(c.RemoteAddr())}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout)) // the real clock, not cfg.Now
	sc, chans, reqs, err := ssh.NewServerConn(c, s.serverConfig(st))
	if err != nil {
		s.loginFailed(st, err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.limiter.success(st.ip)
	perms := sc.Permissions.Extensions
	sess := &session{s: s, ip: st.ip, passwordOnly: perms["auth"] == "password"}
	if !sess.passwordOnly {
		sess.identity = keyIdentity(perms["type"], perms["key"], perms["comment"])
	}
	if sess.passwordOnly {
		s.log.Info().Str("addr", st.ip).Msgf("pairing: %s logged in with the password (may only install a key)", st.ip)
	} else {
		s.log.Info().Str("addr", st.ip).Str("key", perms["key"]).Str("comment", perms["comment"]).
			Msgf("pairing: %s logged in with key %s (%s)", st.ip, perms["key"], nonEmpty(perms["comment"], "no comment"))
	}
	timer := time.AfterFunc(connLifetime, func() { sc.Close() })
	defer timer.Stop()
	go s.globalRequests(st.ip, reqs)
	var wg sync.WaitGroup
	var active atomic.Int32
	for nc := range chans {
		if nc.ChannelType() == "session" && active.Load() >= maxSessions {
			_ = nc.Reject(ssh.ResourceShortage, "qnetd pairing: too many sessions on one connection")
			continue
		}
		if nc.ChannelType() != "session" {
			s.log.Warn().Str("addr", st.ip).Str("channel", nc.ChannelType()).
				Msgf("pairing: refused %s channel from %s (no forwarding)", nc.ChannelType(), st.ip)
			_ = nc.Reject(ssh.Prohibited, "qnetd pairing: forwarding is not allowed")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		active.Add(1)
		go func() {
			defer wg.Done()
			defer active.Add(-1)
			sess.serve(ch, creqs)
		}()
	}
	sc.Close()
	wg.Wait()
}

func nonEmpty(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// loginFailed logs a connection that did not log in and counts it as one
// failure when it offered a credential (wrong passwords count each).
func (s *Server) loginFailed(st *connState, err error) {
	var ae *ssh.ServerAuthError
	if !errors.As(err, &ae) {
		s.log.Debug().Str("addr", st.ip).Err(err).Msg("pairing: SSH handshake failed")
		return
	}
	switch {
	case st.blocked:
		s.log.Debug().Str("addr", st.ip).Msg("pairing: login refused: too many failed logins")
	case st.passwordFailed:
		// counted and logged per password
	case st.badUser != "":
		n, _ := s.limiter.fail(st.ip)
		s.log.Warn().Str("addr", st.ip).Str("user", st.badUser).Int("failures", n).
			Msgf("pairing: login as %q from %s refused: only root can log in (%d recent failures from this address)", st.badUser, st.ip, n)
	case st.keyRejected != "":
		n, _ := s.limiter.fail(st.ip)
		s.log.Warn().Str("addr", st.ip).Str("key", st.keyRejected).Int("failures", n).
			Msgf("pairing: key %s from %s is not authorised (%d recent failures from this address); ssh-copy-id installs it with the password", st.keyRejected, st.ip, n)
	default:
		s.log.Debug().Str("addr", st.ip).Msg("pairing: connection closed before login")
	}
}

func (s *Server) globalRequests(ip string, reqs <-chan *ssh.Request) {
	for r := range reqs {
		switch r.Type {
		case "tcpip-forward", "streamlocal-forward@openssh.com", "cancel-tcpip-forward", "cancel-streamlocal-forward@openssh.com":
			s.log.Warn().Str("addr", ip).Str("request", r.Type).Msgf("pairing: refused port forwarding request from %s", ip)
		}
		if r.WantReply {
			_ = r.Reply(false, nil)
		}
	}
}

// exitStatus sends the exit status and closes the channel.
func exitStatus(ch ssh.Channel, code int) {
	_ = ch.CloseWrite()
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
	_ = ch.Close()
}

// rewritePaths replaces real directories by the virtual ones in output.
func (s *Server) rewritePaths(b []byte) []byte {
	pairs := [][2]string{{s.pkiDir, NSSDBPath}, {s.tmpDir, TmpPath}}
	if len(s.pkiDir) < len(s.tmpDir) {
		pairs[0], pairs[1] = pairs[1], pairs[0]
	}
	for _, p := range pairs {
		b = bytes.ReplaceAll(b, []byte(p[0]), []byte(p[1]))
	}
	return b
}

func keyTypeName(k ssh.PublicKey) string {
	switch k.Type() {
	case ssh.KeyAlgoED25519:
		return "ED25519"
	case ssh.KeyAlgoRSA:
		return "RSA"
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return "ECDSA"
	}
	return strings.ToUpper(k.Type())
}
