package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/qnetd-addon/qnetd/internal/pcsd"
	"github.com/qnetd-addon/qnetd/internal/status"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestPcsdSharesThePairingPassword: with both endpoints on, the one-time
// password made on the status page gets pcs a token once, and is then
// used up for SSH too (one Gate); the endpoint answers over TLS with our
// CA's server certificate, also when qnetd itself runs without TLS.
func TestPcsdSharesThePairingPassword(t *testing.T) {
	cfg := testConfig(t)
	cfg.Server.Engine.TLS = wire.TLSUnsupported
	cfg.Pcsd = &PcsdConfig{Listener: listen(t), Endpoint: pcsd.Config{DataDir: cfg.Pairing.Endpoint.DataDir}}
	d, err := Start(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Wait(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	r, err := http.Post("http://"+d.WebAddr().String()+"/api/pairing/one-time-password", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	var v status.View
	require.NoError(t, json.NewDecoder(r.Body).Decode(&v))
	r.Body.Close()
	require.NotNil(t, v.Pairing.OneTime)
	pw := v.Pairing.OneTime.Password
	require.NotEmpty(t, pw)

	var state tls.ConnectionState
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error { state = cs; return nil }}}}
	auth := func() string {
		resp, err := hc.PostForm("https://"+d.PcsdAddr().String()+"/remote/auth", url.Values{"username": {"hacluster"}, "password": {pw}})
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	require.Len(t, auth(), 36)
	require.Equal(t, "Qnetd Server", state.PeerCertificates[0].Subject.CommonName)
	require.Equal(t, "", auth(), "used up")
	cc := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	_, err = ssh.Dial("tcp", d.PairingAddr().String(), cc)
	require.Error(t, err, "used up for SSH as well")
}

// TestPcsOnlyStatusPage: with the SSH endpoint off, the status page's pcs
// card has the commands (the port in addr= when it is not 2224), the
// one-time password (its button makes one, pcs host auth uses it up) and
// the tokens with the cluster names they own; its Revoke refuses the token
// from then on (pcs gets 401) and an unknown id is 404.
func TestPcsOnlyStatusPage(t *testing.T) {
	cfg := testConfig(t)
	dir := cfg.Pairing.Endpoint.DataDir
	cfg.Pairing = nil
	cfg.Pcsd = &PcsdConfig{Listener: listen(t), PublicHost: "192.0.2.1", Endpoint: pcsd.Config{DataDir: dir}}
	d := serve(t, cfg)
	web := "http://" + d.WebAddr().String()
	post := func(path, body string) (int, status.View) {
		r, err := http.Post(web+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer r.Body.Close()
		var v status.View
		if r.StatusCode == 200 {
			require.NoError(t, json.NewDecoder(r.Body).Decode(&v))
		}
		return r.StatusCode, v
	}
	code, v := post("/api/pairing/one-time-password", "{}")
	require.Equal(t, 200, code)
	require.False(t, v.Pairing.Enabled)
	require.Equal(t, "valid", v.Pairing.OneTime.State)
	pw := v.Pairing.OneTime.Password
	pc := v.Pairing.Pcs
	require.NotNil(t, pc)
	port := d.PcsdAddr().(*net.TCPAddr).Port
	require.Equal(t, []string{
		fmt.Sprintf("pcs host auth 192.0.2.1 addr=192.0.2.1:%d -u hacluster", port),
		"pcs quorum device add model net host=192.0.2.1 algorithm=ffsplit",
	}, pc.Commands)
	require.Empty(t, pc.Tokens)

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	pcsURL := "https://" + d.PcsdAddr().String() + "/remote/"
	resp, err := hc.PostForm(pcsURL+"auth", url.Values{"username": {"hacluster"}, "password": {pw}})
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	token := string(b)
	require.Len(t, token, 36)
	caCert := func() int {
		req, err := http.NewRequest("GET", pcsURL+"qdevice_net_get_ca_certificate", nil)
		require.NoError(t, err)
		req.Header.Set("Cookie", "token="+token)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 200, caCert())

	// what the page shows at its next refresh
	pi := d.pairingInfo()
	require.Equal(t, "used", pi.OneTime.State)
	require.Empty(t, pi.OneTime.Password)
	require.Len(t, pi.Pcs.Tokens, 1)
	tok := pi.Pcs.Tokens[0]
	require.True(t, tok.OneTime)
	require.Equal(t, "127.0.0.1", tok.Addr)
	require.Equal(t, "pcs token "+tok.ID, pi.OneTime.UsedBy)

	code, _ = post("/api/pcs/revoke-token", `{"id":"000000000000"}`)
	require.Equal(t, 404, code)
	code, _ = post("/api/pcs/revoke-token", `{"id":`)
	require.Equal(t, 400, code)
	code, v = post("/api/pcs/revoke-token", `{"id":"`+tok.ID+`"}`)
	require.Equal(t, 200, code)
	require.Empty(t, v.Pairing.Pcs.Tokens)
	require.Equal(t, 401, caCert())
}
