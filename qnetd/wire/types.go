// Package wire is the corosync-qnetd message codec: a 6-byte header
// (u16 type, u32 body length) followed by a stream of TLVs (u16 type,
// u16 length, value). All integers are big-endian. The package is pure: no
// I/O, no allocation beyond the decoded values, and decoding untrusted
// bytes never panics.
package wire

//go:generate go run golang.org/x/tools/cmd/stringer@v0.45.0 -linecomment -type=MsgType,TLSSupported,ErrorCode,Algorithm,NodeListType,Vote,Heuristics -output=types_string.go

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
	MsgPreinit               MsgType = 0  // Preinit
	MsgPreinitReply          MsgType = 1  // Preinit reply
	MsgStartTLS              MsgType = 2  // StartTLS
	MsgInit                  MsgType = 3  // Init
	MsgInitReply             MsgType = 4  // Init reply
	MsgServerError           MsgType = 5  // Server error
	MsgSetOption             MsgType = 6  // Set option
	MsgSetOptionReply        MsgType = 7  // Set option reply
	MsgEchoRequest           MsgType = 8  // Echo request
	MsgEchoReply             MsgType = 9  // Echo reply
	MsgNodeList              MsgType = 10 // Node list
	MsgNodeListReply         MsgType = 11 // Node list reply
	MsgAskForVote            MsgType = 12 // Ask for vote
	MsgAskForVoteReply       MsgType = 13 // Ask for vote reply
	MsgVoteInfo              MsgType = 14 // Vote info
	MsgVoteInfoReply         MsgType = 15 // Vote info reply
	MsgHeuristicsChange      MsgType = 16 // Heuristics change
	MsgHeuristicsChangeReply MsgType = 17 // Heuristics change reply
	maxMsgType                       = MsgHeuristicsChangeReply
)

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
	TLSUnsupported TLSSupported = 0 // Unsupported
	TLSSupportedOn TLSSupported = 1 // Supported
	TLSRequired    TLSSupported = 2 // Required
)

// ErrorCode is a REPLY_ERROR_CODE value.
type ErrorCode uint16

const (
	ErrNoError                         ErrorCode = 0  // no error
	ErrUnsupportedNeededMessage        ErrorCode = 1  // unsupported needed message
	ErrUnsupportedNeededOption         ErrorCode = 2  // unsupported needed option
	ErrTLSRequired                     ErrorCode = 3  // TLS required
	ErrUnsupportedMessage              ErrorCode = 4  // unsupported message
	ErrMessageTooLong                  ErrorCode = 5  // message too long
	ErrPreinitRequired                 ErrorCode = 6  // preinit required
	ErrDoesntContainRequiredOption     ErrorCode = 7  // doesn't contain required option
	ErrUnexpectedMessage               ErrorCode = 8  // unexpected message
	ErrErrorDecodingMsg                ErrorCode = 9  // error decoding message
	ErrInternalError                   ErrorCode = 10 // internal error
	ErrInitRequired                    ErrorCode = 11 // init required
	ErrUnsupportedDecisionAlgorithm    ErrorCode = 12 // unsupported decision algorithm
	ErrInvalidHeartbeatInterval        ErrorCode = 13 // invalid heartbeat interval
	ErrUnsupportedDecisionAlgorithmMsg ErrorCode = 14 // unsupported decision algorithm message
	ErrTieBreakerDiffersFromOtherNodes ErrorCode = 15 // tie-breaker differs from other nodes
	ErrAlgorithmDiffersFromOtherNodes  ErrorCode = 16 // algorithm differs from other nodes
	ErrDuplicateNodeID                 ErrorCode = 17 // duplicate node id
	ErrInvalidConfigNodeList           ErrorCode = 18 // invalid config node list
	ErrInvalidMembershipNodeList       ErrorCode = 19 // invalid membership node list
)

// Algorithm is a decision algorithm.
type Algorithm uint16

const (
	AlgoTest     Algorithm = 0 // Test
	AlgoFFSplit  Algorithm = 1 // Fifty-Fifty split
	Algo2NodeLMS Algorithm = 2 // 2 Node LMS
	AlgoLMS      Algorithm = 3 // LMS
)

// Valid reports whether the server implements a.
func (a Algorithm) Valid() bool { return a <= AlgoLMS }

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
	ListInitialConfig NodeListType = 0 // initial config
	ListChangedConfig NodeListType = 1 // changed config
	ListMembership    NodeListType = 2 // membership
	ListQuorum        NodeListType = 3 // quorum
)

// Vote is the server's answer to a node.
type Vote uint8

const (
	VoteUndefined    Vote = 0 // Undefined
	VoteACK          Vote = 1 // ACK
	VoteNACK         Vote = 2 // NACK
	VoteAskLater     Vote = 3 // Ask later
	VoteWaitForReply Vote = 4 // Wait for reply
	VoteNoChange     Vote = 5 // No change
)

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
	HeuristicsUndefined Heuristics = 0 // Undefined
	HeuristicsPass      Heuristics = 1 // Pass
	HeuristicsFail      Heuristics = 2 // Fail
)

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
