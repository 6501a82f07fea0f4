package pcsd

import (
	"bufio"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/pki"
)

// TestAuth: hacluster with the pairing password gets a token; a wrong user
// or password gets 200 with an empty body, which pcs reads as "Username
// and/or password is incorrect". Tokens are stored hashed, 0600, and
// survive a restart.
func TestAuth(t *testing.T) {
	ts := startServer(t, testPassword, nil)
	require.Equal(t, answer{200, ""}, ts.auth("root", testPassword))
	require.Equal(t, answer{200, ""}, ts.auth(User, "wrong-password"))
	tok := ts.token()
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, tok)
	require.NotEqual(t, tok, ts.token(), "every auth makes a new token")
	// GET, as pcsd also accepts.
	a := ts.do("GET", "/remote/auth?username=hacluster&password="+testPassword, "", nil)
	require.Equal(t, 200, a.code)
	require.Len(t, a.body, 36)

	path := filepath.Join(ts.dataDir, "pcsd", TokensFile)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(data), tok, "only the hash is stored")

	logs := ts.log.String()
	require.Contains(t, logs, `"message":"pcsd: auth refused: only hacluster can log in"`)
	require.Contains(t, logs, `"message":"pcsd: auth refused: wrong password"`)
	require.Contains(t, logs, `"addr":"127.0.0.1"`)
	require.NotContains(t, logs, testPassword)

	// A restart keeps the tokens.
	ts2 := startServerWith(t, ts.dataDir, ts.a, testPassword, nil, nil)
	require.Equal(t, 200, ts2.do("GET", "/remote/check_auth", tok, nil).code)
}

// TestAuthOneTime: the one-time pairing password gets one token and is
// used up by it, as by the first SSH key; the pairing password stays off.
func TestAuthOneTime(t *testing.T) {
	ts := startServer(t, "", nil)
	require.Equal(t, answer{200, ""}, ts.auth(User, "anything"), "no password set, none valid")
	require.Contains(t, ts.log.String(), "no pairing password is set and no one-time pairing password is valid")
	v, err := ts.gate.OneTime().Renew(time.Now())
	require.NoError(t, err)
	a := ts.auth(User, v.Password)
	require.Equal(t, 200, a.code)
	require.Len(t, a.body, 36)
	view := ts.gate.OneTime().View(time.Now())
	require.Equal(t, pairing.OneTimeUsed, view.State)
	require.True(t, strings.HasPrefix(view.UsedBy, "pcs token "), view.UsedBy)
	require.Equal(t, answer{200, ""}, ts.auth(User, v.Password), "used up")
	require.Equal(t, 200, ts.do("GET", "/remote/check_auth", a.body, nil).code)
}

// TestAuthLimits: the failed-password limits of the SSH endpoint apply:
// failures counted by the shared Gate (as the SSH side counts them) block
// /remote/auth from that source, unchecked, with 429.
func TestAuthLimits(t *testing.T) {
	ts := startServer(t, testPassword, nil)
	for range 4 {
		require.Equal(t, answer{200, ""}, ts.auth(User, "wrong-password"))
	}
	// The fifth failure, as the SSH endpoint would count it.
	r := ts.gate.Check("127.0.0.1", []byte("wrong-over-ssh"))
	require.Equal(t, pairing.VerdictWrong, r.Verdict)
	require.Greater(t, r.Block, time.Duration(0))
	a := ts.auth(User, testPassword)
	require.Equal(t, 429, a.code, "blocked: even the right password is not checked")
	require.Contains(t, a.body, "too many failed logins from your address")
	require.Contains(t, ts.log.String(), "pcsd: auth refused unchecked: too many failed logins from this address")
}

// TestAuthBudget: the budget of failed passwords of all sources together
// covers /remote/auth: once spent (here by SSH-side guesses from other
// addresses), a password is refused unchecked.
func TestAuthBudget(t *testing.T) {
	ts := startServer(t, testPassword, nil)
	for i := range 10 {
		r := ts.gate.Check(fmt.Sprintf("192.0.2.%d", i+1), []byte("guess"))
		require.Equal(t, pairing.VerdictWrong, r.Verdict)
	}
	a := ts.auth(User, testPassword)
	require.Equal(t, 429, a.code)
	require.Contains(t, a.body, "from all addresses together")
	require.Contains(t, ts.log.String(), "pcsd: auth refused unchecked: the limit of failed passwords from all addresses together is reached")
}

// TestCertificates: the two calls of `pcs quorum device add` with a token:
// the CA file in base64 and a cluster certificate that verifies against
// our CA.
func TestCertificates(t *testing.T) {
	ts := startServer(t, testPassword, nil)
	tok := ts.token()

	a := ts.do("GET", "/remote/qdevice_net_get_ca_certificate", tok, nil)
	require.Equal(t, 200, a.code)
	ca, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(a.body, "\n", ""))
	require.NoError(t, err)
	file, err := os.ReadFile(filepath.Join(ts.a.Dir, pki.CAFile))
	require.NoError(t, err)
	require.Equal(t, file, ca, "the file's content, as pcsd sends it")
	for _, line := range strings.Split(strings.TrimSuffix(a.body, "\n"), "\n") {
		require.LessOrEqual(t, len(line), 60)
	}

	a = ts.sign(tok, "prod", makeCSR(t, "prod"))
	require.Equal(t, 200, a.code, a.body)
	require.True(t, strings.HasSuffix(a.body, "\n"))
	der, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(a.body, "\n"))
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	blk, _ := pem.Decode(ca)
	caCert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	require.Equal(t, "prod", cert.Subject.CommonName)
	stored, err := os.ReadFile(filepath.Join(ts.a.Dir, pki.ClientCertFile("prod")))
	require.NoError(t, err)
	require.Equal(t, der, stored)

	owners, err := pki.Owners(ts.a.Dir)
	require.NoError(t, err)
	require.Len(t, owners, 1)
	require.True(t, strings.HasPrefix(owners[0].ID, "pcs-token "))
	require.NotContains(t, owners[0].ID, tok)

	// The same token may sign its cluster again (pcs quorum device add
	// after a remove).
	require.Equal(t, 200, ts.sign(tok, "prod", makeCSR(t, "prod")).code)
	// A PEM request, as corosync-qdevice-net-certutil can write it.
	pemCSR := pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: makeCSR(t, "prod")})
	require.Equal(t, 200, ts.sign(tok, "prod", pemCSR).code)
}

// TestOwnership: a token cannot have a cluster name signed that another
// identity (another token, an SSH key) owns; pcs shows the 400's text.
func TestOwnership(t *testing.T) {
	ts := startServer(t, testPassword, nil)
	tok1, tok2 := ts.token(), ts.token()
	require.Equal(t, 200, ts.sign(tok1, "prod", makeCSR(t, "prod")).code)
	a := ts.sign(tok2, "PROD", makeCSR(t, "PROD"))
	require.Equal(t, 400, a.code)
	require.Contains(t, a.body, "belongs to another pairing key")
	require.Contains(t, ts.log.String(), "pcsd: refused to sign a cluster name that another pairing identity owns")

	// A name an SSH key owns.
	csr, err := pki.ParseCSR(makeCSR(t, "pve"))
	require.NoError(t, err)
	_, err = ts.a.SignFor(csr, "pve", pki.Identity{ID: "ssh-key SHA256:x", Label: "ED25519 SHA256:x"}, time.Now())
	require.NoError(t, err)
	a = ts.sign(tok1, "pve", makeCSR(t, "pve"))
	require.Equal(t, 400, a.code)
	require.Contains(t, a.body, "belongs to another pairing key")
}

// TestRefusals: without a valid token 401 with pcsd's body; bad input 400
// with a text and no certificate; unknown commands 404 as pcsd answers.
func TestRefusals(t *testing.T) {
	ts := startServer(t, testPassword, nil)
	tok := ts.token()
	noauth := answer{401, `{"notauthorized":"true"}`}
	require.Equal(t, noauth, ts.do("GET", "/remote/qdevice_net_get_ca_certificate", "", nil))
	require.Equal(t, noauth, ts.do("GET", "/remote/qdevice_net_get_ca_certificate", "00000000-0000-4000-8000-000000000000", nil))
	require.Equal(t, noauth, ts.do("GET", "/remote/qdevice_net_get_ca_certificate", strings.Repeat("a", 300), nil))
	require.Equal(t, noauth, ts.sign("", "prod", makeCSR(t, "prod")))
	require.Equal(t, noauth, ts.do("GET", "/remote/cluster_destroy", "", nil), "pcsd checks the token first")
	require.Contains(t, ts.log.String(), `"message":"pcsd: request refused: no valid token (401)"`)

	require.Equal(t, answer{404, "Unknown Request"}, ts.do("POST", "/remote/cluster_destroy", tok, url.Values{}))
	require.Equal(t, answer{404, "Unknown Request"}, ts.do("GET", "/remote/qdevice_net_client_init_certificate_storage", tok, nil))
	require.Equal(t, 404, ts.do("GET", "/", "", nil).code)
	require.Equal(t, 404, ts.do("GET", "/remote/", tok, nil).code)
	require.Equal(t, 404, ts.do("GET", "/remote/a/b", tok, nil).code)
	require.Equal(t, 405, ts.do("PUT", "/remote/auth", "", nil).code)
	require.Equal(t, answer{200, `{"success":true}`}, ts.do("GET", "/remote/check_auth", tok, nil))

	for name, c := range map[string]struct {
		form url.Values
		want string
	}{
		"no cluster":       {url.Values{"certificate_request": {"AAAA"}}, "missing cluster_name"},
		"bad cluster":      {url.Values{"certificate_request": {"AAAA"}, "cluster_name": {"a/b"}}, ""},
		"wildcard":         {url.Values{"certificate_request": {"AAAA"}, "cluster_name": {"*"}}, ""},
		"server name":      {url.Values{"certificate_request": {"AAAA"}, "cluster_name": {pki.ServerCommonName}}, ""},
		"no request":       {url.Values{"cluster_name": {"prod"}}, "missing certificate_request"},
		"not base64":       {url.Values{"certificate_request": {"!!!"}, "cluster_name": {"prod"}}, "not base64"},
		"garbage":          {url.Values{"certificate_request": {base64.StdEncoding.EncodeToString([]byte("garbage"))}, "cluster_name": {"prod"}}, "not a PKCS#10"},
		"other CN":         {url.Values{"certificate_request": {base64.StdEncoding.EncodeToString(makeCSR(t, "other"))}, "cluster_name": {"prod"}}, `is for "other"`},
		"duplicate fields": {url.Values{"certificate_request": {"A", "B"}, "cluster_name": {"prod"}}, "more than once"},
	} {
		a := ts.do("POST", "/remote/qdevice_net_sign_node_certificate", tok, c.form)
		require.Equal(t, 400, a.code, name)
		require.Contains(t, a.body, c.want, name)
	}
	_, err := os.Stat(filepath.Join(ts.a.Dir, pki.ClientCertFile("prod")))
	require.ErrorIs(t, err, os.ErrNotExist, "no certificate from bad input")
	require.Contains(t, ts.log.String(), `"reason":"bad certificate request"`)
}

// TestBounds: body, header, field count, token store and connection
// bounds, the handshake timeout, and no answer without TLS.
func TestBounds(t *testing.T) {
	ts := startServer(t, testPassword, func(s *Server) { s.http.ReadHeaderTimeout = 300 * time.Millisecond })
	tok := ts.token()

	big := url.Values{"certificate_request": {strings.Repeat("A", maxBody)}, "cluster_name": {"prod"}}
	require.Equal(t, 413, ts.do("POST", "/remote/qdevice_net_sign_node_certificate", tok, big).code)
	require.Contains(t, ts.log.String(), "pcsd: request refused: body too large (413)")

	// The longest base64 a request may have is decoded; one more byte is
	// refused before decoding.
	long := url.Values{"certificate_request": {strings.Repeat("A", maxCSRBase64+1)}, "cluster_name": {"prod"}}
	a := ts.do("POST", "/remote/qdevice_net_sign_node_certificate", tok, long)
	require.Equal(t, 400, a.code)
	require.Contains(t, a.body, "more than")

	many := url.Values{"username": {User}, "password": {testPassword}}
	for i := 2; i < maxFields; i++ {
		many.Set(fmt.Sprintf("f%d", i), "x")
	}
	a = ts.do("POST", "/remote/auth", "", many)
	require.Equal(t, 200, a.code)
	require.Len(t, a.body, 36, "maxFields fields are read")
	many.Set("one-more", "x")
	a = ts.do("POST", "/remote/auth", "", many)
	require.Equal(t, 400, a.code)
	require.Contains(t, a.body, "form fields")

	req, err := http.NewRequest("GET", "https://"+ts.addr+"/remote/check_auth", nil)
	require.NoError(t, err)
	req.Header.Set("Cookie", "token="+tok)
	req.Header.Set("X-Pad", strings.Repeat("x", maxHeaderBytes+4096))
	resp, err := ts.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 431, resp.StatusCode)

	// Token store: full, then auth answers as pcsd when it cannot store.
	for ts.s.tokens.count() < maxTokens {
		_, _, err := ts.s.tokens.add("192.0.2.1", false, time.Now())
		require.NoError(t, err)
	}
	require.Equal(t, answer{400, "Unable to store token"}, ts.auth(User, testPassword))

	// No answer without TLS: a plain HTTP request gets net/http's refusal.
	c, err := net.Dial("tcp", ts.addr)
	require.NoError(t, err)
	fmt.Fprintf(c, "POST /remote/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 38\r\n\r\nusername=hacluster&password=%s", testPassword)
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	require.Equal(t, 400, resp.StatusCode)
	require.Contains(t, string(body), "HTTPS")

	// Connections per source: maxConnsPerSource held open, the next one
	// is closed at once; a stalled handshake is closed at the timeout.
	var held []net.Conn
	for range maxConnsPerSource {
		c, err := net.Dial("tcp", ts.addr)
		require.NoError(t, err)
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", ts.addr)
	require.NoError(t, err)
	require.NoError(t, extra.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = extra.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "refused: closed at once")
	extra.Close()
	require.Contains(t, ts.log.String(), "pcsd: connection refused: too many connections from this address")
	start := time.Now()
	require.NoError(t, held[0].SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = held[0].Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "closed by the server at the handshake timeout")
	require.Less(t, time.Since(start), 4*time.Second)
	for _, c := range held {
		c.Close()
	}
}

// TestConnLimitTotal: the bound on all connections together.
func TestConnLimitTotal(t *testing.T) {
	ts := startServer(t, testPassword, nil)
	ll := newLimitListener(nil, ts.s.log, 2, 2)
	require.True(t, ll.take("192.0.2.1", "192.0.2.1"))
	require.True(t, ll.take("192.0.2.2", "192.0.2.2"))
	require.False(t, ll.take("192.0.2.3", "192.0.2.3"))
	ll.release("192.0.2.1")
	require.True(t, ll.take("192.0.2.3", "192.0.2.3"))
	require.False(t, ll.take("192.0.2.2", "192.0.2.2"))
}
