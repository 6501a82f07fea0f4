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
	Reason   string
	Opt      Opt
	Offset   int
	SeqValid bool
	Seq      uint32
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode at offset %d (option %d): %s", e.Offset, e.Opt, e.Reason)
}

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
		return nil, &DecodeError{Reason: "length field does not match message size"}
	}
	m := &Msg{Type: t}
	body := b[HeaderSize:]
	if len(body) == 0 {
		return m, &DecodeError{Reason: "message has no option", Offset: HeaderSize}
	}
	for pos := 0; pos < len(body); {
		if len(body)-pos < 4 {
			return m, m.decErr("truncated option header", 0, HeaderSize+pos)
		}
		opt := Opt(binary.BigEndian.Uint16(body[pos:]))
		l := int(binary.BigEndian.Uint16(body[pos+2:]))
		if len(body)-pos-4 < l {
			return m, m.decErr("option value overruns the message", opt, HeaderSize+pos)
		}
		v := body[pos+4 : pos+4+l]
		if reason := m.decodeOpt(opt, v); reason != "" {
			return m, m.decErr(reason, opt, HeaderSize+pos)
		}
		pos += 4 + l
	}
	return m, nil
}

func (m *Msg) decErr(reason string, o Opt, off int) *DecodeError {
	return &DecodeError{Reason: reason, Opt: o, Offset: off, SeqValid: m.Has.Has(OptSeq), Seq: m.Seq}
}

func u8(v []byte, min, max uint8) (uint8, string) {
	if len(v) != 1 {
		return 0, "wrong length"
	}
	if v[0] < min || v[0] > max {
		return 0, "value out of range"
	}
	return v[0], ""
}

func u16s(v []byte) ([]uint16, string) {
	if len(v)%2 != 0 {
		return nil, "odd length for a u16 array"
	}
	out := make([]uint16, len(v)/2)
	for i := range out {
		out[i] = binary.BigEndian.Uint16(v[2*i:])
	}
	return out, ""
}

func fixed(v []byte, n int) string {
	if len(v) != n {
		return "wrong length"
	}
	return ""
}

// decodeOpt stores one option; it returns a non-empty reason on failure.
func (m *Msg) decodeOpt(o Opt, v []byte) string {
	var r string
	switch o {
	case OptSeq:
		if r = fixed(v, 4); r == "" {
			m.Seq = binary.BigEndian.Uint32(v)
		}
	case OptClusterName:
		m.ClusterName = append([]byte{}, v...)
	case OptTLSSupported:
		var x uint8
		x, r = u8(v, 0, 2)
		m.TLSSupported = TLSSupported(x)
	case OptTLSClientCertRequired:
		m.TLSClientCertRequired, r = u8(v, 0, 255)
	case OptSupportedMessages:
		m.SupportedMessages, r = u16s(v)
	case OptSupportedOptions:
		m.SupportedOptions, r = u16s(v)
	case OptReplyErrorCode:
		if r = fixed(v, 2); r == "" {
			m.ReplyErrorCode = ErrorCode(binary.BigEndian.Uint16(v))
		}
	case OptServerMaxRequestSize:
		if r = fixed(v, 4); r == "" {
			m.ServerMaxRequestSize = binary.BigEndian.Uint32(v)
		}
	case OptServerMaxReplySize:
		if r = fixed(v, 4); r == "" {
			m.ServerMaxReplySize = binary.BigEndian.Uint32(v)
		}
	case OptNodeID:
		if r = fixed(v, 4); r == "" {
			m.NodeID = binary.BigEndian.Uint32(v)
		}
	case OptSupportedAlgorithms:
		m.SupportedAlgorithms, r = u16s(v)
	case OptAlgorithm:
		if r = fixed(v, 2); r == "" {
			m.Algorithm = Algorithm(binary.BigEndian.Uint16(v))
		}
	case OptHeartbeatInterval:
		if r = fixed(v, 4); r == "" {
			m.HeartbeatInterval = binary.BigEndian.Uint32(v)
		}
	case OptRingID:
		if r = fixed(v, 12); r == "" {
			m.RingID = RingID{NodeID: binary.BigEndian.Uint32(v), Seq: binary.BigEndian.Uint64(v[4:])}
		}
	case OptConfigVersion:
		if r = fixed(v, 8); r == "" {
			m.ConfigVersion = binary.BigEndian.Uint64(v)
		}
	case OptDataCenterID:
		if r = fixed(v, 4); r == "" {
			m.DataCenterID = binary.BigEndian.Uint32(v)
		}
	case OptNodeState:
		var x uint8
		x, r = u8(v, 1, 3)
		m.NodeState = NodeState(x)
	case OptNodeInfo:
		var ni NodeInfo
		if ni, r = decodeNodeInfo(v); r == "" {
			m.Nodes = append(m.Nodes, ni)
		}
	case OptNodeListType:
		var x uint8
		x, r = u8(v, 0, 3)
		m.NodeListType = NodeListType(x)
	case OptVote:
		var x uint8
		x, r = u8(v, 1, 5)
		m.Vote = Vote(x)
	case OptQuorate:
		m.Quorate, r = u8(v, 0, 1)
	case OptTieBreaker:
		if r = fixed(v, 5); r == "" {
			mode := TieBreakerMode(v[0])
			if mode < TieBreakerLowest || mode > TieBreakerNodeID {
				return "tie-breaker mode out of range"
			}
			m.TieBreaker = TieBreaker{Mode: mode}
			if mode == TieBreakerNodeID {
				m.TieBreaker.NodeID = binary.BigEndian.Uint32(v[1:])
			}
		}
	case OptHeuristics:
		var x uint8
		x, r = u8(v, 1, 2)
		m.Heuristics = Heuristics(x)
	case OptKAPTieBreaker:
		m.KAPTieBreaker, r = u8(v, 0, 1)
	default:
		return "" // unknown options are skipped for forward compatibility
	}
	if r == "" {
		m.Has.Set(o)
	}
	return r
}

func decodeNodeInfo(v []byte) (NodeInfo, string) {
	var ni NodeInfo
	if len(v) == 0 {
		return ni, "empty node info"
	}
	for pos := 0; pos < len(v); {
		if len(v)-pos < 4 {
			return ni, "truncated node info"
		}
		o := Opt(binary.BigEndian.Uint16(v[pos:]))
		l := int(binary.BigEndian.Uint16(v[pos+2:]))
		if len(v)-pos-4 < l {
			return ni, "node info option overruns"
		}
		x := v[pos+4 : pos+4+l]
		switch o {
		case OptNodeID:
			if fixed(x, 4) != "" {
				return ni, "node info: wrong node id length"
			}
			ni.NodeID = binary.BigEndian.Uint32(x)
		case OptDataCenterID:
			if fixed(x, 4) != "" {
				return ni, "node info: wrong data center id length"
			}
			ni.DataCenterID = binary.BigEndian.Uint32(x)
		case OptNodeState:
			s, r := u8(x, 1, 3)
			if r != "" {
				return ni, "node info: node state " + r
			}
			ni.State = NodeState(s)
		}
		pos += 4 + l
	}
	if ni.NodeID == 0 {
		return ni, "node info without node id"
	}
	return ni, ""
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

// Size returns the encoded size of m, header included.
func (m *Msg) Size() int { return len(m.Append(nil)) }

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

func appendTLV(dst []byte, o Opt, v ...byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(o))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	return append(dst, v...)
}

func appendU32(dst []byte, o Opt, x uint32) []byte {
	return appendTLV(dst, o, binary.BigEndian.AppendUint32(nil, x)...)
}

func appendU16(dst []byte, o Opt, x uint16) []byte {
	return appendTLV(dst, o, binary.BigEndian.AppendUint16(nil, x)...)
}

func appendU16s(dst []byte, o Opt, xs []uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(o))
	dst = binary.BigEndian.AppendUint16(dst, uint16(2*len(xs)))
	for _, x := range xs {
		dst = binary.BigEndian.AppendUint16(dst, x)
	}
	return dst
}

func (m *Msg) appendOpt(dst []byte, o Opt) []byte {
	switch o {
	case OptSeq:
		return appendU32(dst, o, m.Seq)
	case OptClusterName:
		return appendTLV(dst, o, m.ClusterName...)
	case OptTLSSupported:
		return appendTLV(dst, o, byte(m.TLSSupported))
	case OptTLSClientCertRequired:
		return appendTLV(dst, o, m.TLSClientCertRequired)
	case OptSupportedMessages:
		return appendU16s(dst, o, m.SupportedMessages)
	case OptSupportedOptions:
		return appendU16s(dst, o, m.SupportedOptions)
	case OptReplyErrorCode:
		return appendU16(dst, o, uint16(m.ReplyErrorCode))
	case OptServerMaxRequestSize:
		return appendU32(dst, o, m.ServerMaxRequestSize)
	case OptServerMaxReplySize:
		return appendU32(dst, o, m.ServerMaxReplySize)
	case OptNodeID:
		return appendU32(dst, o, m.NodeID)
	case OptSupportedAlgorithms:
		return appendU16s(dst, o, m.SupportedAlgorithms)
	case OptAlgorithm:
		return appendU16(dst, o, uint16(m.Algorithm))
	case OptHeartbeatInterval:
		return appendU32(dst, o, m.HeartbeatInterval)
	case OptRingID:
		v := binary.BigEndian.AppendUint32(make([]byte, 0, 12), m.RingID.NodeID)
		return appendTLV(dst, o, binary.BigEndian.AppendUint64(v, m.RingID.Seq)...)
	case OptConfigVersion:
		return appendTLV(dst, o, binary.BigEndian.AppendUint64(nil, m.ConfigVersion)...)
	case OptDataCenterID:
		return appendU32(dst, o, m.DataCenterID)
	case OptNodeState:
		return appendTLV(dst, o, byte(m.NodeState))
	case OptNodeInfo:
		for _, n := range m.Nodes {
			inner := appendU32(nil, OptNodeID, n.NodeID)
			if n.DataCenterID != 0 {
				inner = appendU32(inner, OptDataCenterID, n.DataCenterID)
			}
			if n.State != NodeStateNotSet {
				inner = appendTLV(inner, OptNodeState, byte(n.State))
			}
			dst = appendTLV(dst, o, inner...)
		}
		return dst
	case OptNodeListType:
		return appendTLV(dst, o, byte(m.NodeListType))
	case OptVote:
		return appendTLV(dst, o, byte(m.Vote))
	case OptQuorate:
		return appendTLV(dst, o, m.Quorate)
	case OptTieBreaker:
		id := uint32(0)
		if m.TieBreaker.Mode == TieBreakerNodeID {
			id = m.TieBreaker.NodeID
		}
		return appendTLV(dst, o, append([]byte{byte(m.TieBreaker.Mode)}, binary.BigEndian.AppendUint32(nil, id)...)...)
	case OptHeuristics:
		return appendTLV(dst, o, byte(m.Heuristics))
	case OptKAPTieBreaker:
		return appendTLV(dst, o, m.KAPTieBreaker)
	}
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
