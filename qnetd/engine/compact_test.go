package engine_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestCompactChangesNothingTheEngineDecides: after most clients of a
// crowd left, Compact rebuilds the tables; the status, the next deadline
// and the dead-peer drops that follow are what they would have been.
func TestCompactChangesNothingTheEngineDecides(t *testing.T) {
	run := func(compact bool) (*engine.Status, time.Duration, map[engine.ClientID]engine.DisconnectReason) {
		r := clockRig{t, engine.New(scenarioConfig(), zerolog.Nop())}
		for id := engine.ClientID(1); id <= 500; id++ {
			r.join(time.Duration(id)*ms, id, 8000)
		}
		for id := engine.ClientID(3); id <= 500; id++ {
			r.e.Disconnect(600*ms, id)
		}
		if compact {
			r.e.Compact()
		}
		at := next(t, r.e)
		return r.e.Status(), at, disconnects(r.e.Tick(time.Minute))
	}
	st0, at0, drops0 := run(false)
	st1, at1, drops1 := run(true)
	require.Equal(t, st0, st1)
	require.Equal(t, at0, at1)
	require.Equal(t, drops0, drops1)
	require.Len(t, drops1, 2, "the two clients left are dropped as dead peers")
}

// TestClustersLeavingKeepTheListingInOrder: clusters that leave, in any
// order, drop out of the status listing, which keeps creation order; a
// cluster that comes back is listed last.
func TestClustersLeavingKeepTheListingInOrder(t *testing.T) {
	e := engine.New(scenarioConfig(), zerolog.Nop())
	const n = 300
	for id := engine.ClientID(1); id <= n; id++ {
		joinCluster(t, e, id, clusterName(id))
	}
	gone := map[engine.ClientID]bool{}
	for _, id := range rand.New(rand.NewPCG(1, 2)).Perm(n)[:2*n/3] {
		gone[engine.ClientID(id+1)] = true
		e.Disconnect(time.Second, engine.ClientID(id+1))
	}
	joinCluster(t, e, n+1, clusterName(1)) // cluster 1 again, under a new client
	var want []string
	for id := engine.ClientID(2); id <= n; id++ {
		if !gone[id] {
			want = append(want, clusterName(id))
		}
	}
	if !gone[1] {
		t.Fatal("the permutation kept client 1; the test wants it gone")
	}
	want = append(want, clusterName(1))
	var got []string
	for _, cl := range e.Status().Clusters {
		got = append(got, cl.Name)
	}
	require.Equal(t, want, got)
}

// TestClustersLeavingAtOnceAllocateLittle: when thousands of one-node
// clusters leave at once, taking each out of the listing costs no copy of
// the listing (that was about 20 kB per cluster at 5,000 clusters, a
// quarter of a gigabyte of garbage per storm).
func TestClustersLeavingAtOnceAllocateLittle(t *testing.T) {
	e := engine.New(scenarioConfig(), zerolog.Nop())
	const n = 4000
	for id := engine.ClientID(1); id <= n; id++ {
		joinCluster(t, e, id, clusterName(id))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for id := engine.ClientID(1); id <= n; id++ {
		e.Disconnect(time.Second, id)
	}
	runtime.ReadMemStats(&after)
	perLeave := float64(after.TotalAlloc-before.TotalAlloc) / n
	require.Less(t, perLeave, 1024.0, "bytes allocated per cluster that left")
	require.Empty(t, e.Status().Clusters)
}

func clusterName(id engine.ClientID) string { return fmt.Sprintf("cluster-%d", id) }

// joinCluster connects client id as node 1 of cluster name.
func joinCluster(t *testing.T, e *engine.Engine, id engine.ClientID, name string) {
	t.Helper()
	n := client.NewNode(client.Settings{Cluster: name, NodeID: 1, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000})
	e.Connect(0, id, "192.0.2.1:5000")
	m := n.Preinit()
	e.Message(0, id, m, m.Append(nil))
	m = n.Init(wire.RingID{NodeID: 1, Seq: 4})
	require.True(t, e.Message(0, id, m, m.Append(nil)).InitDone)
}
