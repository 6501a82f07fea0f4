package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/status"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(body, v))
	return len(body)
}

// TestChurnUnderNewNamesStaysBounded: the add-on's daemon (status page,
// history; TLS off, so anyone may make up a
// cluster) serves 300 short sessions, each under a new 10 kB cluster name
// that gets the vote and leaves. Afterwards the page holds at most
// MaxHistoryEvents events within MaxHistoryBytes, names shortened.
func TestChurnUnderNewNamesStaysBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.Pairing = nil
	cfg.Server.Engine.TLS = wire.TLSUnsupported
	d, err := Start(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Wait(ctx) }()
	defer func() { cancel(); <-done }()

	nodes := []wire.NodeInfo{{NodeID: 1}}
	ring := wire.RingID{NodeID: 1, Seq: 4}
	pad := strings.Repeat("<", 10000)
	for i := range 300 {
		n := client.NewNode(client.Settings{Cluster: fmt.Sprintf("churn-%03d-%s", i, pad), NodeID: 1, Algorithm: wire.AlgoFFSplit,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
		c, err := client.Dial(d.Addr().String(), n, 5*time.Second)
		require.NoError(t, err)
		require.NoError(t, c.Handshake(ring, nil))
		_, err = c.Call(n.Config(nodes, true, nil))
		require.NoError(t, err)
		_, err = c.Call(n.Membership(ring, nodes, wire.HeuristicsUndefined))
		require.NoError(t, err)
		require.Equal(t, client.Ack, n.Vote())
		c.Close()
	}

	base := "http://" + d.WebAddr().String()
	var v status.View
	size := 0
	require.Eventually(t, func() bool {
		v = status.View{}
		size = getJSON(t, base+"/api/status", &v)
		return v.Server.ConnectedClients == 0 && len(v.Clusters) == 0 && len(v.History) > 0 &&
			strings.HasPrefix(v.History[len(v.History)-1].Cluster, "churn-299-")
	}, 20*time.Second, 20*time.Millisecond, "the page shows the last session gone")
	require.Len(t, v.History, status.MaxHistoryEvents, "900 events happened")
	require.Less(t, size, status.MaxHistoryBytes+4096, "the page is the history and little else")
	for _, e := range v.History {
		require.LessOrEqual(t, len(e.Cluster), status.MaxNameBytes)
	}
}
