package status

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// StateGone is the state the page shows for a cluster without a connected
// node, as the Home Assistant entities do; engine.States has the others.
const StateGone = "gone"

// PlainAddr shows an address as a person knows it: an IPv4 address that
// a dual-stack listener reports in its IPv6 form ("[::ffff:192.0.2.7]:5403")
// becomes "192.0.2.7:5403"; a host without a port is unmapped the same
// way. Anything else, which includes names and real IPv6 addresses, is
// returned as it is.
func PlainAddr(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		if a := ap.Addr(); a.Is4In6() {
			return netip.AddrPortFrom(a.Unmap(), ap.Port()).String()
		}
		return addr
	}
	if a, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil && a.Is4In6() {
		return a.Unmap().String()
	}
	return addr
}

// stateTitle is the headline of a cluster's card: the state in words, and
// for a split which side holds the vote.
func stateTitle(state string, voting []uint32) string {
	switch engine.State(state) {
	case engine.StateHealthy:
		return "Healthy"
	case engine.StateDegraded:
		return "Degraded, still has the vote"
	case engine.StateSplit:
		return fmt.Sprintf("Split: %s %s the vote", nodesWord(voting), holdWord(voting))
	case engine.StateNoVote:
		return "No vote"
	case engine.StateWaiting:
		return "Waiting for a decision"
	case StateGone:
		return "Gone: no node is connected"
	}
	return state
}

func nodesWord(ids []uint32) string {
	if len(ids) == 1 {
		return "node " + joinIDs(ids)
	}
	return "nodes " + strings.ReplaceAll(joinIDs(ids), ",", ", ")
}

func holdWord(ids []uint32) string {
	if len(ids) == 1 {
		return "holds"
	}
	return "hold"
}

// voteText is a node's vote as the page words it.
func voteText(vote string) string {
	switch vote {
	case "ACK":
		return "has the vote"
	case "NACK":
		return "no vote"
	}
	return "waiting"
}

// membershipWords is a ring id in words: corosync numbers its membership
// changes, and the ring id is the number with the node that formed it.
func membershipWords(r wire.RingID) string {
	if r == (wire.RingID{}) {
		return "none reported yet"
	}
	return fmt.Sprintf("membership change %d by node %d", r.Seq, r.NodeID)
}

// heuristicsWords is the node's heuristics result in words.
func heuristicsWords(h wire.Heuristics) string {
	switch h {
	case wire.HeuristicsUndefined:
		return "not used"
	case wire.HeuristicsPass:
		return "pass"
	case wire.HeuristicsFail:
		return "fail"
	}
	return h.String()
}
