package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
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
