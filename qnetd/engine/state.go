package engine

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// State is a cluster's condition in words a person understands; DOCS.md
// has the table. It is computed the same way for every algorithm, from
// what the nodes reported (configuration and membership) and the votes
// sent to them.
type State string

const (
	// StateHealthy: every configured node is connected, all are in one
	// partition, and every one holds the qdevice vote.
	StateHealthy State = "healthy"
	// StateDegraded: one partition holds the vote, but a configured node
	// is not connected or does not hold the vote.
	StateDegraded State = "degraded"
	// StateSplit: the nodes are in more than one partition and one of
	// them holds the vote: the split was decided.
	StateSplit State = "split"
	// StateNoVote: no connected node holds the vote.
	StateNoVote State = "no_vote"
	// StateWaiting: a decision is pending: a node has no vote yet or was
	// told to wait (its view differs from the others').
	StateWaiting State = "waiting"
)

// States lists every state, for documentation and tests.
func States() []State {
	return []State{StateHealthy, StateDegraded, StateSplit, StateNoVote, StateWaiting}
}

// HoldsVote reports whether the node's last answer lets it cast the
// qdevice vote.
func (n *NodeStatus) HoldsVote() bool {
	return !n.Waiting() && n.LastSentAckNack == wire.VoteACK
}

// Waiting reports whether the node has no usable answer yet: none at all,
// or the last one told it to ask later or wait.
func (n *NodeStatus) Waiting() bool {
	switch n.LastSentVote {
	case wire.VoteUndefined, wire.VoteAskLater, wire.VoteWaitForReply:
		return true
	}
	return n.LastSentAckNack == wire.VoteUndefined
}

// assess fills in State and StateReason.
func (cs *ClusterStatus) assess() {
	cs.State, cs.StateReason = cs.computeState()
}

func (cs *ClusterStatus) computeState() (State, string) {
	if len(cs.Nodes) == 0 {
		return StateNoVote, "no node is connected"
	}
	var waiting, voting, notVoting []uint32
	for i := range cs.Nodes {
		n := &cs.Nodes[i]
		switch {
		case n.Waiting():
			waiting = append(waiting, n.NodeID)
		case n.HoldsVote():
			voting = append(voting, n.NodeID)
		default:
			notVoting = append(notVoting, n.NodeID)
		}
	}
	parts := cs.partitions()
	if len(waiting) > 0 {
		return StateWaiting, "a decision is pending for " + nodesWord(waiting)
	}
	if len(parts) > 1 {
		if len(voting) == 0 {
			return StateNoVote, fmt.Sprintf("split into %s; no partition holds the vote%s", partsWord(parts), cs.because())
		}
		return StateSplit, fmt.Sprintf("split into %s; {%s} holds the vote%s", partsWord(parts), idList(voting), cs.because())
	}
	if len(voting) == 0 {
		return StateNoVote, fmt.Sprintf("no node holds the vote%s", cs.because())
	}
	var why []string
	if missing := cs.missing(); len(missing) > 0 {
		why = append(why, nodesWord(missing)+" not connected")
	}
	if len(notVoting) > 0 {
		why = append(why, nodesWord(notVoting)+" without the vote")
	}
	if len(why) > 0 {
		return StateDegraded, strings.Join(why, "; ")
	}
	return StateHealthy, fmt.Sprintf("all %d nodes connected, in one partition, holding the vote", len(cs.Nodes))
}

// because is ffsplit's reason for its last decision, when there is one.
func (cs *ClusterStatus) because() string {
	if !cs.Decision.Made || cs.Decision.Reason == "" {
		return ""
	}
	return " (" + cs.Decision.Reason + ")"
}

// partitions groups the connected nodes by the membership they reported;
// a node that reported none is a partition of its own.
func (cs *ClusterStatus) partitions() [][]uint32 {
	byKey := map[string][]uint32{}
	var keys []string
	for _, n := range cs.Nodes {
		ids := make([]uint32, 0, len(n.MembershipNodes))
		for _, m := range n.MembershipNodes {
			ids = append(ids, m.NodeID)
		}
		if len(ids) == 0 {
			ids = []uint32{n.NodeID}
		}
		slices.Sort(ids)
		key := idList(ids)
		if _, ok := byKey[key]; !ok {
			keys = append(keys, key)
		}
		byKey[key] = append(byKey[key], n.NodeID)
	}
	out := make([][]uint32, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// missing is the configured nodes that are not connected.
func (cs *ClusterStatus) missing() []uint32 {
	connected := map[uint32]bool{}
	for _, n := range cs.Nodes {
		connected[n.NodeID] = true
	}
	seen := map[uint32]bool{}
	var out []uint32
	for _, n := range cs.Nodes {
		for _, c := range n.ConfigNodes {
			if !connected[c.NodeID] && !seen[c.NodeID] {
				seen[c.NodeID] = true
				out = append(out, c.NodeID)
			}
		}
	}
	slices.Sort(out)
	return out
}

func idList(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ",")
}

func nodesWord(ids []uint32) string {
	if len(ids) == 1 {
		return "node " + idList(ids)
	}
	return "nodes " + idList(ids)
}

func partsWord(parts [][]uint32) string {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = "{" + idList(p) + "}"
	}
	return strings.Join(s, " and ")
}
