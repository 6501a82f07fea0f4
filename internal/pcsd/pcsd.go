// Package pcsd is the pcsd-compatible endpoint that answers RHEL's `pcs
// host auth` and `pcs quorum device add model net host=...` unchanged. pcs
// has no SSH step: it talks HTTPS to pcsd on TCP 2224 of the qnetd host
// (certificate checks off) and sends, in order:
//
//   - POST /remote/auth, form username and password: 200 with a token in
//     the body authorises, 200 with an empty body is "Username and/or
//     password is incorrect";
//   - with the cookie token=TOKEN: GET /remote/qdevice_net_get_ca_certificate
//     (200, the CA certificate file in base64) and POST
//     /remote/qdevice_net_sign_node_certificate, form certificate_request
//     (base64 of a PKCS#10 request) and cluster_name (200, base64 of the
//     DER certificate and a newline).
//
// pcs reads an error by its status: 400 shows the body's text, 401 asks for
// `pcs host auth`, 403 is "Permission denied", 404 an unsupported command.
//
// The user is hacluster; its password is the pairing password or the
// one-time pairing password, checked by the Gate the SSH pairing endpoint
// uses (internal/pairing), so one budget of failed passwords covers both. A
// token is a pairing identity like an SSH key: the cluster names it had
// signed are its own (pki.SignFor). Tokens live in DataDir/pcsd/tokens.json
// (SHA-256 only, mode 0600). Every answer is over TLS, with the server
// certificate of our CA.
package pcsd

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/pki"
)

// DefaultPort is pcsd's port; pcs connects to it unless `pcs host auth`
// names another (addr=IP:PORT).
const DefaultPort = 2224

// User is the only user: pcs authenticates as hacluster.
const User = "hacluster"

// Bounds. pcs sends one request per connection, at most a few at once.
const (
	maxConns          = 32
	maxConnsPerSource = 8
	// maxHeaderBytes bounds the request line and headers (net/http adds
	// 4 KiB of slack).
	maxHeaderBytes = 8 << 10
	// maxTokenLen: pcs refuses longer tokens itself.
	maxTokenLen = 256
	// maxCAFile bounds the CA certificate file served.
	maxCAFile = 1 << 20
	// readHeaderTimeout bounds the TLS handshake and the headers,
	// requestTimeout a whole request; pcs waits 60 s for an answer.
	readHeaderTimeout = 10 * time.Second
	requestTimeout    = 30 * time.Second
	idleTimeout       = 30 * time.Second
)

// Config configures the endpoint.
type Config struct {
	// DataDir holds the endpoint's state in DataDir/pcsd.
	DataDir string
	// Authority is our CA: its server certificate is the endpoint's, and
	// it signs the nodes' requests. Its Dir is served and written as
	// the certificate directory.
	Authority *pki.Authority
	// Gate checks passwords; without it one is made from DataDir and
	// Password (pairing.NewGate).
	Gate     *pairing.Gate
	Password string
	Log      zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is the pcsd endpoint.
type Server struct {
	cfg    Config
	log    zerolog.Logger
	now    func() time.Time
	gate   *pairing.Gate
	tokens *tokenStore
	signMu sync.Mutex
	http   *http.Server
}

// New opens the token store and makes the HTTPS server.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("pcsd: DataDir is not set")
	}
	if cfg.Authority == nil {
		return nil, errors.New("pcsd: no certificate authority")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Log, now: cfg.Now, gate: cfg.Gate}
	if s.gate == nil {
		g, err := pairing.NewGate(cfg.DataDir, cfg.Password, cfg.Now)
		if err != nil {
			return nil, fmt.Errorf("pcsd: %w", err)
		}
		s.gate = g
	}
	dir := filepath.Join(cfg.DataDir, "pcsd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pcsd: create %s: %w", dir, err)
	}
	ts, err := loadTokens(filepath.Join(dir, TokensFile))
	if err != nil {
		return nil, fmt.Errorf("pcsd: %w", err)
	}
	s.tokens = ts
	tc := cfg.Authority.TLSConfig(false)
	// HTTP/1.1 only, as pcsd: nothing here needs more.
	tc.NextProtos = []string{"http/1.1"}
	s.http = &http.Server{
		Handler:           s,
		TLSConfig:         tc,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       requestTimeout,
		WriteTimeout:      requestTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(errorLog{s.log}, "", 0),
	}
	return s, nil
}

// errorLog puts net/http's own messages (failed TLS handshakes and the
// like: the client's doing) in a field of a constant debug line.
type errorLog struct{ log zerolog.Logger }

func (e errorLog) Write(p []byte) (int, error) {
	e.log.Debug().Str("error", strings.TrimSpace(string(p))).Msg("pcsd: HTTP server error")
	return len(p), nil
}

// Serve accepts TLS connections on l until Close.
func (s *Server) Serve(l net.Listener) error {
	s.log.Info().Str("addr", l.Addr().String()).Int("tokens", s.tokens.count()).
		Msg("pcsd: endpoint for `pcs host auth` and `pcs quorum device add` listening (HTTPS)")
	ll := newLimitListener(l, s.log, maxConns, maxConnsPerSource)
	err := s.http.Serve(tls.NewListener(ll, s.http.TLSConfig))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and closes every connection.
func (s *Server) Close() error { return s.http.Close() }

// request is one request's context for the handlers and the log.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	ip   string
	src  string
	cmd  string
	form url.Values
}

func (q *request) field(name string) string {
	if v := q.form[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (q *request) reply(code int, body string) {
	q.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	q.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	q.w.WriteHeader(code)
	_, _ = io.WriteString(q.w, body)
}

// ServeHTTP answers /remote/COMMAND as pcsd does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &request{w: w, r: r}
	q.ip, q.src = r.RemoteAddr, r.RemoteAddr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		q.ip, q.src = pairing.SourceOf(net.TCPAddrFromAddrPort(ap))
	}
	cmd, ok := strings.CutPrefix(r.URL.Path, "/remote/")
	if !ok || cmd == "" || strings.Contains(cmd, "/") {
		s.log.Debug().Str("addr", q.ip).Str("path", clip(r.URL.Path)).Msg("pcsd: not found")
		q.reply(http.StatusNotFound, "404: Not Found")
		return
	}
	q.cmd = cmd
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		s.log.Debug().Str("addr", q.ip).Str("method", clip(r.Method)).Msg("pcsd: method not allowed")
		w.Header().Set("Allow", "GET, POST")
		q.reply(http.StatusMethodNotAllowed, "405: Method Not Allowed")
		return
	}
	if cmd == "auth" {
		if !s.readForm(q) {
			return
		}
		s.auth(q)
		return
	}
	// Every other command needs a token, checked before the body is read:
	// without one, nothing more of the request is looked at.
	rec, ok := s.tokenOf(r)
	if !ok {
		s.log.Warn().Str("addr", q.ip).Str("command", clip(cmd)).Msg("pcsd: request refused: no valid token (401)")
		q.reply(http.StatusUnauthorized, `{"notauthorized":"true"}`)
		return
	}
	if !s.readForm(q) {
		return
	}
	switch cmd {
	case "check_auth":
		q.reply(http.StatusOK, `{"success":true}`)
	case "qdevice_net_get_ca_certificate":
		s.caCertificate(q, rec)
	case "qdevice_net_sign_node_certificate":
		s.sign(q, rec)
	default:
		s.log.Warn().Str("addr", q.ip).Str("token", rec.ID).Str("command", clip(cmd)).
			Msg("pcsd: unknown command refused (404)")
		q.reply(http.StatusNotFound, "Unknown Request")
	}
}

// readForm reads the query and, for POST, the body (bounded) into q.form;
// on a bad form it answers 400 or 413 and returns false.
func (s *Server) readForm(q *request) bool {
	query, err := decodeForm(q.r.URL.RawQuery)
	if err != nil {
		s.badRequest(q, "bad query", err)
		return false
	}
	body := url.Values{}
	if q.r.Method == http.MethodPost {
		data, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, maxBody))
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.log.Warn().Str("addr", q.ip).Str("command", clip(q.cmd)).Int64("max_bytes", mbe.Limit).
				Msg("pcsd: request refused: body too large (413)")
			q.reply(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxBody))
			return false
		}
		if err != nil {
			s.log.Debug().Str("addr", q.ip).Err(err).Msg("pcsd: cannot read request body")
			q.reply(http.StatusBadRequest, "cannot read the request body")
			return false
		}
		if body, err = decodeForm(string(data)); err != nil {
			s.badRequest(q, "bad form", err)
			return false
		}
	}
	if q.form, err = mergeForms(query, body); err != nil {
		s.badRequest(q, "bad form", err)
		return false
	}
	return true
}

// badRequest logs the refusal (why: a constant) with the error and
// answers 400 with the error's text, which pcs shows.
func (s *Server) badRequest(q *request, why string, err error) {
	s.logReq(s.log.Warn(), q).Str("command", clip(q.cmd)).Str("reason", why).Str("error", clip(err.Error())).
		Msg("pcsd: request refused (400)")
	q.reply(http.StatusBadRequest, err.Error())
}

// tokenOf finds the token in the request's cookie.
func (s *Server) tokenOf(r *http.Request) (tokenRecord, bool) {
	c, err := r.Cookie("token")
	if err != nil {
		return tokenRecord{}, false
	}
	return s.tokens.lookup(c.Value)
}

// auth is /remote/auth: a token for hacluster with the right password, an
// empty 200 otherwise (what pcs reads as a wrong user or password).
func (s *Server) auth(q *request) {
	user, pw := q.field("username"), q.field("password")
	if user != User {
		s.refuseUser(q, user)
		return
	}
	res := s.gate.Check(q.src, []byte(pw))
	if s.refused(q, res) {
		return
	}
	if res.Refused > 0 {
		s.log.Info().Int("refused", res.Refused).Time("since", res.RefusedSince).Msg("pcsd: checking passwords again")
	}
	token, rec, ok, err := s.newToken(q, res)
	if !ok {
		return
	}
	if err != nil {
		s.logReq(s.log.Error(), q).Err(err).Msg("pcsd: auth: cannot store the token (400)")
		// pcsd's answer when it cannot store a token.
		q.reply(http.StatusBadRequest, "Unable to store token")
		return
	}
	s.gate.Success(q.src)
	ev := s.logReq(s.log.Info(), q).Str("token", rec.ID)
	if rec.OneTime {
		ev.Msg("pcsd: pcs host auth with the one-time pairing password: new token; the one-time password is used up")
	} else {
		ev.Msg("pcsd: pcs host auth with the pairing password: new token")
	}
	q.reply(http.StatusOK, token)
}

// refuseUser answers a login as another user than hacluster. No password
// is checked, so no budget is spent; the source's count goes up, as for
// an unknown SSH user.
func (s *Server) refuseUser(q *request, user string) {
	n, block := s.gate.Fail(q.src)
	ev := s.logReq(s.log.Warn(), q).Str("user", clip(user)).Int("failures", n)
	if block > 0 {
		ev = ev.Dur("blocked_for", block)
	}
	ev.Msg("pcsd: auth refused: only hacluster can log in")
	q.reply(http.StatusOK, "")
}

// refused answers a password check that did not let the login in (no
// password to check, the source blocked, all sources over budget, or the
// password wrong) and reports whether it did.
func (s *Server) refused(q *request, res pairing.CheckResult) bool {
	switch res.Verdict {
	case pairing.VerdictNoPassword:
		s.logReq(s.log.Warn(), q).
			Msg("pcsd: auth refused: no pairing password is set and no one-time pairing password is valid; set pairing_password or make a one-time password on the status page")
		q.reply(http.StatusOK, "")
	case pairing.VerdictBlocked:
		wait := res.Until.Sub(s.now()).Round(time.Second)
		if res.First {
			s.logReq(s.log.Warn(), q).Time("until", res.Until).Dur("wait", wait).
				Msg("pcsd: auth refused unchecked: too many failed logins from this address")
		}
		q.w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		q.reply(http.StatusTooManyRequests, fmt.Sprintf("too many failed logins from your address: the password is not checked for another %s", wait))
	case pairing.VerdictBusy:
		ev := s.logReq(s.log.Debug(), q)
		if res.First {
			ev = s.logReq(s.log.Warn(), q)
		}
		ev.Int("ahead", res.Ahead).Msg("pcsd: auth refused unchecked: the limit of failed passwords from all addresses together is reached")
		q.w.Header().Set("Retry-After", strconv.Itoa(int(res.Wait/time.Second)+1))
		q.reply(http.StatusTooManyRequests, fmt.Sprintf("too many failed passwords from all addresses together (someone may be guessing): "+
			"the password is not checked; try again in about %s", res.Wait.Round(time.Second)))
	case pairing.VerdictWrong:
		ev := s.logReq(s.log.Warn(), q).Int("failures", res.Failures)
		if res.Block > 0 {
			ev = ev.Dur("blocked_for", res.Block)
		}
		ev.Msg("pcsd: auth refused: wrong password")
		q.reply(http.StatusOK, "")
	default:
		return false
	}
	return true
}

// newToken makes the token of a successful login; with the one-time
// password it is used up in the same step. ok is false when the request
// was answered already (the one-time password went meanwhile).
func (s *Server) newToken(q *request, res pairing.CheckResult) (token string, rec tokenRecord, ok bool, err error) {
	if res.Verdict != pairing.VerdictOneTime {
		token, rec, err = s.tokens.add(q.ip, false, s.now())
		return token, rec, true, err
	}
	err = s.gate.UseOneTime(res.Ticket, func() (string, error) {
		var aerr error
		if token, rec, aerr = s.tokens.add(q.ip, true, s.now()); aerr != nil {
			return "", aerr
		}
		return "pcs token " + rec.ID, nil
	})
	switch {
	case err != nil && token == "" && (errors.Is(err, pairing.ErrOneTimeUsed) || errors.Is(err, pairing.ErrOneTimeExpired)):
		s.logReq(s.log.Warn(), q).Err(err).Msg("pcsd: auth refused: the one-time pairing password was used up or expired meanwhile")
		q.reply(http.StatusOK, "")
		return "", tokenRecord{}, false, nil
	case err != nil && token != "":
		s.logReq(s.log.Error(), q).Err(err).Msg("pcsd: one-time password state not saved")
		err = nil
	}
	return token, rec, true, err
}

// caCertificate is /remote/qdevice_net_get_ca_certificate: the CA file as
// pcsd sends it (Ruby's Base64.encode64 of the file).
func (s *Server) caCertificate(q *request, rec tokenRecord) {
	data, err := readBounded(filepath.Join(s.cfg.Authority.Dir, pki.CAFile), maxCAFile)
	if err != nil {
		s.logReq(s.log.Error(), q).Str("token", rec.ID).Err(err).Msg("pcsd: cannot read the CA certificate (400)")
		q.reply(http.StatusBadRequest, "Unable to read certificate: "+err.Error())
		return
	}
	s.logReq(s.log.Info(), q).Str("token", rec.ID).Msg("pcsd: sent the CA certificate")
	q.reply(http.StatusOK, encode64(data))
}

// sign is /remote/qdevice_net_sign_node_certificate: a cluster certificate
// for the token, which owns the name from now on (pki.SignFor). A refusal
// is a 400 with the reason, as pcsd answers when signing fails, so that pcs
// shows it (a 403 would show only "Permission denied").
func (s *Server) sign(q *request, rec tokenRecord) {
	cluster := q.field("cluster_name")
	if cluster == "" {
		s.badRequest(q, "no cluster name", errors.New("missing cluster_name"))
		return
	}
	if err := pki.ValidClusterName(cluster); err != nil {
		s.badRequest(q, "invalid cluster name", err)
		return
	}
	csr, err := decodeCSR(q.field("certificate_request"))
	if err != nil {
		s.badRequest(q, "bad certificate request", err)
		return
	}
	s.signMu.Lock()
	if !s.tokens.has(rec.ID) {
		// revoked since the request came in (Revoke)
		s.signMu.Unlock()
		s.log.Warn().Str("addr", q.ip).Str("token", rec.ID).Msg("pcsd: request refused: the token was revoked (401)")
		q.reply(http.StatusUnauthorized, `{"notauthorized":"true"}`)
		return
	}
	res, err := s.cfg.Authority.SignFor(csr, cluster, rec.identity(), s.now())
	s.signMu.Unlock()
	var owned *pki.OwnedError
	switch {
	case errors.As(err, &owned):
		s.logReq(s.log.Warn(), q).Str("token", rec.ID).Str("cluster", cluster).Str("owner", owned.Owner.Label).
			Time("owner_since", owned.Owner.Claimed).
			Msg("pcsd: refused to sign a cluster name that another pairing identity owns (400); if the request is legitimate, forget the cluster and have the node sign again")
		q.reply(http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.badRequest(q, "signing failed", err)
		return
	}
	der, err := readBounded(res.Path, maxCAFile)
	if err != nil {
		s.logReq(s.log.Error(), q).Str("cluster", cluster).Err(err).Msg("pcsd: cannot read the signed certificate (400)")
		q.reply(http.StatusBadRequest, "Unable to read certificate: "+err.Error())
		return
	}
	ev := s.logReq(s.log.Info(), q).Str("token", rec.ID).Str("cluster", cluster)
	switch res.Claim {
	case pki.ClaimNew:
		ev.Msg("pcsd: signed certificate for a new cluster; this pcs token owns the cluster name now")
	case pki.ClaimLegacy:
		ev.Msg("pcsd: signed certificate for a cluster signed before owners were recorded; this pcs token owns the cluster name now")
	default:
		ev.Msg("pcsd: signed certificate again for a cluster this pcs token owns")
	}
	q.reply(http.StatusOK, base64.StdEncoding.EncodeToString(der)+"\n")
}

func (s *Server) logReq(ev *zerolog.Event, q *request) *zerolog.Event {
	ev = ev.Str("addr", q.ip)
	if q.src != q.ip {
		ev = ev.Str("source", q.src)
	}
	return ev
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, io.LimitReader(f, limit+1)); err != nil {
		return nil, err
	}
	if int64(b.Len()) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b.Bytes(), nil
}

// clip bounds client text put in a log field.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
