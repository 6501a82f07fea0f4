package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func get(t *testing.T, h http.Handler, remote, path string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(body)
}

func TestHealthNamesTheFailingCheck(t *testing.T) {
	ok := func(context.Context) (*engine.Status, error) { return &engine.Status{}, nil }
	stuck := func(context.Context) (*engine.Status, error) { return nil, errors.New("timed out") }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name   string
		status func(context.Context) (*engine.Status, error)
		addr   string
		pki    bool
		loaded bool
		code   int
		failed string
	}{
		{"all good", ok, ln.Addr().String(), true, true, 200, ""},
		{"tls off needs no pki", ok, ln.Addr().String(), false, false, 200, ""},
		{"listener down", ok, closedAddr, true, true, 503, "listener"},
		{"engine stuck", stuck, ln.Addr().String(), true, true, 503, "engine"},
		{"pki missing", ok, ln.Addr().String(), true, false, 503, "pki"},
		// A wildcard listen address is reached over loopback; IPv4's
		// first, which a host without IPv6 (no ::1) has too.
		{"wildcard listener", ok, net.JoinHostPort("::", port(ln)), true, true, 200, ""},
		{"wildcard listener down", ok, net.JoinHostPort("::", port(closedAddr)), true, true, 503, "listener"},
		{"v4 wildcard listener", ok, net.JoinHostPort("0.0.0.0", port(ln)), true, true, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := New(Config{Status: tc.status, QnetdAddr: tc.addr, PKIRequired: tc.pki, Log: zerolog.Nop()})
			w.SetPKILoaded(tc.loaded)
			code, body := get(t, w, "127.0.0.1:5000", "/health")
			require.Equal(t, tc.code, code, body)
			var rep healthReport
			require.NoError(t, json.Unmarshal([]byte(body), &rep))
			require.Equal(t, tc.failed, rep.Failed)
		})
	}
}

// port is the port of a listener or of an address.
func port(a any) string {
	s, ok := a.(string)
	if !ok {
		s = a.(net.Listener).Addr().String()
	}
	_, p, _ := net.SplitHostPort(s)
	return p
}

func TestOnlyLoopbackAndIngressProxy(t *testing.T) {
	w := New(Config{Status: func(context.Context) (*engine.Status, error) { return &engine.Status{}, nil }, QnetdAddr: "127.0.0.1:1", Log: zerolog.Nop()})
	code, _ := get(t, w, "192.168.1.50:4000", "/metrics")
	require.Equal(t, http.StatusForbidden, code)
	code, _ = get(t, w, "172.30.32.2:4000", "/metrics")
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, w, "[::1]:4000", "/metrics")
	require.Equal(t, http.StatusOK, code)
}

// TestMetricsFromARealServer: a node joins and gets a vote; a bad message
// and a TLS handshake failure are counted.
func TestMetricsFromARealServer(t *testing.T) {
	var w *Web
	var srv *server.Server
	w = New(Config{Status: func(ctx context.Context) (*engine.Status, error) { return srv.Status(ctx) }, Log: zerolog.Nop()})
	cfg := server.DefaultConfig()
	cfg.Host, cfg.Port, cfg.Log, cfg.Hooks = "127.0.0.1", 0, zerolog.Nop(), w.Metrics().Hooks()
	cfg.Engine.TLS = wire.TLSUnsupported
	srv = server.New(cfg)
	ln, err := srv.Listen()
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Shutdown()

	n := client.NewNode(client.Settings{Cluster: "pve", NodeID: 1, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
	c, err := client.Dial(ln.Addr().String(), n, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil))
	nodes := []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}
	_, err = c.Call(n.Config(nodes, true, nil))
	require.NoError(t, err)
	_, err = c.Call(n.Membership(wire.RingID{NodeID: 1, Seq: 4}, nodes, wire.HeuristicsUndefined))
	require.NoError(t, err)
	_, err = c.NetConn().Write([]byte{0, 99, 0, 0, 0, 0}) // unknown message type
	require.NoError(t, err)
	_, _, err = c.ReadMsg()
	require.NoError(t, err)

	_, body := get(t, w, "127.0.0.1:1", "/metrics")
	for _, want := range []string{
		`qnetd_build_info{addon_version="dev",core_version="3.0.3"} 1`,
		"qnetd_connected_clients 1",
		"qnetd_clusters 1",
		`qnetd_cluster_nodes{algorithm="Fifty-Fifty split",cluster="pve"} 1`,
		`qnetd_cluster_votes{cluster="pve",vote="ACK"} 1`,
		"qnetd_decisions_total 1",
		`qnetd_bad_messages_total{reason="unsupported message"} 1`,
		"qnetd_heartbeat_timeouts_total 0",
	} {
		require.Contains(t, body, want+"\n")
	}
	require.True(t, strings.Contains(body, "process_resident_memory_bytes"))
}
