// Package client is a protocol-level corosync-qdevice and the story
// harness built on it. Node is the state machine: it builds the messages
// the real client sends, in the same order and with the same options, and
// it is the one interpreter of what a server sends back (votes, errors,
// readiness, echo replies, the answer to a pending request). Conn runs a
// Node over TCP (optionally with STARTTLS) for tests and the benchmark.
//
// Stories (story.go) drive simulated nodes through a Runner, one file per
// command (cmd_NAME.go), and print the votes every node holds after each
// block of commands. A Transport carries the messages: EngineTransport to
// an engine in-process (exact and instant, on a virtual clock),
// TCPTransport to any server over TCP (our binary, or Debian's
// corosync-qnetd for the differential test).
package client

import (
	"fmt"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

//go:generate go run golang.org/x/tools/cmd/stringer@v0.45.0 -linecomment -type=Vote

// Vote is what a node currently tells votequorum.
type Vote uint8

const (
	// NoVote: the node does not cast the qdevice vote (after ASK_LATER or
	// WAIT_FOR_REPLY, or before any answer).
	NoVote Vote = iota // -
	// Ack: the node casts the qdevice vote.
	Ack // ACK
	// Nack: the node tells votequorum "no".
	Nack // NACK
)

// Settings is a node's quorum.device.net configuration.
type Settings struct {
	Cluster    string
	NodeID     uint32
	Algorithm  wire.Algorithm
	TieBreaker wire.TieBreaker
	Heartbeat  uint32 // ms
	KAP        bool   // keep_active_partition_tie_breaker (the real client's default: on)
	TLS        wire.TLSSupported
}

// Node is the client state machine.
type Node struct {
	Settings
	seq      uint32
	echoSeq  uint32
	ring     wire.RingID // last ring id sent to the server
	vote     Vote
	voteRing wire.RingID // ring of the message that set vote
	hold     bool
	held     []*wire.Msg // VOTE_INFO replies not sent while holding
	serverOp wire.OptSet // options the server listed in INIT_REPLY (bits)

	// Per connection: whether INIT was accepted, and the request whose
	// reply Handle watches for.
	ready    bool
	awaiting *wire.Msg
	answered bool
	echoSeen uint32 // seq of the last ECHO_REPLY

	// Log receives every non-echo message from the server, in order.
	Log []*wire.Msg
	// Errors describes every error answer (SERVER_ERROR, INIT_REPLY error).
	Errors []string
	// VoteInfos counts VOTE_INFO messages received.
	VoteInfos int
}

// NewNode creates a node.
func NewNode(s Settings) *Node { return &Node{Settings: s} }

// Vote returns the vote the node holds.
func (n *Node) Vote() Vote { return n.vote }

// EffectiveVote is the vote votequorum accepts: votequorum takes a qdevice
// vote only for the current ring, so a vote given for an older ring than
// the one the node last reported counts as no vote.
func (n *Node) EffectiveVote() Vote {
	if n.voteRing != n.ring {
		return NoVote
	}
	return n.vote
}

// Disconnected resets the vote: corosync-qdevice stops casting it when its
// connection to qnetd is gone.
func (n *Node) Disconnected() { n.vote = NoVote }

// opened starts a connection: nothing of the previous connection's
// handshake counts.
func (n *Node) opened() { n.ready, n.awaiting, n.answered = false, nil, false }

// Ready reports whether the server accepted the node's INIT on this
// connection; from then on the real client sends heartbeats.
func (n *Node) Ready() bool { return n.ready }

// Await makes Handle watch for the reply to request m (nil: none);
// Answered reports when it has come.
func (n *Node) Await(m *wire.Msg) { n.awaiting, n.answered = m, false }

// Answered reports whether the reply to the awaited request has come (the
// direct reply, or an error carrying its seq).
func (n *Node) Answered() bool { return n.answered }

// EchoReplied is the seq of the last ECHO_REPLY the node received.
func (n *Node) EchoReplied() uint32 { return n.echoSeen }

// Ring returns the last ring id the node sent.
func (n *Node) Ring() wire.RingID { return n.ring }

// Hold stops (true) or resumes (false) answering VOTE_INFO; on resume the
// held replies are returned, to be sent in order.
func (n *Node) Hold(on bool) []*wire.Msg {
	n.hold = on
	if on {
		return nil
	}
	out := n.held
	n.held = nil
	return out
}

func (n *Node) next(t wire.MsgType) *wire.Msg {
	n.seq++
	m := &wire.Msg{Type: t, Seq: n.seq}
	m.Set(wire.OptSeq)
	return m
}

// Preinit is the first message.
func (n *Node) Preinit() *wire.Msg {
	m := n.next(wire.MsgPreinit)
	m.ClusterName = []byte(n.Cluster)
	return m.Set(wire.OptClusterName)
}

// StartTLS asks to switch the connection to TLS.
func (n *Node) StartTLS() *wire.Msg { return n.next(wire.MsgStartTLS) }

// Init announces the node; ring is the ring id the node knows now.
func (n *Node) Init(ring wire.RingID) *wire.Msg {
	n.ring = ring
	m := n.next(wire.MsgInit)
	m.SupportedMessages, m.SupportedOptions = wire.AllMsgTypes(), wire.AllOpts()
	m.NodeID, m.Algorithm, m.HeartbeatInterval, m.TieBreaker, m.RingID = n.NodeID, n.Algorithm, n.Heartbeat, n.TieBreaker, ring
	return m.Set(wire.OptSupportedMessages).Set(wire.OptSupportedOptions).Set(wire.OptNodeID).
		Set(wire.OptAlgorithm).Set(wire.OptHeartbeatInterval).Set(wire.OptTieBreaker).Set(wire.OptRingID)
}

// SetOptionKAP is sent right after INIT when the server lists option 23.
func (n *Node) SetOptionKAP() *wire.Msg {
	m := n.next(wire.MsgSetOption)
	if n.KAP {
		m.KAPTieBreaker = 1
	}
	return m.Set(wire.OptKAPTieBreaker)
}

// ServerSupportsKAP reports whether INIT_REPLY listed option 23.
func (n *Node) ServerSupportsKAP() bool { return n.serverOp.Has(wire.OptKAPTieBreaker) }

// Config sends the configuration node list.
func (n *Node) Config(nodes []wire.NodeInfo, initial bool, version *uint64) *wire.Msg {
	m := n.next(wire.MsgNodeList)
	m.NodeListType = wire.ListChangedConfig
	if initial {
		m.NodeListType = wire.ListInitialConfig
	}
	m.Set(wire.OptNodeListType)
	if version != nil {
		m.ConfigVersion = *version
		m.Set(wire.OptConfigVersion)
	}
	m.Nodes = nodes
	if len(nodes) > 0 {
		m.Set(wire.OptNodeInfo)
	}
	return m
}

// Membership sends a new membership and ring.
func (n *Node) Membership(ring wire.RingID, nodes []wire.NodeInfo, h wire.Heuristics) *wire.Msg {
	n.ring = ring
	m := n.next(wire.MsgNodeList)
	m.NodeListType, m.RingID, m.Nodes = wire.ListMembership, ring, nodes
	m.Set(wire.OptNodeListType).Set(wire.OptRingID)
	if len(nodes) > 0 {
		m.Set(wire.OptNodeInfo)
	}
	if h != wire.HeuristicsUndefined {
		m.Heuristics = h
		m.Set(wire.OptHeuristics)
	}
	return m
}

// Quorum sends the quorum node list.
func (n *Node) Quorum(quorate bool, nodes []wire.NodeInfo) *wire.Msg {
	m := n.next(wire.MsgNodeList)
	m.NodeListType, m.Nodes = wire.ListQuorum, nodes
	if quorate {
		m.Quorate = 1
	}
	m.Set(wire.OptNodeListType).Set(wire.OptQuorate)
	if len(nodes) > 0 {
		m.Set(wire.OptNodeInfo)
	}
	return m
}

// HeuristicsChange reports a new heuristics result.
func (n *Node) HeuristicsChange(h wire.Heuristics) *wire.Msg {
	m := n.next(wire.MsgHeuristicsChange)
	m.Heuristics = h
	return m.Set(wire.OptHeuristics)
}

// AskForVote asks for the current vote (the stock client never does).
func (n *Node) AskForVote() *wire.Msg { return n.next(wire.MsgAskForVote) }

// Echo builds the next heartbeat.
func (n *Node) Echo() *wire.Msg {
	n.echoSeq++
	m := &wire.Msg{Type: wire.MsgEchoRequest, Seq: n.echoSeq}
	return m.Set(wire.OptSeq)
}

// Handle is the one interpreter of what a server sends: it processes a
// message (vote, errors, readiness, echo reply, the awaited reply) and
// returns the answer the real client would send (a VOTE_INFO_REPLY), or
// nil. Every transport and Conn hand it every message they read.
func (n *Node) Handle(m *wire.Msg) *wire.Msg {
	if m.Type == wire.MsgEchoReply {
		n.echoSeen = m.Seq
		return nil
	}
	n.Log = append(n.Log, m)
	if n.awaiting != nil && IsReplyTo(m, n.awaiting.Type, n.awaiting.Seq) {
		n.answered = true
	}
	switch m.Type {
	case wire.MsgServerError:
		n.Errors = append(n.Errors, fmt.Sprintf("server error %d (%s)", m.ReplyErrorCode, m.ReplyErrorCode))
	case wire.MsgInitReply:
		if m.ReplyErrorCode != 0 {
			n.Errors = append(n.Errors, fmt.Sprintf("init refused %d (%s)", m.ReplyErrorCode, m.ReplyErrorCode))
		} else {
			n.ready = true
		}
		for _, o := range m.SupportedOptions {
			if o <= 31 {
				n.serverOp |= 1 << o
			}
		}
	case wire.MsgNodeListReply, wire.MsgAskForVoteReply, wire.MsgHeuristicsChangeReply:
		n.applyVote(m)
	case wire.MsgVoteInfo:
		n.VoteInfos++
		n.applyVote(m)
		r := &wire.Msg{Type: wire.MsgVoteInfoReply, Seq: m.Seq}
		r.Set(wire.OptSeq)
		if n.hold {
			n.held = append(n.held, r)
			return nil
		}
		return r
	}
	return nil
}

// applyVote follows the real client: a vote for another ring than the one
// the node last sent is ignored; ASK_LATER and WAIT_FOR_REPLY stop the vote.
func (n *Node) applyVote(m *wire.Msg) {
	if !m.Has.Has(wire.OptVote) || (m.Has.Has(wire.OptRingID) && m.RingID != n.ring) {
		return
	}
	switch m.Vote {
	case wire.VoteACK:
		n.vote, n.voteRing = Ack, n.ring
	case wire.VoteNACK:
		n.vote, n.voteRing = Nack, n.ring
	case wire.VoteAskLater, wire.VoteWaitForReply:
		n.vote, n.voteRing = NoVote, n.ring
	}
}

// IsReplyTo reports whether m answers the request with seq s (the direct
// reply or an error carrying its seq).
func IsReplyTo(m *wire.Msg, reqType wire.MsgType, s uint32) bool {
	if !m.Has.Has(wire.OptSeq) || m.Seq != s {
		return false
	}
	switch m.Type {
	case wire.MsgServerError:
		return true
	case wire.MsgPreinitReply:
		return reqType == wire.MsgPreinit
	case wire.MsgInitReply:
		return reqType == wire.MsgInit
	case wire.MsgSetOptionReply:
		return reqType == wire.MsgSetOption
	case wire.MsgNodeListReply:
		return reqType == wire.MsgNodeList
	case wire.MsgAskForVoteReply:
		return reqType == wire.MsgAskForVote
	case wire.MsgHeuristicsChangeReply:
		return reqType == wire.MsgHeuristicsChange
	}
	return false
}
