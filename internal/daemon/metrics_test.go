package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/web"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func scrape(t *testing.T, url, token string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// TestMetricsPort: the metrics port serves /metrics alone, with the bearer
// token, and the series a dashboard needs: the cluster's state, votes per
// node, TLS and the certificates' ends.
func TestMetricsPort(t *testing.T) {
	cfg := testConfig(t)
	cfg.Server.Engine.TLS = wire.TLSUnsupported // plain clients: labels from any cluster
	const token = "0123456789abcdef-token"
	cfg.Metrics = &MetricsConfig{Listener: listen(t), Token: token}
	d := serve(t, cfg)
	base := "http://" + cfg.Metrics.Listener.Addr().String()

	n := client.NewNode(client.Settings{Cluster: "pve", NodeID: 1, Algorithm: wire.AlgoTest,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000})
	c, err := client.Dial(d.Addr().String(), n, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil))
	one := []wire.NodeInfo{{NodeID: 1}}
	_, err = c.Call(n.Config(one, true, nil))
	require.NoError(t, err)
	_, err = c.Call(n.Membership(wire.RingID{NodeID: 1, Seq: 4}, one, wire.HeuristicsUndefined))
	require.NoError(t, err)

	code, body, hdr := scrape(t, base+"/metrics", "")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, hdr.Get("WWW-Authenticate"), "Bearer")
	require.NotContains(t, body, "qnetd_")
	code, _, _ = scrape(t, base+"/metrics", "wrong-token-0123456789")
	require.Equal(t, http.StatusUnauthorized, code)
	for _, p := range []string{"/", "/health", "/api/status", "/metrics/../api/status", "/debug/pprof/"} {
		code, body, _ = scrape(t, base+p, token)
		require.Equal(t, http.StatusNotFound, code, "%s: %s", p, body)
	}
	resp, err := http.Post(base+"/metrics", "text/plain", strings.NewReader(""))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	code, body, _ = scrape(t, base+"/metrics", token)
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{`qnetd_cluster_state{cluster="pve",state="healthy"} 1`, `qnetd_cluster_state{cluster="pve",state="split"} 0`,
		`qnetd_cluster_has_vote{cluster="pve"} 1`, `qnetd_node_vote{cluster="pve",node_id="1"} 1`, `qnetd_tls_mode{mode="off"} 1`,
		`qnetd_tls_clients{tls="plain"} 1`} {
		require.Contains(t, body, want)
	}
}

// TestMetricsLabelsOnlyVerifiedClusters: with TLS on, a plaintext client's
// made-up cluster name never becomes a label value.
func TestMetricsLabelsOnlyVerifiedClusters(t *testing.T) {
	cfg := testConfig(t) // TLS on: plaintext clients may join
	cfg.Metrics = &MetricsConfig{Listener: listen(t)}
	d := serve(t, cfg)
	for i := 0; i < 3; i++ {
		n := client.NewNode(client.Settings{Cluster: fmt.Sprintf("made-up-%d", i), NodeID: 1, Algorithm: wire.AlgoTest,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000})
		c, err := client.Dial(d.Addr().String(), n, 5*time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil))
	}
	code, body, _ := scrape(t, "http://"+cfg.Metrics.Listener.Addr().String()+"/metrics", "")
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, body, "made-up")
	require.Contains(t, body, "qnetd_clusters_unlabelled 3")
	require.Contains(t, body, `qnetd_tls_clients{tls="plain"} 3`)
	// TLS on: the certificate authority is loaded, and its end shows.
	require.Regexp(t, `qnetd_certificate_expiry_seconds\{certificate="ca"\} [0-9.e+]+`, body)
	require.Regexp(t, `qnetd_certificate_expiry_seconds\{certificate="server"\} [0-9.e+]+`, body)
}

// TestMetricsPortBounds: connections beyond the cap wait; a taken port
// fails the start with the option named.
func TestMetricsPortBounds(t *testing.T) {
	ln := listen(t)
	lim := web.LimitListener(ln, 2)
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := lim.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		conns = append(conns, c)
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open")
	case <-time.After(200 * time.Millisecond): // proving a non-event needs a bound
	}
	first.Close()
	third := <-accepted
	third.Close()
	second.Close()
	require.NoError(t, lim.Close())

	taken := listen(t)
	cfg := testConfig(t)
	cfg.Metrics = &MetricsConfig{Port: taken.Addr().(*net.TCPAddr).Port}
	_, err := Start(cfg)
	require.ErrorContains(t, err, "option metrics_port")
}
