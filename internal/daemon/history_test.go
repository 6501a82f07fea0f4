package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/status"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestHistoryKeptAcrossRestart: a node gets the vote, the daemon stops
// and starts again with the same history file, and the status page of
// the new one shows the decisions of the old.
func TestHistoryKeptAcrossRestart(t *testing.T) {
	hist := filepath.Join(t.TempDir(), status.HistoryFileName)
	run := func() (*Daemon, func()) {
		cfg := testConfig(t)
		cfg.Pairing = nil
		cfg.Server.Engine.TLS = wire.TLSUnsupported
		cfg.Web.HistoryFile = hist
		d, err := Start(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Wait(ctx) }()
		return d, func() {
			cancel()
			require.NoError(t, <-done)
		}
	}
	d, stop := run()
	nodes := []wire.NodeInfo{{NodeID: 1}}
	ring := wire.RingID{NodeID: 1, Seq: 4}
	n := client.NewNode(client.Settings{Cluster: "before-restart", NodeID: 1, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
	c, err := client.Dial(d.Addr().String(), n, 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Handshake(ring, nil))
	_, err = c.Call(n.Config(nodes, true, nil))
	require.NoError(t, err)
	_, err = c.Call(n.Membership(ring, nodes, wire.HeuristicsUndefined))
	require.NoError(t, err)
	require.Equal(t, client.Ack, n.Vote())
	_, err = os.Stat(hist)
	require.True(t, os.IsNotExist(err), "not written within the first minute")
	stop()
	fi, err := os.Stat(hist)
	require.NoError(t, err, "written at shutdown")
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	d, stop = run()
	defer stop()
	var v status.View
	getJSON(t, "http://"+d.WebAddr().String()+"/api/status", &v)
	require.Empty(t, v.Clusters)
	var texts []string
	for _, e := range v.History {
		require.Equal(t, "before-restart", e.Cluster)
		texts = append(texts, e.Text)
	}
	require.Contains(t, texts, "node 1 gets the vote (in the quorate partition)")
}
