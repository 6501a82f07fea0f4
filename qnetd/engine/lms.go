package engine

import (
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// lms ("last man standing"): clients are grouped into partitions by the
// ring id they last reported; the partition with the best heuristics
// score, then the most members, then the tie-breaker node gets the vote.
// While the members of a client's own partition still report different
// rings it answers WAIT_FOR_REPLY and retries every heartbeat/4.
type lms struct{}

func (lms) init(*Engine, *Client) {}

func (lms) configList(*Engine, *Client, []wire.NodeInfo, bool) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteNoChange
}

func (lms) membership(e *Engine, c *Client, ring wire.RingID, _ []wire.NodeInfo, _ wire.Heuristics) (wire.ErrorCode, wire.Vote) {
	return 0, lmsDecide(e, c, ring)
}

func (lms) quorum(e *Engine, c *Client, _ bool, _ []wire.NodeInfo) (wire.ErrorCode, wire.Vote) {
	return 0, lmsDecide(e, c, c.LastRingID)
}

func (lms) askForVote(e *Engine, c *Client) (wire.ErrorCode, wire.Vote) {
	return 0, lmsDecide(e, c, c.LastRingID)
}

func (lms) voteInfoReply(*Engine, *Client, uint32) {}

func (lms) heuristicsChange(*Engine, *Client, wire.Heuristics) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteNoChange
}

func (lms) disconnect(e *Engine, c *Client, _ bool) { e.stopAlgo(c) }

func (lms) timer(e *Engine, c *Client) {
	v := lmsDecide(e, c, c.LastRingID)
	switch v {
	case wire.VoteACK, wire.VoteNACK:
		c.timerVoteSeq++
		e.sendVoteInfo(c, c.timerVoteSeq, v, c.LastRingID, "lms retry")
	case wire.VoteWaitForReply:
		// lmsDecide re-armed the timer
	default:
		e.stopAlgo(c)
	}
}

func (c *Client) algoTimerMs() uint32 {
	if ms := c.Heartbeat / 4; ms > 0 {
		return ms
	}
	return 1
}

type lmsPartition struct {
	ring    wire.RingID
	members int
	score   int
}

// lmsDecide follows upstream step by step, including its quirks: partitions
// are built from the stored ring ids (for a membership message that is
// still the previous ring), the member-count tie-break looks at all
// partitions, and with a node-id tie-breaker only that node gets ACK
// (and any client on ring 0.0, which matches the zero "remembered" ring).
func lmsDecide(e *Engine, c *Client, ring wire.RingID) wire.Vote {
	e.stopAlgo(c)
	store := func(v wire.Vote) wire.Vote { c.lastResult = v; return v }
	if !lmsRingsAgree(c, ring) {
		e.armAlgo(c, c.algoTimerMs())
		return store(wire.VoteWaitForReply)
	}
	parts := lmsPartitions(c.cluster)
	switch len(parts) {
	case 0:
		e.armAlgo(c, c.algoTimerMs())
		return store(wire.VoteWaitForReply)
	case 1:
		return store(wire.VoteACK)
	}
	if newcomerNack(c, ring) {
		return wire.VoteNACK
	}
	if p, unique := bestPartition(parts, func(p lmsPartition) int { return p.score }); unique {
		return store(ackIf(p.ring == ring))
	}
	if p, unique := bestPartition(parts, func(p lmsPartition) int { return p.members }); unique {
		return store(ackIf(p.ring == ring))
	}
	tbID, tbRing := lmsTieBreaker(c)
	return store(ackIf(c.NodeID == tbID || tbRing == ring))
}

// lmsRingsAgree reports whether every other client in c's partition (a
// member of c's list, or one that lists c) reports the ring c reports.
func lmsRingsAgree(c *Client, ring wire.RingID) bool {
	for _, o := range c.cluster.Clients {
		if o == c {
			continue
		}
		inOurs := containsNode(c.MembershipList, o.NodeID) || containsNode(o.MembershipList, c.NodeID)
		if inOurs && o.LastRingID != ring {
			return false
		}
	}
	return true
}

// lmsPartitions groups the clients by their stored ring, in the order the
// rings first appear; a client that reported no ring yet (seq 0) is left
// out.
func lmsPartitions(cl *Cluster) []lmsPartition {
	var parts []lmsPartition
	for _, o := range cl.Clients {
		if o.LastRingID.Seq == 0 {
			continue
		}
		i := 0
		for i < len(parts) && parts[i].ring != o.LastRingID {
			i++
		}
		if i == len(parts) {
			parts = append(parts, lmsPartition{ring: o.LastRingID})
		}
		parts[i].members++
		parts[i].score += 1 + o.LastHeuristics.Rank()
	}
	return parts
}

// lmsTieBreaker is the tie-breaker node as c's mode names it, and the ring
// remembered for it. The remembered ring starts as the zero ring {0,0}, as
// upstream's does, and with a node-id tie-breaker it is only overwritten
// when c is the tie-breaker node. So a client that is not the tie-breaker
// but itself reports ring 0.0 "shares the tie-breaker's ring" and gets ACK.
func lmsTieBreaker(c *Client) (tbID uint32, tbRing wire.RingID) {
	clients := c.cluster.Clients
	switch c.TieBreaker.Mode {
	case wire.TieBreakerLowest:
		tbID = 2147483647
		for _, o := range clients {
			if o.NodeID < tbID {
				tbID, tbRing = o.NodeID, o.LastRingID
			}
		}
	case wire.TieBreakerHighest:
		for _, o := range clients {
			if o.NodeID > tbID {
				tbID, tbRing = o.NodeID, o.LastRingID
			}
		}
	case wire.TieBreakerNodeID:
		tbID = c.TieBreaker.NodeID
		if c.NodeID == tbID && len(clients) > 0 {
			tbRing = clients[len(clients)-1].LastRingID // upstream keeps the last client's
		}
	}
	return tbID, tbRing
}

// newcomerNack: a client without a result yet gets NACK (not remembered)
// while another client of the cluster holds an ACK for a different ring.
func newcomerNack(c *Client, ring wire.RingID) bool {
	if c.lastResult != wire.VoteUndefined {
		return false
	}
	for _, o := range c.cluster.Clients {
		if o.LastRingID != ring && o.lastResult == wire.VoteACK {
			return true
		}
	}
	return false
}

func bestPartition(parts []lmsPartition, key func(lmsPartition) int) (lmsPartition, bool) {
	best := 0
	unique := true
	for i := 1; i < len(parts); i++ {
		switch k := key(parts[i]); {
		case k > key(parts[best]):
			best, unique = i, true
		case k == key(parts[best]):
			unique = false
		}
	}
	return parts[best], unique
}

func ackIf(ok bool) wire.Vote {
	if ok {
		return wire.VoteACK
	}
	return wire.VoteNACK
}
