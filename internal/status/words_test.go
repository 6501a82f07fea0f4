package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func TestPlainAddr(t *testing.T) {
	for in, want := range map[string]string{
		"[::ffff:192.0.2.7]:5403": "192.0.2.7:5403",
		"[::FFFF:192.0.2.7]:1":    "192.0.2.7:1",
		"::ffff:192.0.2.7":        "192.0.2.7",
		"[::ffff:192.0.2.7]":      "192.0.2.7",
		"::ffff:c000:207":         "192.0.2.7",
		"192.0.2.7:5403":          "192.0.2.7:5403",
		"[2001:db8::1]:5403":      "[2001:db8::1]:5403",
		"[::]:5403":               "[::]:5403",
		"2001:db8::1":             "2001:db8::1",
		"[fe80::1%eth0]:5403":     "[fe80::1%eth0]:5403",
		"pve1.lan:5403":           "pve1.lan:5403",
		"":                        "",
		"@":                       "@",
	} {
		require.Equal(t, want, PlainAddr(in), in)
	}
}

// TestViewInPlainWords: the page's JSON has every cluster's state with its
// headline and reason, each node's vote and membership in words, and no
// IPv4-mapped address anywhere; the fields other parts read stay.
func TestViewInPlainWords(t *testing.T) {
	ack := func(id uint32, addr string, members ...uint32) engine.NodeStatus {
		n := engine.NodeStatus{NodeID: id, Addr: addr, LastSentVote: wire.VoteACK, LastSentAckNack: wire.VoteACK,
			Ring: wire.RingID{NodeID: members[0], Seq: 0x1a}, Heuristics: wire.HeuristicsPass}
		for _, m := range members {
			n.MembershipNodes = append(n.MembershipNodes, wire.NodeInfo{NodeID: m})
		}
		return n
	}
	nack := ack(2, "[::ffff:192.0.2.12]:40002", 2)
	nack.LastSentAckNack = wire.VoteNACK
	waiting := engine.NodeStatus{NodeID: 3, Addr: "[2001:db8::3]:40003", LastSentVote: wire.VoteWaitForReply}
	st := &engine.Status{Clusters: []engine.ClusterStatus{
		{Name: "split", State: engine.StateSplit, StateReason: "split into {1} and {2}; {1} holds the vote",
			Nodes: []engine.NodeStatus{ack(1, "[::ffff:192.0.2.11]:40001", 1), nack}},
		{Name: "healthy", State: engine.StateHealthy, StateReason: "all 2 nodes connected",
			Nodes: []engine.NodeStatus{ack(4, "192.0.2.14:4", 4, 5), ack(5, "192.0.2.15:5", 4, 5)}},
		{Name: "waiting", State: engine.StateWaiting, StateReason: "a decision is pending for node 3",
			Nodes: []engine.NodeStatus{waiting}},
		{Name: "gone", State: engine.StateNoVote, StateReason: "no node is connected"},
	}}
	c := newClock()
	rec := NewRecorder(c.now, time.Hour)
	v := BuildView(st, "[::ffff:192.0.2.1]:5403", rec, Pairing{}, c.now())
	require.Equal(t, "192.0.2.1:5403", v.Server.Address)

	split := v.Clusters[0]
	require.Equal(t, "split", split.State)
	require.Equal(t, "Split: node 1 holds the vote", split.StateTitle)
	require.Equal(t, "split into {1} and {2}; {1} holds the vote", split.StateReason)
	require.True(t, split.HasVote)
	require.Equal(t, "192.0.2.11:40001", split.Nodes[0].Address)
	require.Equal(t, "has the vote", split.Nodes[0].VoteText)
	require.Equal(t, "ACK", split.Nodes[0].Vote, "the vote as before, for other readers")
	require.Equal(t, "no vote", split.Nodes[1].VoteText)
	require.Equal(t, "membership change 26 by node 1", split.Nodes[0].MembershipChange)
	require.Equal(t, "1.1a", split.Nodes[0].Ring, "the ring id as corosync-qnetd-tool shows it")
	require.Equal(t, "pass", split.Nodes[0].HeuristicsText)

	require.Equal(t, "Healthy", v.Clusters[1].StateTitle)
	require.Equal(t, "Waiting for a decision", v.Clusters[2].StateTitle)
	require.Equal(t, "waiting", v.Clusters[2].Nodes[0].VoteText)
	require.Equal(t, "[2001:db8::3]:40003", v.Clusters[2].Nodes[0].Address)
	require.Equal(t, "none reported yet", v.Clusters[2].Nodes[0].MembershipChange)
	require.Equal(t, "not used", v.Clusters[2].Nodes[0].HeuristicsText)
	require.Equal(t, StateGone, v.Clusters[3].State)
	require.Equal(t, "Gone: no node is connected", v.Clusters[3].StateTitle)
	require.NotNil(t, v.Clusters[3].Nodes)

	js, err := json.Marshal(v)
	require.NoError(t, err)
	require.NotContains(t, strings.ToLower(string(js)), "::ffff:")
}

func TestStateTitles(t *testing.T) {
	for _, s := range append(engine.States(), StateGone) {
		require.NotEqual(t, string(s), stateTitle(string(s), []uint32{1}), "every state has a headline: %s", s)
	}
	require.Equal(t, "Split: nodes 1, 2 hold the vote", stateTitle("split", []uint32{1, 2}))
	require.Equal(t, "Degraded, still has the vote", stateTitle("degraded", nil))
	require.Equal(t, "No vote", stateTitle("no_vote", nil))
}
