package status

import (
	"context"
	"encoding/json"
	"fmt"
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

// TestGoneClusters: a cluster whose last node left is shown as gone, apart
// from the connected ones, until it comes back or for GoneFor; at most
// MaxGone of them, the newest.
func TestGoneClusters(t *testing.T) {
	c := newClock()
	var names []string
	status := func(context.Context) (*engine.Status, error) {
		st := &engine.Status{}
		for _, n := range names {
			st.Clusters = append(st.Clusters, engine.ClusterStatus{Name: n, State: engine.StateHealthy,
				Nodes: []engine.NodeStatus{{NodeID: 1, LastSentVote: wire.VoteACK, LastSentAckNack: wire.VoteACK}}})
		}
		return st, nil
	}
	p := New(Config{Status: status, Recorder: NewRecorder(c.now, time.Hour), Now: c.now})
	view := func() View {
		t.Helper()
		require.NoError(t, p.Refresh(context.Background()))
		var v View
		require.NoError(t, json.Unmarshal(p.current(context.Background()), &v))
		return v
	}
	goneNames := func(v View) []string {
		var out []string
		for _, g := range v.Gone {
			require.Equal(t, StateGone, g.State)
			require.Equal(t, "Gone: no node is connected", g.StateTitle)
			out = append(out, g.Name)
		}
		return out
	}
	names = []string{"a", "b"}
	require.Empty(t, view().Gone)
	names = []string{"a"}
	c.add(time.Second)
	v := view()
	require.Len(t, v.Clusters, 1, "the connected ones only")
	require.Equal(t, []string{"b"}, goneNames(v))
	require.Equal(t, c.now(), v.Gone[0].GoneSince)
	c.add(time.Minute)
	require.Equal(t, []string{"b"}, goneNames(view()), "still gone")
	names = []string{"a", "b"}
	require.Empty(t, view().Gone, "back")

	// GoneFor.
	names = nil
	v = view()
	require.Empty(t, v.Clusters)
	require.Equal(t, []string{"a", "b"}, goneNames(v))
	c.add(GoneFor - time.Second)
	require.Len(t, view().Gone, 2)
	c.add(time.Second)
	require.Empty(t, view().Gone)

	// MaxGone: 30 clusters come and go, the newest MaxGone are shown.
	for i := range 30 {
		names = []string{fmt.Sprintf("c%02d", i)}
		view()
		c.add(time.Second)
	}
	names = nil
	g := goneNames(view())
	require.Len(t, g, MaxGone)
	require.Equal(t, "c29", g[0])
	require.Equal(t, fmt.Sprintf("c%02d", 30-MaxGone), g[MaxGone-1])
}

// TestTLSInWords: the server line says the TLS mode in words, not in the
// protocol's constant names.
func TestTLSInWords(t *testing.T) {
	for tls, want := range map[wire.TLSSupported]string{wire.TLSUnsupported: "off", wire.TLSSupportedOn: "offered", wire.TLSRequired: "required"} {
		require.Equal(t, want, tlsWords(tls))
	}
}
