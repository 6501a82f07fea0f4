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
// address, and failed passwords also all sources together (limiter.go);
// connections that have not logged in are capped per source and closed
// after preAuthTimeout.
//
// Files, under DataDir/ssh: ssh_host_ed25519_key, ssh_host_rsa_key (and
// .pub), created once; authorized_keys (keys installed by ssh-copy-id);
// tmp/ (the virtual /tmp).
package pairing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
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
	// maxConns bounds simultaneous connections, maxConnsPerSource those
	// from one source (an IPv4 address or an IPv6 /64, see sourceOf).
	maxConns          = 32
	maxConnsPerSource = 8
	// maxPreAuthPerSource bounds the connections from one source that
	// have not logged in yet. pvecm and ssh-copy-id open one connection
	// at a time; a source that stalls handshakes holds at most an eighth
	// of maxConns, so it takes 8 sources, not 4 (or 5 addresses as 40
	// stalled handshakes did), to hold every slot, and then only for
	// preAuthTimeout at a time.
	maxPreAuthPerSource = 4
	// maxSessions bounds the sessions open at once on one connection.
	maxSessions = 4
	// preAuthTimeout bounds the key exchange and login together. A person
	// may be at work on a connection that has not logged in: comparing
	// the host key fingerprint at ssh's first-contact prompt, or typing
	// the password (DOCS.md, "Pairing with Proxmox", step 3). 20 s leaves
	// time for either while a stalled connection holds its slot for no
	// longer. A person slower than that gets through on the next run: ssh
	// saves the host key as soon as it is accepted, and asks for the
	// password again.
	preAuthTimeout = 20 * time.Second
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
	// Gate, optional, is the password check shared with the pcsd
	// endpoint; its password replaces Password. Without it the endpoint
	// makes its own (NewGate).
	Gate *Gate

	// preAuthTimeout replaces the constant of that name when set (tests
	// shorten it).
	preAuthTimeout time.Duration
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
	gate     *Gate
	oneTime  *OneTime
	limiter  *limiter
	certMu   sync.Mutex // one corosync-qnetd-certutil at a time
	tmpMu    sync.Mutex // uploads to /tmp
	locks    lockDirs   // shell scripts' directories in /run

	preAuthTimeout time.Duration

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]*tracked
	sources   map[string]*sourceConns
	fullSaid  bool // the refusal for maxConns was logged
	wg        sync.WaitGroup
}

// tracked is an open connection.
type tracked struct {
	src     string
	preAuth bool // not logged in yet
}

// sourceConns counts the open connections of one source.
type sourceConns struct {
	total, preAuth int
	said           bool // a refusal was logged (once while the source has connections)
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
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]*tracked{},
		sources:   map[string]*sourceConns{},
	}
	s.preAuthTimeout = cfg.preAuthTimeout
	if s.preAuthTimeout <= 0 {
		s.preAuthTimeout = preAuthTimeout
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
	if s.gate = cfg.Gate; s.gate == nil {
		if s.gate, err = NewGate(dataDir, cfg.Password, cfg.Now); err != nil {
			return nil, err
		}
	}
	s.cfg.Password = s.gate.password
	s.oneTime, s.limiter = s.gate.oneTime, s.gate.limiter
	s.cleanTmp()
	return s, nil
}

// OneTime is the one-time pairing password (onetime.go).
func (s *Server) OneTime() *OneTime { return s.oneTime }

// FirstOneTime makes the one-time pairing password on the endpoint's
// first start: when none was ever made and no key may log in yet, so that
// pairing works without setting an option first. It reports whether it
// made one.
func (s *Server) FirstOneTime() (bool, error) {
	if s.oneTime.Made() || s.keys.count() > 0 {
		return false, nil
	}
	v, err := s.oneTime.Renew(s.now())
	if err != nil {
		return false, err
	}
	s.log.Info().Time("expires", v.Expires).
		Msg("pairing: made a one-time pairing password for the first pairing; the status page's pairing card shows it")
	return true, nil
}

// RenewOneTime makes a new one-time pairing password at the admin's
// request (the status page); the earlier one stops working.
func (s *Server) RenewOneTime() (OneTimeView, error) {
	v, err := s.oneTime.Renew(s.now())
	if err != nil {
		return v, err
	}
	s.log.Info().Time("expires", v.Expires).
		Msg("pairing: made a new one-time pairing password at the admin's request; the status page's pairing card shows it")
	return v, nil
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
		ip, src := sourceOf(c.RemoteAddr())
		// Sources blocked after failed logins are not refused here: the
		// block refuses their passwords, their keys still log in, and
		// their connections are bounded like anyone's.
		if ok, why := s.track(c, ip, src); !ok {
			s.refuseConn(c, why)
			continue
		}
		go func() {
			defer s.untrack(c)
			s.handleConn(c, ip, src)
		}()
	}
}

// refuseConn closes a connection refused before the SSH handshake. The SSH
// transport lets a server send lines of text before its version line;
// OpenSSH shows them with -v, so the refusal is not a bare close. The
// write has its own goroutine and deadline so that a client that does not
// read cannot hold up the accept loop.
func (s *Server) refuseConn(c net.Conn, why string) {
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, "qnetd pairing: connection refused: "+why+"\r\n")
		c.Close()
	}()
}

func (s *Server) logStart(addr net.Addr) {
	port := 0
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = ta.Port
	}
	ev := s.log.Info().Str("addr", addr.String()).Strs("host_keys", s.HostKeyFingerprints())
	ev.Msg("pairing: SSH endpoint for `pvecm qdevice setup` listening; check its host_keys at the first-contact prompt")
	if s.cfg.Password != "" {
		s.log.Info().Msg("pairing: password login is on (only to install a key with ssh-copy-id); switch it off once paired")
	}
	if v := s.oneTime.View(s.now()); v.State == OneTimeValid {
		s.log.Info().Time("expires", v.Expires).
			Msg("pairing: a one-time pairing password is valid; the status page's pairing card shows it")
	}
	if port != 0 && port != 22 {
		s.log.Info().Int("port", port).Str("ssh_config", SSHConfigStanza(s.cfg.PublicHost, port)).
			Msg("pairing: the SSH port is not 22 and pvecm has no port option: add the ssh_config stanza (the status page shows it) to /root/.ssh/config on the Proxmox node first")
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track counts a new connection, or says why it is refused (and logs the
// refusal: a warning the first time for a source or for the endpoint, then
// debug, so a flood cannot flood the log).
func (s *Server) track(c net.Conn, ip, src string) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.sources[src]
	if sc == nil {
		sc = &sourceConns{}
	}
	var why string
	warn := false
	switch {
	case s.closed:
		return false, "the endpoint is shutting down"
	case len(s.conns) >= maxConns:
		why = fmt.Sprintf("too many SSH connections (%d), try again later", maxConns)
		warn, s.fullSaid = !s.fullSaid, true
	case sc.total >= maxConnsPerSource:
		why = fmt.Sprintf("too many SSH connections from your address (%d)", maxConnsPerSource)
		warn, sc.said = !sc.said, true
	case sc.preAuth >= maxPreAuthPerSource:
		why = fmt.Sprintf("%d connections from your address have not logged in yet; each is closed %s after it opened",
			maxPreAuthPerSource, s.preAuthTimeout)
		warn, sc.said = !sc.said, true
	}
	if why != "" {
		ev := s.log.Debug()
		if warn {
			ev = s.log.Warn()
		}
		ev = ev.Str("addr", ip)
		if src != ip {
			ev = ev.Str("source", src)
		}
		ev.Str("reason", why).Msg("pairing: connection refused")
		if sc.total > 0 {
			s.sources[src] = sc // keep the flag; a source without connections is not kept
		}
		return false, why
	}
	s.sources[src] = sc
	s.conns[c] = &tracked{src: src, preAuth: true}
	sc.total++
	sc.preAuth++
	s.wg.Add(1)
	return true, ""
}

// loggedIn moves c out of its source's count of connections that have not
// logged in.
func (s *Server) loggedIn(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.conns[c]; t != nil && t.preAuth {
		t.preAuth = false
		if sc := s.sources[t.src]; sc != nil {
			sc.preAuth--
			sc.said = false
		}
	}
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	if t := s.conns[c]; t != nil {
		delete(s.conns, c)
		if sc := s.sources[t.src]; sc != nil {
			sc.total--
			if t.preAuth {
				sc.preAuth--
			}
			sc.said = false
			if sc.total <= 0 {
				delete(s.sources, t.src)
			}
		}
		s.fullSaid = false
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

// sourceOf returns the address a connection comes from and the source its
// failed logins and connections are counted under: an IPv4 address
// itself, an IPv6 address's /64. A host or LAN gets a whole /64 and picks
// addresses in it at will, so counting IPv6 addresses one by one would let
// one machine rotate through as many as it likes.
func sourceOf(a net.Addr) (ip, src string) {
	var addr netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		addr = ap.Addr()
	} else {
		return a.String(), a.String()
	}
	addr = addr.Unmap()
	ip = addr.WithZone("").String()
	if addr.Is4() {
		return ip, ip
	}
	p, err := addr.Prefix(64)
	if err != nil {
		return ip, ip
	}
	return ip, p.String()
}

// connState is what one connection's login did.
type connState struct {
	ip             string
	src            string // see sourceOf
	passwordFailed bool
	keyRejected    string // fingerprint of the last rejected key
	badUser        string
	blocked        bool // a password was refused: the source is blocked
	budgetRefused  bool // a password was refused: no budget left
	noPassword     bool // a password was offered, but none is set
	timedOut       bool // closed at preAuthTimeout
}

// errTimedOut is the login error of a connection closed at preAuthTimeout.
var errTimedOut = errors.New("no login before the deadline")

func (s *Server) serverConfig(st *connState) *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		ServerVersion: ServerVersion,
		MaxAuthTries:  6,
		// Keys are checked whatever the limits say: neither the source's
		// block nor the password budget applies to them (limiter).
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
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
	// Always offered: a one-time password may be made while the endpoint
	// runs (the status page), and checkPassword says why when there is
	// no password to check.
	cfg.PasswordCallback = func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		return s.checkPassword(st, meta.User(), pw)
	}
	for _, k := range s.hostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

// checkPassword is the password login: the source's block first, then the
// budget of failed passwords of all sources together, and only then the
// password itself. Refusals before the check tell the client why in an
// SSH banner (OpenSSH prints it above its next password prompt).
func (s *Server) checkPassword(st *connState, user string, pw []byte) (*ssh.Permissions, error) {
	if user != User {
		// Only root exists; refusing any other name reveals nothing about
		// the password, so it costs no budget. Counted in loginFailed.
		st.badUser = user
		return nil, errors.New("unknown user")
	}
	now := s.now()
	r := s.gate.Check(st.src, pw)
	switch r.Verdict {
	case VerdictNoPassword:
		// Nothing to check, so nothing to guess: no budget is spent.
		st.noPassword = true
		return nil, &ssh.BannerError{Err: errors.New("no password set"), Message: "qnetd pairing: password logins are off: no pairing password is set and no one-time pairing password is valid. " +
			"Make a one-time password on the add-on's status page (pairing card), or put this node's public key in the add-on's authorized_keys option.\n"}
	case VerdictBlocked:
		st.blocked = true
		wait := r.Until.Sub(now).Round(time.Second)
		if r.First {
			s.logEvent(s.log.Warn(), st).Time("until", r.Until).
				Dur("wait", wait).Msg("pairing: password logins from this address refused after too many failed logins (keys still work)")
		}
		return nil, &ssh.BannerError{Err: errors.New("too many failed logins"), Message: fmt.Sprintf(
			"qnetd pairing: too many failed logins from your address: the password is not checked for another %s. Logins with a key still work.\n", wait)}
	case VerdictBusy:
		st.budgetRefused = true
		var ev *zerolog.Event
		if r.First {
			ev = s.logEvent(s.log.Warn(), st).Int("burst", passwordBurst).Dur("refill", passwordRefill)
		} else {
			ev = s.logEvent(s.log.Debug(), st)
		}
		ev.Int("ahead", r.Ahead).Msg("pairing: password refused unchecked: the limit of failed passwords from all addresses together is reached; " +
			"each source gets a turn as the limit allows; keys still work")
		msg := fmt.Sprintf("qnetd pairing: the password is not checked: too many failed passwords from all addresses together "+
			"(someone may be guessing). Your address is in line behind at most %d others; keep trying at least every %s to keep "+
			"your place; its turn comes in about %s. Logins with a key are not limited.\n", r.Ahead, waitForget, r.Wait.Round(time.Second))
		if !r.InLine {
			msg = fmt.Sprintf("qnetd pairing: the password is not checked: too many failed passwords from all addresses together "+
				"(someone may be guessing) and %d addresses waiting; try again later. Logins with a key are not limited.\n", r.Ahead)
		}
		return nil, &ssh.BannerError{Err: errors.New("password budget spent"), Message: msg}
	}
	if r.Refused > 0 {
		s.log.Info().Int("refused", r.Refused).Time("since", r.RefusedSince).
			Msg("pairing: checking passwords again")
	}
	switch r.Verdict {
	case VerdictPassword:
		return &ssh.Permissions{Extensions: map[string]string{"auth": "password"}}, nil
	case VerdictOneTime:
		return &ssh.Permissions{Extensions: map[string]string{"auth": "password", "one_time": r.Ticket}}, nil
	}
	st.passwordFailed = true
	ev := s.logEvent(s.log.Warn(), st).Int("failures", r.Failures)
	if r.Block > 0 {
		ev = ev.Dur("blocked_for", r.Block)
	}
	ev.Msg("pairing: wrong password")
	return nil, errors.New("wrong password")
}

// logEvent adds the connection's address, and its source when that is
// wider (an IPv6 /64).
func (s *Server) logEvent(ev *zerolog.Event, st *connState) *zerolog.Event {
	ev = ev.Str("addr", st.ip)
	if st.src != st.ip {
		ev = ev.Str("source", st.src)
	}
	return ev
}

func (s *Server) handleConn(c net.Conn, ip, src string) {
	st := &connState{ip: ip, src: src}
	// Key exchange and login must end within preAuthTimeout (the real
	// clock, not cfg.Now). After the key exchange the client is told why
	// in a banner; before it, there is no way to say it.
	var preAuth atomic.Pointer[ssh.ServerPreAuthConn]
	deadline := time.AfterFunc(s.preAuthTimeout, func() {
		if p := preAuth.Load(); p != nil {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_ = (*p).SendAuthBanner(fmt.Sprintf("qnetd pairing: no login within %s; the connection is closed.\n", s.preAuthTimeout))
		}
		c.Close()
	})
	cfg := s.serverConfig(st)
	cfg.PreAuthConnCallback = func(p ssh.ServerPreAuthConn) { preAuth.Store(&p) }
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if !deadline.Stop() {
		// The deadline fired, perhaps just as the login succeeded: the
		// connection is closed either way.
		st.timedOut = true
		if err == nil {
			sc.Close()
			err = errTimedOut
		}
	}
	if err != nil {
		s.loginFailed(st, err)
		return
	}
	s.loggedIn(c)
	s.limiter.success(st.src)
	perms := sc.Permissions.Extensions
	sess := &session{s: s, ip: st.ip, passwordOnly: perms["auth"] == "password", oneTime: perms["one_time"]}
	if !sess.passwordOnly {
		sess.identity = keyIdentity(perms["type"], perms["key"], perms["comment"])
	}
	if sess.oneTime != "" {
		s.log.Info().Str("addr", st.ip).Msg("pairing: logged in with the one-time pairing password (may only install a key)")
	} else if sess.passwordOnly {
		s.log.Info().Str("addr", st.ip).Msg("pairing: logged in with the password (may only install a key)")
	} else {
		// The key's comment is the client's text: a field, not the message.
		s.log.Info().Str("addr", st.ip).Str("key", perms["key"]).Str("comment", perms["comment"]).
			Msg("pairing: logged in with key")
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
				Msg("pairing: refused a channel (no forwarding)")
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
// failure when it offered a credential (wrong passwords count each) or
// stalled until the deadline.
func (s *Server) loginFailed(st *connState, err error) {
	if st.timedOut {
		// A stalled connection held one of its source's few pre-login
		// slots for the whole deadline: it counts against the source.
		n, _ := s.limiter.fail(st.src)
		s.logEvent(s.log.Warn(), st).Dur("timeout", s.preAuthTimeout).Int("failures", n).
			Msg("pairing: connection closed: no login within the timeout")
		return
	}
	var ae *ssh.ServerAuthError
	if !errors.As(err, &ae) {
		s.logEvent(s.log.Debug(), st).Err(err).Msg("pairing: SSH handshake failed")
		return
	}
	switch {
	case st.passwordFailed, st.blocked, st.budgetRefused:
		// logged per password
	case st.noPassword:
		// Nothing secret was checked: no failure is counted.
		ev := s.logEvent(s.log.Warn(), st)
		if st.keyRejected != "" {
			ev = ev.Str("key", st.keyRejected)
		}
		ev.Msg("pairing: login refused: a password was offered, but no pairing password is set and no one-time password is valid; make one on the status page's pairing card")
	case st.badUser != "":
		n, _ := s.limiter.fail(st.src)
		s.logEvent(s.log.Warn(), st).Str("user", st.badUser).Int("failures", n).
			Msg("pairing: login refused: only root can log in")
	case st.keyRejected != "":
		n, _ := s.limiter.fail(st.src)
		s.logEvent(s.log.Warn(), st).Str("key", st.keyRejected).Int("failures", n).
			Msg("pairing: key not authorised; ssh-copy-id installs it with the password")
	default:
		s.logEvent(s.log.Debug(), st).Msg("pairing: connection closed before login")
	}
}

func (s *Server) globalRequests(ip string, reqs <-chan *ssh.Request) {
	for r := range reqs {
		switch r.Type {
		case "tcpip-forward", "streamlocal-forward@openssh.com", "cancel-tcpip-forward", "cancel-streamlocal-forward@openssh.com":
			s.log.Warn().Str("addr", ip).Str("request", r.Type).Msg("pairing: refused port forwarding request")
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
