package statewatch_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/haentities"
	"github.com/qnetd-addon/qnetd/internal/statewatch"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

var t0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// cluster is a status copy's cluster in state st whose nodes voting hold
// the vote and the others do not.
func cluster(name string, st engine.State, voting []uint32, others ...uint32) engine.ClusterStatus {
	cs := engine.ClusterStatus{Name: name, State: st, StateReason: "because " + string(st)}
	for _, id := range voting {
		cs.Nodes = append(cs.Nodes, engine.NodeStatus{NodeID: id, LastSentVote: wire.VoteACK, LastSentAckNack: wire.VoteACK})
	}
	for _, id := range others {
		cs.Nodes = append(cs.Nodes, engine.NodeStatus{NodeID: id, LastSentVote: wire.VoteNACK, LastSentAckNack: wire.VoteNACK})
	}
	return cs
}

func status(cs ...engine.ClusterStatus) *engine.Status { return &engine.Status{Clusters: cs} }

func words(cs []statewatch.Change) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s %s>%s %v", c.Cluster, c.Old, c.New, c.Voters))
	}
	return out
}

func TestGoneIsHomeAssistantsWord(t *testing.T) {
	require.Equal(t, haentities.StateGone, statewatch.Gone)
}

// TestSplitSettles: a split that lasts the hold time is one settled
// change from the state before it, with the voters and the reason; the
// heal is another.
func TestSplitSettles(t *testing.T) {
	w := statewatch.New(10*time.Second, 0)
	require.Equal(t, []string{"pve gone>healthy [1 2]"}, words(w.Observe(status(cluster("pve", engine.StateHealthy, []uint32{1, 2})), at(0))))
	require.Empty(t, w.Settle(at(9)), "not held yet")
	next, ok := w.Next()
	require.True(t, ok)
	require.Equal(t, at(10), next)
	require.Equal(t, []string{"pve gone>healthy [1 2]"}, words(w.Settle(at(10))))
	_, ok = w.Next()
	require.False(t, ok, "nothing pending")

	require.Equal(t, []string{"pve healthy>split [1]"}, words(w.Observe(status(cluster("pve", engine.StateSplit, []uint32{1}, 2)), at(20))))
	require.Empty(t, words(w.Observe(status(cluster("pve", engine.StateSplit, []uint32{1}, 2)), at(22))), "no change, no line")
	settled := w.Settle(at(30))
	require.Equal(t, []string{"pve healthy>split [1]"}, words(settled))
	require.Equal(t, "because split", settled[0].Reason)
	require.Equal(t, at(20), settled[0].Since)
	require.Equal(t, 2, settled[0].Nodes)

	w.Observe(status(cluster("pve", engine.StateHealthy, []uint32{1, 2})), at(40))
	require.Equal(t, []string{"pve split>healthy [1 2]"}, words(w.Settle(at(50))))
}

// TestTransientsFireNothing: a reconnect (healthy, gone, healthy) or a
// qdevice restart (healthy, waiting, healthy) shorter than the hold time
// is logged as it happens but never settles.
func TestTransientsFireNothing(t *testing.T) {
	w := statewatch.New(10*time.Second, 0)
	w.Observe(status(cluster("pve", engine.StateHealthy, []uint32{1, 2})), at(0))
	w.Settle(at(10))

	require.Equal(t, []string{"pve healthy>gone []"}, words(w.Observe(status(), at(20))))
	require.Empty(t, w.Settle(at(25)))
	require.Equal(t, []string{"pve gone>waiting []"}, words(w.Observe(status(cluster("pve", engine.StateWaiting, nil, 1, 2)), at(26))))
	require.Equal(t, []string{"pve waiting>healthy [1 2]"}, words(w.Observe(status(cluster("pve", engine.StateHealthy, []uint32{1, 2})), at(28))))
	require.Empty(t, w.Settle(at(60)), "back to the settled state within the hold time")
	_, ok := w.Next()
	require.False(t, ok)

	// Through two states: only the last one, from the settled one.
	w.Observe(status(cluster("pve", engine.StateWaiting, nil, 1, 2)), at(70))
	w.Observe(status(cluster("pve", engine.StateNoVote, nil, 1, 2)), at(72))
	require.Empty(t, w.Settle(at(81)))
	require.Equal(t, []string{"pve healthy>no_vote []"}, words(w.Settle(at(82))))
}

// TestGoneIsForgotten: a cluster that stays gone for the hold time is
// reported once and forgotten; one that came and went within it leaves
// nothing.
func TestGoneIsForgotten(t *testing.T) {
	w := statewatch.New(10*time.Second, 0)
	w.Observe(status(cluster("a", engine.StateHealthy, []uint32{1}), cluster("b", engine.StateWaiting, nil, 1)), at(0))
	require.Equal(t, []string{"a gone>healthy [1]", "b gone>waiting []"}, words(w.Settle(at(10))))
	w.Observe(status(cluster("b", engine.StateWaiting, nil, 1)), at(11))
	require.Equal(t, []string{"a healthy>gone []"}, words(w.Settle(at(30))))
	w.Observe(status(), at(31))
	require.Equal(t, []string{"b waiting>gone []"}, words(w.Settle(at(41))))
	require.Equal(t, 0, w.Len())

	w.Observe(status(cluster("c", engine.StateWaiting, nil, 1)), at(50))
	w.Observe(status(), at(51))
	require.Empty(t, w.Settle(at(70)))
	require.Equal(t, 0, w.Len(), "a cluster that came and went leaves nothing")
}

// TestBound: clients choose cluster names; no more than max are
// followed, the rest are counted.
func TestBound(t *testing.T) {
	w := statewatch.New(time.Second, 3)
	var cs []engine.ClusterStatus
	for i := 0; i < 1000; i++ {
		cs = append(cs, cluster(fmt.Sprint("c", i), engine.StateWaiting, nil, 1))
	}
	require.Len(t, w.Observe(status(cs...), at(0)), 3)
	require.Equal(t, 3, w.Len())
	require.EqualValues(t, 997, w.Refused)
	// When they leave, there is room again.
	w.Observe(status(), at(1))
	w.Settle(at(2))
	require.Equal(t, 0, w.Len())
	require.Len(t, w.Observe(status(cs[10:11]...), at(3)), 1)
}

// TestNoHold: a hold time of 0 settles every change at once.
func TestNoHold(t *testing.T) {
	w := statewatch.New(0, 0)
	w.Observe(status(cluster("pve", engine.StateHealthy, []uint32{1, 2})), at(0))
	require.Equal(t, []string{"pve gone>healthy [1 2]"}, words(w.Settle(at(0))))
}
