package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Msg is one decoded message. Has records which options were present, so
// that "absent" and "zero" stay apart, as the protocol needs (e.g. a reply
// carries the seq number only when the request had one).
type Msg struct {
	Type MsgType
	Has  OptSet

	Seq                   uint32
	ClusterName           []byte
	TLSSupported          TLSSupported
	TLSClientCertRequired uint8
	SupportedMessages     []uint16
	SupportedOptions      []uint16
	ReplyErrorCode        ErrorCode
	ServerMaxRequestSize  uint32
	ServerMaxReplySize    uint32
	NodeID                uint32
	SupportedAlgorithms   []uint16
	Algorithm             Algorithm
	HeartbeatInterval     uint32
	RingID                RingID
	ConfigVersion         uint64
	DataCenterID          uint32
	NodeState             NodeState
	Nodes                 []NodeInfo // one entry per NODE_INFO option, in order
	NodeListType          NodeListType
	Vote                  Vote
	Quorate               uint8
	TieBreaker            TieBreaker
	Heuristics            Heuristics
	KAPTieBreaker         uint8
}

// OptSet is a set of option ids (bit i = option i).
type OptSet uint32

// Has reports whether o is in the set.
func (s OptSet) Has(o Opt) bool { return o <= maxOpt && s&(1<<o) != 0 }

// Set adds o.
func (s *OptSet) Set(o Opt) { *s |= 1 << o }

// Set marks o present on m and returns m, for building messages fluently.
func (m *Msg) Set(o Opt) *Msg { m.Has.Set(o); return m }

// DecodeError is returned for a malformed message. SeqValid and Seq tell
// whether a valid seq number was decoded before the failure: the error
// reply then carries it.
type DecodeError struct {
	// Err is why: one of the Err values of options.go (or one wrapping
	// it, for a part of a NODE_INFO).
	Err      error
	Opt      Opt
	Offset   int
	SeqValid bool
	Seq      uint32
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode at offset %d (option %d): %s", e.Offset, e.Opt, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ErrShort is returned by ParseHeader for fewer than HeaderSize bytes.
var ErrShort = errors.New("wire: short header")

// ParseHeader reads the type and body length from the first 6 bytes of b.
func ParseHeader(b []byte) (MsgType, uint32, error) {
	if len(b) < HeaderSize {
		return 0, 0, ErrShort
	}
	return MsgType(binary.BigEndian.Uint16(b)), binary.BigEndian.Uint32(b[2:]), nil
}

// Decode decodes one whole message (header and body). The header's length
// must match len(b)-HeaderSize; the caller framed it. Decode never panics.
// Rules (upstream's): the body must hold at least one TLV, every TLV must
// fit, known options must have their exact length and a valid value,
// unknown options are skipped, the last duplicate wins and NODE_INFO
// accumulates.
func Decode(b []byte) (*Msg, error) {
	t, n, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if int64(n) != int64(len(b)-HeaderSize) {
		return nil, &DecodeError{Err: ErrLengthMismatch}
	}
	m := &Msg{Type: t}
	body := b[HeaderSize:]
	if len(body) == 0 {
		return m, &DecodeError{Err: ErrNoOption, Offset: HeaderSize}
	}
	for pos := 0; pos < len(body); {
		if len(body)-pos < 4 {
			return m, m.decErr(ErrTruncatedOption, 0, HeaderSize+pos)
		}
		opt := Opt(binary.BigEndian.Uint16(body[pos:]))
		l := int(binary.BigEndian.Uint16(body[pos+2:]))
		if len(body)-pos-4 < l {
			return m, m.decErr(ErrOptionOverrun, opt, HeaderSize+pos)
		}
		v := body[pos+4 : pos+4+l]
		if err := m.decodeOpt(opt, v); err != nil {
			return m, m.decErr(err, opt, HeaderSize+pos)
		}
		pos += 4 + l
	}
	return m, nil
}

func (m *Msg) decErr(err error, o Opt, off int) *DecodeError {
	return &DecodeError{Err: err, Opt: o, Offset: off, SeqValid: m.Has.Has(OptSeq), Seq: m.Seq}
}

// optOrder is the order in which Append writes the options of each message
// type: upstream's order for server messages, the real client's for client
// messages. Options absent from this list are written after, ascending.
var optOrder = map[MsgType][]Opt{
	MsgPreinit:               {OptSeq, OptClusterName},
	MsgPreinitReply:          {OptSeq, OptTLSSupported, OptTLSClientCertRequired},
	MsgInit:                  {OptSeq, OptSupportedMessages, OptSupportedOptions, OptNodeID, OptAlgorithm, OptHeartbeatInterval, OptTieBreaker, OptRingID},
	MsgInitReply:             {OptReplyErrorCode, OptSupportedMessages, OptSupportedOptions, OptSeq, OptServerMaxRequestSize, OptServerMaxReplySize, OptSupportedAlgorithms},
	MsgServerError:           {OptSeq, OptReplyErrorCode},
	MsgSetOption:             {OptSeq, OptHeartbeatInterval, OptKAPTieBreaker},
	MsgSetOptionReply:        {OptSeq, OptHeartbeatInterval, OptKAPTieBreaker},
	MsgNodeList:              {OptSeq, OptNodeListType, OptRingID, OptConfigVersion, OptQuorate, OptNodeInfo, OptHeuristics},
	MsgNodeListReply:         {OptSeq, OptNodeListType, OptRingID, OptVote},
	MsgAskForVoteReply:       {OptSeq, OptVote, OptRingID},
	MsgVoteInfo:              {OptSeq, OptVote, OptRingID},
	MsgHeuristicsChange:      {OptSeq, OptHeuristics},
	MsgHeuristicsChangeReply: {OptSeq, OptVote, OptRingID, OptHeuristics},
}

// Append encodes m (header and body) onto dst.
func (m *Msg) Append(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(dst[start:], uint16(m.Type))
	var done OptSet
	for _, o := range optOrder[m.Type] {
		if m.Has.Has(o) {
			dst = m.appendOpt(dst, o)
			done.Set(o)
		}
	}
	for o := Opt(0); o <= maxOpt; o++ {
		if m.Has.Has(o) && !done.Has(o) {
			dst = m.appendOpt(dst, o)
		}
	}
	binary.BigEndian.PutUint32(dst[start+2:], uint32(len(dst)-start-HeaderSize))
	return dst
}

// String is a one-line summary for logs and test failures.
func (m *Msg) String() string {
	s := m.Type.String()
	if m.Has.Has(OptSeq) {
		s += fmt.Sprintf(" seq=%d", m.Seq)
	}
	if m.Has.Has(OptReplyErrorCode) {
		s += fmt.Sprintf(" error=%d", m.ReplyErrorCode)
	}
	if m.Has.Has(OptNodeListType) {
		s += " list=" + m.NodeListType.String()
	}
	if m.Has.Has(OptVote) {
		s += " vote=" + m.Vote.String()
	}
	if m.Has.Has(OptRingID) {
		s += " ring=" + m.RingID.String()
	}
	return s
}
