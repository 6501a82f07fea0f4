package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// ffsplit ("Fifty-Fifty split"): a partition with more than half of the
// configured nodes wins; in an exact 50:50 split the partition with the
// better heuristics score, then more connected clients, then (with KAP) the
// partition that already holds the vote, then the tie-breaker node wins.
// Votes change in two phases: NACKs first, ACKs only after every NACK was
// acknowledged, so the losing side stops voting before the winner starts.

type ffClusterState uint8

const (
	ffWaitingForChange ffClusterState = iota
	ffWaitingForStableMembership
	ffSendingNacks
	ffSendingAcks
)

type ffClientState uint8

const (
	ffClientWaitingForChange ffClientState = iota
	ffClientSendingNack
	ffClientSendingAck
)

type ffsplit struct{}

func (ffsplit) init(*Engine, *Client) {}

func (ffsplit) configList(e *Engine, c *Client, nodes []wire.NodeInfo, initial bool) (wire.ErrorCode, wire.Vote) {
	if len(nodes) == 0 || !containsNode(nodes, c.NodeID) {
		return wire.ErrInvalidConfigNodeList, 0
	}
	if initial || len(c.MembershipList) == 0 {
		return 0, wire.VoteAskLater
	}
	return 0, ffDecide(e, c, false, c.LastRingID, nodes, c.MembershipList, c.LastHeuristics)
}

func (ffsplit) membership(e *Engine, c *Client, ring wire.RingID, nodes []wire.NodeInfo, h wire.Heuristics) (wire.ErrorCode, wire.Vote) {
	if len(nodes) == 0 || !containsNode(nodes, c.NodeID) {
		return wire.ErrInvalidMembershipNodeList, 0
	}
	if len(c.ConfigList) == 0 {
		return 0, wire.VoteAskLater
	}
	return 0, ffDecide(e, c, false, ring, c.ConfigList, nodes, h)
}

func (ffsplit) quorum(*Engine, *Client, bool, []wire.NodeInfo) (wire.ErrorCode, wire.Vote) {
	return 0, wire.VoteNoChange
}

func (ffsplit) askForVote(*Engine, *Client) (wire.ErrorCode, wire.Vote) {
	return wire.ErrUnsupportedDecisionAlgorithmMsg, 0
}

func (ffsplit) heuristicsChange(e *Engine, c *Client, h wire.Heuristics) (wire.ErrorCode, wire.Vote) {
	if len(c.ConfigList) == 0 || len(c.MembershipList) == 0 {
		return 0, wire.VoteAskLater
	}
	return 0, ffDecide(e, c, false, c.LastRingID, c.ConfigList, c.MembershipList, h)
}

func (ffsplit) disconnect(e *Engine, c *Client, goingDown bool) {
	e.stopNack(c)
	if !goingDown {
		ffDecide(e, c, true, c.LastRingID, c.ConfigList, c.MembershipList, c.LastHeuristics)
	}
}

func (ffsplit) timer(*Engine, *Client) {}

func (ffsplit) voteInfoReply(e *Engine, c *Client, seq uint32) {
	if seq != c.voteInfoSeq {
		return // a reply to an older VOTE_INFO
	}
	if c.voteInfoRound != c.cluster.ffRound {
		// The reply acknowledges a vote of an earlier decision. Upstream
		// takes it as an answer to the current one and resets a client
		// that is due an ACK, which then keeps no vote until the next
		// change (protocol notes, fact 22). The current decision's vote
		// for this client has not been sent yet; it still will be.
		return
	}
	c.ffState = ffClientWaitingForChange
	e.stopNack(c)
	cl := c.cluster
	switch cl.ffState {
	case ffSendingNacks:
		if !cl.anyFF(ffClientSendingNack) {
			ffSendAcks(e, cl, nil, nil)
		}
	case ffSendingAcks:
		if !cl.anyFF(ffClientSendingAck) {
			cl.ffState = ffWaitingForChange
		}
	}
}

// ffsplitNackTimeout drops a client that never acknowledged its NACK.
// Upstream waits forever, so one silent loser keeps the winner without a
// vote. Dropping it is the same event as that client's connection dying,
// which upstream already handles by re-deciding without it; a live client
// answers a VOTE_INFO within milliseconds, and the deadline (its dead-peer
// interval, 1.5 heartbeats) is longer than the qdevice vote lifetime that
// votequorum enforces on the losing node (quorum.device.timeout), so by
// then the loser's previous vote has expired even if it ignored the NACK.
func ffsplitNackTimeout(e *Engine, c *Client) {
	if c.ffState != ffClientSendingNack || c.cluster == nil {
		return
	}
	e.stats.NackTimeouts++
	e.scheduleDisconnect(c, ReasonNackTimeout, "no reply to a NACK vote within the dead peer interval")
}

func (cl *Cluster) anyFF(s ffClientState) bool {
	for _, c := range cl.Clients {
		if c.ffState == s {
			return true
		}
	}
	return false
}

// ffView is one client's lists as the decision sees them: the triggering
// client's new (candidate) values, every other client's stored ones.
type ffView struct {
	c    *Client
	cfg  []wire.NodeInfo
	mem  []wire.NodeInfo
	ring wire.RingID
	heur wire.Heuristics
}

// ffDecide is upstream's "do" step: check that all views agree, pick the
// quorate partition and start sending votes. It returns the vote for the
// triggering client's reply (NO_CHANGE: that client learns its vote from
// its own VOTE_INFO, queued before the reply; WAIT_FOR_REPLY while views
// disagree).
func ffDecide(e *Engine, trigger *Client, leaving bool, ring wire.RingID, cfg, mem []wire.NodeInfo, heur wire.Heuristics) wire.Vote {
	cl := trigger.cluster
	cl.ffState = ffWaitingForStableMembership
	views := ffViews(cl, trigger, leaving, ffView{trigger, cfg, mem, ring, heur})
	if !ffStable(views) {
		return wire.VoteWaitForReply
	}
	cl.ffRound++
	best := ffBest(cl, views)
	ffRecord(e, cl, views, best)
	ffSendVotes(e, cl, views, best, trigger, leaving, ring)
	return wire.VoteNoChange
}

// ffViews is every client's view for a decision: the trigger's candidate
// view (left out when it is leaving) and every other client's stored one.
func ffViews(cl *Cluster, trigger *Client, leaving bool, candidate ffView) []ffView {
	views := make([]ffView, 0, len(cl.Clients))
	for _, c := range cl.Clients {
		switch {
		case c != trigger:
			views = append(views, ffView{c, c.ConfigList, c.MembershipList, c.LastRingID, c.LastHeuristics})
		case !leaving:
			views = append(views, candidate)
		}
	}
	return views
}

// ffBest is where the vote is decided: the view whose partition beats
// every one before it (ffCompare), or nil when none qualifies.
func ffBest(cl *Cluster, views []ffView) *ffView {
	var best *ffView
	for i := range views {
		if ffBetter(cl, &views[i], best) {
			best = &views[i]
		}
	}
	return best
}

// ffRecord stores the decision (its winners and reason) in the cluster,
// tells the observer and logs it: a decision that changed nothing is a
// debug line (every node's list repeats the round), a new one an info line.
func ffRecord(e *Engine, cl *Cluster, views []ffView, best *ffView) {
	prev := cl.decision
	cl.decision = Decision{Made: true, Reason: ffExplain(cl, views, best)}
	if best != nil {
		cl.decision.Winners = make([]uint32, len(best.mem))
		for i, n := range best.mem {
			cl.decision.Winners[i] = n.NodeID
		}
	}
	if e.observer != nil {
		d := cl.decision
		d.Winners = append([]uint32(nil), d.Winners...)
		e.observer.Decided(cl.Name, d)
	}
	cl.QuoratePartition = nil
	if best != nil {
		cl.QuoratePartition = append([]wire.NodeInfo(nil), best.mem...)
	}
	ev := e.log.Debug()
	if !prev.Made || prev.Reason != cl.decision.Reason || !slices.Equal(prev.Winners, cl.decision.Winners) {
		ev = e.log.Info()
	}
	ev = ev.Str("cluster", cl.Name).Str("partition", idList(cl.decision.Winners)).Str("reason", cl.decision.Reason)
	if best != nil {
		ev.Msg("ffsplit decision: a partition gets the qdevice vote")
	} else {
		ev.Msg("ffsplit decision: no partition gets the qdevice vote")
	}
}

// ffSendVotes starts telling the clients the decision: NACK first to
// everyone outside the winning partition, each with a deadline for its
// reply; ACKs follow once every NACK is acknowledged, or at once when no
// NACK was due. A leaving trigger is told nothing.
func ffSendVotes(e *Engine, cl *Cluster, views []ffView, best *ffView, trigger *Client, leaving bool, ring wire.RingID) {
	for _, c := range cl.Clients {
		switch {
		case leaving && c == trigger:
			c.ffState = ffClientWaitingForChange
		case best != nil && containsNode(best.mem, c.NodeID):
			c.ffState = ffClientSendingAck
		default:
			c.ffState = ffClientSendingNack
		}
	}
	cl.ffState = ffSendingNacks
	sent := false
	for i := range views {
		v := &views[i]
		if v.c.ffState != ffClientSendingNack {
			continue
		}
		v.c.voteInfoSeq++
		v.c.voteInfoRound = cl.ffRound
		e.sendVoteInfo(v.c, v.c.voteInfoSeq, wire.VoteNACK, v.ring, "not in the quorate partition")
		if d := v.c.dpd(); d > 0 {
			e.armNack(v.c, d)
		}
		sent = true
	}
	if !sent {
		ffSendAcks(e, cl, trigger, &ring)
	}
}

// ffSendAcks sends ACK to every client due one. The triggering client (if
// any) gets the candidate ring it is about to store.
func ffSendAcks(e *Engine, cl *Cluster, trigger *Client, ring *wire.RingID) {
	cl.ffState = ffSendingAcks
	sent := false
	for _, c := range cl.Clients {
		if c.ffState != ffClientSendingAck || c.dropping {
			continue
		}
		r := c.LastRingID
		if c == trigger {
			r = *ring
		}
		c.voteInfoSeq++
		c.voteInfoRound = cl.ffRound
		e.sendVoteInfo(c, c.voteInfoSeq, wire.VoteACK, r, "in the quorate partition")
		sent = true
	}
	if !sent {
		cl.ffState = ffWaitingForChange
	}
}

// ffStable reports whether all views agree: identical configurations, and
// everyone a client sees as a member has the same ring and sees at least
// as much. A client without a configuration yet makes the cluster
// unstable (upstream crashes on it, see the protocol notes, fact 1).
func ffStable(views []ffView) bool {
	for i := range views {
		if len(views[i].cfg) == 0 {
			return false
		}
	}
	for i := range views {
		for j := range views {
			if i != j && !subset(views[i].cfg, views[j].cfg) {
				return false
			}
		}
	}
	for i := range views {
		a := &views[i]
		for _, n := range a.mem {
			for j := range views {
				b := &views[j]
				if b.c.NodeID != n.NodeID {
					continue
				}
				if a.ring != b.ring || !subset(a.mem, b.mem) {
					return false
				}
			}
		}
	}
	return true
}

func subset(a, b []wire.NodeInfo) bool {
	for _, n := range a {
		if !containsNode(b, n.NodeID) {
			return false
		}
	}
	return true
}

// ffRule is the rule of ffCompare that decided between two partitions.
type ffRule uint8

const (
	ffMajority    ffRule = iota + 1 // more than half of the configured nodes
	ffNoMajority                    // half or fewer of an odd number, or fewer than half
	ffAlone                         // 50:50 and the other half has no client
	ffHeuristics                    // better heuristics score
	ffConnected                     // more connected clients
	ffKeepsActive                   // keep-active-partition: it had the vote
	ffTieBreaker                    // holds (or not) the tie-breaker node
)

// ffWhy is why one partition beat (or did not beat) another: the rule and
// the figures it compared, put into words only when a decision is logged.
type ffWhy struct {
	rule   ffRule
	m, n   int // members, configured nodes
	a, b   int // the compared figures (scores, connected clients)
	tbNode uint32
	tb     wire.TieBreaker
}

func (w ffWhy) String() string {
	switch w.rule {
	case ffMajority:
		return fmt.Sprintf("has a majority: %d of %d configured nodes", w.m, w.n)
	case ffNoMajority:
		return fmt.Sprintf("has no majority: %d of %d configured nodes", w.m, w.n)
	case ffAlone:
		return fmt.Sprintf("50:50 split (%d of %d nodes); the other half has no node connected to qnetd", w.m, w.n)
	case ffHeuristics:
		return fmt.Sprintf("50:50 split; better heuristics score (%d against %d)", w.a, w.b)
	case ffConnected:
		return fmt.Sprintf("50:50 split; more nodes connected to qnetd (%d against %d)", w.a, w.b)
	case ffKeepsActive:
		return "50:50 split, equal scores; it already had the vote and keeps it (keep-active-partition tie-breaker)"
	}
	return fmt.Sprintf("50:50 split, equal scores; it holds the tie-breaker node %d (%s)", w.tbNode, strings.ToLower(w.tb.String()))
}

// ffCompare reports whether partition v1 beats v2 (nil = no partition yet)
// and by which rule. The decision's explanation is the same comparison of
// the winner with the other half, so the words cannot drift from the rules.
func ffCompare(cl *Cluster, v1, v2 *ffView) (bool, ffWhy) {
	n := len(v1.cfg)
	m := len(v1.mem)
	w := ffWhy{m: m, n: n}
	if m > n/2 && (n%2 == 1 || m*2 > n) {
		w.rule = ffMajority
		return true, w
	}
	if n%2 == 1 || m < n/2 {
		w.rule = ffNoMajority
		return false, w
	}
	if v2 == nil {
		// v1's own client is connected and in v1, so v1 outscores or
		// outnumbers no partition at all.
		w.rule = ffAlone
		return true, w
	}
	score1, active1 := ffScore(cl, v1)
	score2, active2 := ffScore(cl, v2)
	if score1 != score2 {
		w.rule, w.a, w.b = ffHeuristics, score1, score2
		return score1 > score2, w
	}
	if active1 != active2 {
		w.rule, w.a, w.b = ffConnected, active1, active2
		return active1 > active2, w
	}
	if cl.KAPInForce() {
		in1 := containsNode(cl.QuoratePartition, v1.c.NodeID)
		in2 := containsNode(cl.QuoratePartition, v2.c.NodeID)
		if in1 != in2 {
			w.rule = ffKeepsActive
			return in1, w
		}
	}
	preferred, ok := tieBreakerNode(v1.c.TieBreaker, v1.cfg)
	w.rule, w.tbNode, w.tb = ffTieBreaker, preferred, v1.c.TieBreaker
	return ok && containsNode(v1.mem, preferred), w
}

func ffBetter(cl *Cluster, v1, v2 *ffView) bool {
	better, _ := ffCompare(cl, v1, v2)
	return better
}

// ffScore counts a partition's connected members (a client that is leaving
// still counts) and their heuristics: active + pass - fail. Only the
// partition's representative is scored with its candidate heuristics; its
// peers with their stored ones, as upstream does.
func ffScore(cl *Cluster, v *ffView) (score, active int) {
	if v == nil {
		return 0, 0
	}
	for _, n := range v.mem {
		o := cl.byNodeID(n.NodeID)
		if o == nil {
			continue
		}
		h := o.LastHeuristics
		if o.NodeID == v.c.NodeID {
			h = v.heur
		}
		active++
		score += 1 + h.Rank()
	}
	return score, active
}

// tieBreakerNode returns the node that wins a 50:50 split.
func tieBreakerNode(tb wire.TieBreaker, cfg []wire.NodeInfo) (uint32, bool) {
	if tb.Mode == wire.TieBreakerNodeID {
		return tb.NodeID, true
	}
	if len(cfg) == 0 {
		return 0, false
	}
	best := cfg[0].NodeID
	for _, n := range cfg[1:] {
		if (tb.Mode == wire.TieBreakerHighest) == (n.NodeID > best) {
			best = n.NodeID
		}
	}
	return best, true
}

// ffExplain says in words why best won (or why nobody did): ffCompare's
// rule between best and the first partition that is not best's. It runs
// before QuoratePartition is replaced, as the choice did.
func ffExplain(cl *Cluster, views []ffView, best *ffView) string {
	if best == nil {
		return "no partition has a majority of the configured nodes or wins the 50:50 tie"
	}
	var other *ffView
	for i := range views {
		if !containsNode(best.mem, views[i].c.NodeID) {
			other = &views[i]
			break
		}
	}
	_, why := ffCompare(cl, best, other)
	return why.String()
}
