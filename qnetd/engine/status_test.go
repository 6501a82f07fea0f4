package engine_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func runBlocks(t *testing.T, r *client.Runner, blocks ...string) {
	t.Helper()
	for _, block := range blocks {
		_, err := r.Run(client.Block{Commands: splitLines(block)})
		require.NoError(t, err)
	}
}

// TestStatusCopiesState: Status carries the settings, every cluster and
// node with their lists and votes, and ffsplit's decision with its reason.
func TestStatusCopiesState(t *testing.T) {
	tr := client.NewEngineTransport(scenarioConfig())
	r := client.NewRunner(tr)
	runBlocks(t, r,
		"cluster c1 algorithm=ffsplit tie_breaker=lowest kap=off\njoin 1 2 nodes=1,2 ring=1.4",
		"split 1|2 seq=8",
		"cluster c2 algorithm=lms tie_breaker=lowest\njoin 5 nodes=5 ring=5.1",
	)
	st := tr.E.Status()
	require.Equal(t, wire.TLSUnsupported, st.TLS)
	require.True(t, st.ClientCertRequired)
	require.Equal(t, uint32(wire.DefaultMaxSendSize), st.MaxSendSize)
	require.Equal(t, 3, st.Clients)
	require.NotZero(t, st.Stats.Decisions)
	require.Len(t, st.Clusters, 2)
	require.Equal(t, []string{"c1", "c2"}, []string{st.Clusters[0].Name, st.Clusters[1].Name}, "creation order")

	c1 := st.Cluster("c1")
	require.NotNil(t, c1)
	require.Equal(t, wire.AlgoFFSplit, c1.Algorithm)
	require.False(t, c1.KAP)
	require.Equal(t, engine.Decision{Made: true, Winners: []uint32{1},
		Reason: "50:50 split, equal scores; it holds the tie-breaker node 1 (node with lowest node id)"}, c1.Decision)
	require.Equal(t, []wire.NodeInfo{{NodeID: 1}}, c1.QuoratePartition)
	require.Len(t, c1.Nodes, 2)
	n1, n2 := c1.Nodes[0], c1.Nodes[1]
	require.Equal(t, uint32(1), n1.NodeID)
	require.Equal(t, wire.VoteACK, n1.LastSentAckNack)
	require.Equal(t, wire.VoteNACK, n2.LastSentAckNack)
	require.Equal(t, []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}, n1.ConfigNodes)
	require.Equal(t, []wire.NodeInfo{{NodeID: 2}}, n2.MembershipNodes)
	require.Equal(t, wire.RingID{NodeID: 2, Seq: 8}, n2.Ring)
	require.False(t, n1.TLSActive)
	require.NotEmpty(t, n1.Addr)

	c2 := st.Cluster("c2")
	require.NotNil(t, c2)
	require.Equal(t, wire.AlgoLMS, c2.Algorithm)
	require.False(t, c2.Decision.Made, "lms decides per node, not per partition")
	require.Nil(t, st.Cluster("nope"))
}

// TestStatusIsACopy: the copy does not change when the engine goes on, and
// changing the copy does not reach the engine.
func TestStatusIsACopy(t *testing.T) {
	tr := client.NewEngineTransport(scenarioConfig())
	r := client.NewRunner(tr)
	runBlocks(t, r, "cluster c1 algorithm=ffsplit tie_breaker=lowest kap=off\njoin 1 2 nodes=1,2 ring=1.4")
	before := tr.E.Status()
	require.Equal(t, []uint32{1, 2}, before.Clusters[0].Decision.Winners)

	// Scribble over the copy; the engine's next copy is unaffected.
	before.Clusters[0].Nodes[0].MembershipNodes[0].NodeID = 99
	before.Clusters[0].QuoratePartition[0].NodeID = 99
	before.Clusters[0].Decision.Winners[0] = 99
	again := tr.E.Status()
	require.Equal(t, uint32(1), again.Clusters[0].Nodes[0].MembershipNodes[0].NodeID)
	require.Equal(t, uint32(1), again.Clusters[0].QuoratePartition[0].NodeID)
	require.Equal(t, []uint32{1, 2}, again.Clusters[0].Decision.Winners)

	// The engine moves on; the earlier copy stays as it was.
	runBlocks(t, r, "split 1|2 seq=8")
	require.Equal(t, []uint32{1, 2}, again.Clusters[0].Decision.Winners)
	require.Len(t, again.Clusters[0].Nodes[1].MembershipNodes, 2)
	now := tr.E.Status()
	require.Equal(t, []uint32{1}, now.Clusters[0].Decision.Winners)
	require.Len(t, now.Clusters[0].Nodes[1].MembershipNodes, 1)
}
