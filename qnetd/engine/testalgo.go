package engine

import (
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// testAlgo ("Test") gives every partition a vote. It exists for protocol
// testing only; a cluster using it has no split-brain protection.
type testAlgo struct{}

func (testAlgo) init(e *Engine, c *Client) {
	e.log.Warn().Str("cluster", string(c.ClusterName)).Uint32("node_id", c.NodeID).
		Msg("test algorithm in use: every partition gets a vote, never use it in production")
}

func (testAlgo) configList(*Engine, *Client, []wire.NodeInfo, bool) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteNoChange
}

func (testAlgo) membership(*Engine, *Client, wire.RingID, []wire.NodeInfo, wire.Heuristics) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteACK
}

func (testAlgo) quorum(*Engine, *Client, bool, []wire.NodeInfo) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteNoChange
}

func (testAlgo) askForVote(*Engine, *Client) (wire.ErrorCode, wire.Vote) { return 0, wire.VoteACK }

func (testAlgo) voteInfoReply(*Engine, *Client, uint32) {}

func (testAlgo) heuristicsChange(*Engine, *Client, wire.Heuristics) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteNoChange
}

func (testAlgo) disconnect(*Engine, *Client, bool) {}

func (testAlgo) timer(*Engine, *Client) {}
