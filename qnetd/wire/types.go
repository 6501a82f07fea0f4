// Package wire is the corosync-qnetd message codec: a 6-byte header
// (u16 type, u32 body length) followed by a stream of TLVs (u16 type,
// u16 length, value). All integers are big-endian. The package is pure: no
// I/O, no allocation beyond the decoded values, and decoding untrusted
// bytes never panics.
package wire

import "fmt"

// HeaderSize is the size of the fixed message header.
const HeaderSize = 6

// Default size limits, as upstream advertises them. The real client refuses
// a server whose maximum request size is below 32768.
const (
	DefaultMaxReceiveSize = 32768
	DefaultMaxSendSize    = 32768
)

// MsgType identifies a message.
type MsgType uint16

const (
	MsgPreinit               MsgType = 0
	MsgPreinitReply          MsgType = 1
	MsgStartTLS              MsgType = 2
	MsgInit                  MsgType = 3
	MsgInitReply             MsgType = 4
	MsgServerError           MsgType = 5
	MsgSetOption             MsgType = 6
	MsgSetOptionReply        MsgType = 7
	MsgEchoRequest           MsgType = 8
	MsgEchoReply             MsgType = 9
	MsgNodeList              MsgType = 10
	MsgNodeListReply         MsgType = 11
	MsgAskForVote            MsgType = 12
	MsgAskForVoteReply       MsgType = 13
	MsgVoteInfo              MsgType = 14
	MsgVoteInfoReply         MsgType = 15
	MsgHeuristicsChange      MsgType = 16
	MsgHeuristicsChangeReply MsgType = 17
	maxMsgType                       = MsgHeuristicsChangeReply
)

var msgNames = [...]string{
	"Preinit", "Preinit reply", "StartTLS", "Init", "Init reply",
	"Server error", "Set option", "Set option reply", "Echo request", "Echo reply",
	"Node list", "Node list reply", "Ask for vote", "Ask for vote reply",
	"Vote info", "Vote info reply", "Heuristics change", "Heuristics change reply",
}

// Known reports whether t is one of the 18 message types.
func (t MsgType) Known() bool { return t <= maxMsgType }

// ServerOnly reports whether t is a type only the server sends; a client
// that sends one gets SERVER_ERROR UNEXPECTED_MESSAGE.
func (t MsgType) ServerOnly() bool {
	switch t {
	case MsgPreinitReply, MsgInitReply, MsgServerError, MsgSetOptionReply, MsgEchoReply,
		MsgNodeListReply, MsgAskForVoteReply, MsgVoteInfo, MsgHeuristicsChangeReply:
		return true
	}
	return false
}

func (t MsgType) String() string {
	if t.Known() {
		return msgNames[t]
	}
	return fmt.Sprintf("Unknown message type %d", uint16(t))
}

// AllMsgTypes lists every message type in ascending order, as the server
// advertises them in INIT_REPLY.
func AllMsgTypes() []uint16 {
	out := make([]uint16, maxMsgType+1)
	for i := range out {
		out[i] = uint16(i)
	}
	return out
}

// Opt is a TLV option id.
type Opt uint16

const (
	OptSeq                   Opt = 0
	OptClusterName           Opt = 1
	OptTLSSupported          Opt = 2
	OptTLSClientCertRequired Opt = 3
	OptSupportedMessages     Opt = 4
	OptSupportedOptions      Opt = 5
	OptReplyErrorCode        Opt = 6
	OptServerMaxRequestSize  Opt = 7
	OptServerMaxReplySize    Opt = 8
	OptNodeID                Opt = 9
	OptSupportedAlgorithms   Opt = 10
	OptAlgorithm             Opt = 11
	OptHeartbeatInterval     Opt = 12
	OptRingID                Opt = 13
	OptConfigVersion         Opt = 14
	OptDataCenterID          Opt = 15
	OptNodeState             Opt = 16
	OptNodeInfo              Opt = 17
	OptNodeListType          Opt = 18
	OptVote                  Opt = 19
	OptQuorate               Opt = 20
	OptTieBreaker            Opt = 21
	OptHeuristics            Opt = 22
	OptKAPTieBreaker         Opt = 23
	maxOpt                       = OptKAPTieBreaker
)

// AllOpts lists every option id in ascending order, as the server
// advertises them in INIT_REPLY.
func AllOpts() []uint16 {
	out := make([]uint16, maxOpt+1)
	for i := range out {
		out[i] = uint16(i)
	}
	return out
}

// TLSSupported is the server's (or client's) TLS mode.
type TLSSupported uint8

const (
	TLSUnsupported TLSSupported = 0
	TLSSupportedOn TLSSupported = 1
	TLSRequired    TLSSupported = 2
)

func (t TLSSupported) String() string {
	switch t {
	case TLSUnsupported:
		return "Unsupported"
	case TLSSupportedOn:
		return "Supported"
	case TLSRequired:
		return "Required"
	}
	return fmt.Sprintf("TLS(%d)", uint8(t))
}

// ErrorCode is a REPLY_ERROR_CODE value.
type ErrorCode uint16

const (
	ErrNoError                         ErrorCode = 0
	ErrUnsupportedNeededMessage        ErrorCode = 1
	ErrUnsupportedNeededOption         ErrorCode = 2
	ErrTLSRequired                     ErrorCode = 3
	ErrUnsupportedMessage              ErrorCode = 4
	ErrMessageTooLong                  ErrorCode = 5
	ErrPreinitRequired                 ErrorCode = 6
	ErrDoesntContainRequiredOption     ErrorCode = 7
	ErrUnexpectedMessage               ErrorCode = 8
	ErrErrorDecodingMsg                ErrorCode = 9
	ErrInternalError                   ErrorCode = 10
	ErrInitRequired                    ErrorCode = 11
	ErrUnsupportedDecisionAlgorithm    ErrorCode = 12
	ErrInvalidHeartbeatInterval        ErrorCode = 13
	ErrUnsupportedDecisionAlgorithmMsg ErrorCode = 14
	ErrTieBreakerDiffersFromOtherNodes ErrorCode = 15
	ErrAlgorithmDiffersFromOtherNodes  ErrorCode = 16
	ErrDuplicateNodeID                 ErrorCode = 17
	ErrInvalidConfigNodeList           ErrorCode = 18
	ErrInvalidMembershipNodeList       ErrorCode = 19
)

var errNames = [...]string{
	"no error", "unsupported needed message", "unsupported needed option", "TLS required",
	"unsupported message", "message too long", "preinit required",
	"doesn't contain required option", "unexpected message", "error decoding message",
	"internal error", "init required", "unsupported decision algorithm",
	"invalid heartbeat interval", "unsupported decision algorithm message",
	"tie-breaker differs from other nodes", "algorithm differs from other nodes",
	"duplicate node id", "invalid config node list", "invalid membership node list",
}

func (e ErrorCode) String() string {
	if int(e) < len(errNames) {
		return errNames[e]
	}
	return fmt.Sprintf("error code %d", uint16(e))
}

// Algorithm is a decision algorithm.
type Algorithm uint16

const (
	AlgoTest     Algorithm = 0
	AlgoFFSplit  Algorithm = 1
	Algo2NodeLMS Algorithm = 2
	AlgoLMS      Algorithm = 3
)

// Valid reports whether the server implements a.
func (a Algorithm) Valid() bool { return a <= AlgoLMS }

func (a Algorithm) String() string {
	switch a {
	case AlgoTest:
		return "Test"
	case AlgoFFSplit:
		return "Fifty-Fifty split"
	case Algo2NodeLMS:
		return "2 Node LMS"
	case AlgoLMS:
		return "LMS"
	}
	return fmt.Sprintf("Unknown algorithm %d", uint16(a))
}

// AllAlgorithms lists the algorithms the server advertises.
func AllAlgorithms() []uint16 { return []uint16{0, 1, 2, 3} }

// NodeState is a node's state in a quorum node list.
type NodeState uint8

const (
	NodeStateNotSet  NodeState = 0
	NodeStateMember  NodeState = 1
	NodeStateDead    NodeState = 2
	NodeStateLeaving NodeState = 3
)

// NodeListType says which list a NODE_LIST carries.
type NodeListType uint8

const (
	ListInitialConfig NodeListType = 0
	ListChangedConfig NodeListType = 1
	ListMembership    NodeListType = 2
	ListQuorum        NodeListType = 3
)

func (t NodeListType) String() string {
	switch t {
	case ListInitialConfig:
		return "initial config"
	case ListChangedConfig:
		return "changed config"
	case ListMembership:
		return "membership"
	case ListQuorum:
		return "quorum"
	}
	return fmt.Sprintf("node list type %d", uint8(t))
}

// Vote is the server's answer to a node.
type Vote uint8

const (
	VoteUndefined    Vote = 0
	VoteACK          Vote = 1
	VoteNACK         Vote = 2
	VoteAskLater     Vote = 3
	VoteWaitForReply Vote = 4
	VoteNoChange     Vote = 5
)

func (v Vote) String() string {
	switch v {
	case VoteUndefined:
		return "Undefined"
	case VoteACK:
		return "ACK"
	case VoteNACK:
		return "NACK"
	case VoteAskLater:
		return "Ask later"
	case VoteWaitForReply:
		return "Wait for reply"
	case VoteNoChange:
		return "No change"
	}
	return fmt.Sprintf("Vote(%d)", uint8(v))
}

// TieBreakerMode selects the node that wins a 50:50 split.
type TieBreakerMode uint8

const (
	TieBreakerLowest  TieBreakerMode = 1
	TieBreakerHighest TieBreakerMode = 2
	TieBreakerNodeID  TieBreakerMode = 3
)

// TieBreaker is the TIE_BREAKER option; NodeID is meaningful only for
// TieBreakerNodeID.
type TieBreaker struct {
	Mode   TieBreakerMode
	NodeID uint32
}

func (t TieBreaker) String() string {
	switch t.Mode {
	case TieBreakerLowest:
		return "Node with lowest node ID"
	case TieBreakerHighest:
		return "Node with highest node ID"
	case TieBreakerNodeID:
		return fmt.Sprintf("Node with node ID %d", t.NodeID)
	}
	return fmt.Sprintf("tie-breaker mode %d", uint8(t.Mode))
}

// Heuristics is a node's heuristics result. Ordering used by the
// algorithms: Pass > Undefined > Fail.
type Heuristics uint8

const (
	HeuristicsUndefined Heuristics = 0
	HeuristicsPass      Heuristics = 1
	HeuristicsFail      Heuristics = 2
)

func (h Heuristics) String() string {
	switch h {
	case HeuristicsUndefined:
		return "Undefined"
	case HeuristicsPass:
		return "Pass"
	case HeuristicsFail:
		return "Fail"
	}
	return fmt.Sprintf("Heuristics(%d)", uint8(h))
}

// Rank maps heuristics onto the algorithms' order (Fail < Undefined < Pass).
func (h Heuristics) Rank() int {
	switch h {
	case HeuristicsPass:
		return 1
	case HeuristicsFail:
		return -1
	}
	return 0
}

// RingID identifies a corosync membership ring.
type RingID struct {
	NodeID uint32
	Seq    uint64
}

func (r RingID) String() string { return fmt.Sprintf("%x.%x", r.NodeID, r.Seq) }

// NodeInfo is one entry of a node list.
type NodeInfo struct {
	NodeID       uint32
	DataCenterID uint32
	State        NodeState
}
