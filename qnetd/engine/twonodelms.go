package engine

import (
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// twoNodeLMS ("2 Node LMS"): for exactly two configured nodes. A node that
// sees both members gets ACK, a node alone with qnetd gets ACK; when both
// are connected but split, better heuristics and then the tie-breaker win.
// The other node is not told when one node's view changes.
type twoNodeLMS struct{}

func (twoNodeLMS) init(*Engine, *Client) {}

func (twoNodeLMS) configList(_ *Engine, _ *Client, nodes []wire.NodeInfo, _ bool) (wire.ErrorCode, wire.Vote) {
	if len(nodes) != 2 {
		return wire.ErrUnsupportedDecisionAlgorithm, 0
	}
	return 0, wire.VoteNoChange
}

func (twoNodeLMS) membership(_ *Engine, c *Client, ring wire.RingID, nodes []wire.NodeInfo, h wire.Heuristics) (wire.ErrorCode, wire.Vote) {
	if newcomerNack(c, ring) {
		return 0, wire.VoteNACK
	}
	store := func(v wire.Vote) (wire.ErrorCode, wire.Vote) { c.lastResult = v; return 0, v }
	if len(nodes) == 2 {
		return store(wire.VoteACK)
	}
	count := 0
	var minID, maxID uint32
	otherH := wire.HeuristicsUndefined
	for _, o := range c.cluster.Clients {
		if count == 0 || o.NodeID < minID {
			minID = o.NodeID
		}
		if count == 0 || o.NodeID > maxID {
			maxID = o.NodeID
		}
		count++
		if o != c {
			otherH = o.LastHeuristics
		}
	}
	if count == 1 {
		return store(wire.VoteACK)
	}
	switch {
	case h.Rank() > otherH.Rank():
		return store(wire.VoteACK)
	case h.Rank() < otherH.Rank():
		return store(wire.VoteNACK)
	}
	switch c.TieBreaker.Mode {
	case wire.TieBreakerLowest:
		return store(ackIf(c.NodeID == minID))
	case wire.TieBreakerHighest:
		return store(ackIf(c.NodeID == maxID))
	case wire.TieBreakerNodeID:
		return store(ackIf(c.NodeID == c.TieBreaker.NodeID))
	}
	return store(wire.VoteNACK)
}

func (twoNodeLMS) quorum(*Engine, *Client, bool, []wire.NodeInfo) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteNoChange
}

func (twoNodeLMS) askForVote(_ *Engine, c *Client) (wire.ErrorCode, wire.Vote) {
	if c.lastResult == wire.VoteUndefined {
		return 0, wire.VoteAskLater
	}
	return 0, c.lastResult
}

func (twoNodeLMS) voteInfoReply(*Engine, *Client, uint32) {}

func (twoNodeLMS) heuristicsChange(*Engine, *Client, wire.Heuristics) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteNoChange
}

func (twoNodeLMS) disconnect(*Engine, *Client, bool) {}

func (twoNodeLMS) timer(*Engine, *Client) {}
