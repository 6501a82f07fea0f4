package pcsd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/pki"
)

const testPassword = "pairing-pw-1"

// syncBuf is a log sink safe for the server's goroutines.
type syncBuf struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuf() *syncBuf { b := &syncBuf{mu: make(chan struct{}, 1)}; return b }

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

type testServer struct {
	t       *testing.T
	s       *Server
	a       *pki.Authority
	gate    *pairing.Gate
	dataDir string
	addr    string
	log     *syncBuf
	client  *http.Client
}

// startServer runs an endpoint on a loopback port with a new CA. tune, if
// set, changes the server before it serves.
func startServer(t *testing.T, password string, tune func(*Server)) *testServer {
	t.Helper()
	dir := t.TempDir()
	a, err := pki.Init(dir+"/nssdb", time.Now())
	require.NoError(t, err)
	return startServerWith(t, dir, a, password, nil, tune)
}

func startServerWith(t *testing.T, dataDir string, a *pki.Authority, password string, gate *pairing.Gate, tune func(*Server)) *testServer {
	t.Helper()
	if gate == nil {
		var err error
		gate, err = pairing.NewGate(dataDir, password, time.Now)
		require.NoError(t, err)
	}
	logs := newSyncBuf()
	s, err := New(Config{DataDir: dataDir, Authority: a, Gate: gate, Log: zerolog.New(logs)})
	require.NoError(t, err)
	if tune != nil {
		tune(s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		require.NoError(t, <-done)
	})
	// pcs checks no certificate; this client checks ours against our CA.
	pool := x509.NewCertPool()
	pool.AddCert(a.CA)
	// The server certificate names "Qnetd Server" in its CN only, as
	// upstream's; the chain is checked, the name is not.
	verify := func(cs tls.ConnectionState) error {
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyConnection: verify}, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &testServer{t: t, s: s, a: a, gate: gate, dataDir: dataDir, addr: l.Addr().String(), log: logs,
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

type answer struct {
	code int
	body string
}

// do sends a request as pcs does: form data in the body, the token in a
// cookie next to CIB_user.
func (ts *testServer) do(method, path, token string, form url.Values) answer {
	ts.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "https://"+ts.addr+path, body)
	require.NoError(ts.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	cookie := "CIB_user=hacluster"
	if token != "" {
		cookie += ";token=" + token
	}
	req.Header.Set("Cookie", cookie)
	resp, err := ts.client.Do(req)
	require.NoError(ts.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(ts.t, err)
	return answer{resp.StatusCode, string(b)}
}

func (ts *testServer) auth(user, pw string) answer {
	return ts.do("POST", "/remote/auth", "", url.Values{"username": {user}, "password": {pw}})
}

func (ts *testServer) token() string {
	ts.t.Helper()
	a := ts.auth(User, testPassword)
	require.Equal(ts.t, 200, a.code)
	require.Len(ts.t, a.body, 36)
	return a.body
}

func (ts *testServer) sign(token, cluster string, csrDER []byte) answer {
	return ts.do("POST", "/remote/qdevice_net_sign_node_certificate", token,
		url.Values{"certificate_request": {base64.StdEncoding.EncodeToString(csrDER)}, "cluster_name": {cluster}})
}

func makeCSR(t testing.TB, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	require.NoError(t, err)
	return der
}
