package wire

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// Why a message does not decode. A DecodeError carries one of these (or
// wraps one, for a NODE_INFO part), so callers compare values, not words.
var (
	ErrLengthMismatch    = errors.New("length field does not match message size")
	ErrNoOption          = errors.New("message has no option")
	ErrTruncatedOption   = errors.New("truncated option header")
	ErrOptionOverrun     = errors.New("option value overruns the message")
	ErrWrongLength       = errors.New("wrong length")
	ErrOutOfRange        = errors.New("value out of range")
	ErrOddLength         = errors.New("odd length for a u16 array")
	ErrTieBreakerMode    = errors.New("tie-breaker mode out of range")
	ErrEmptyNodeInfo     = errors.New("empty node info")
	ErrTruncatedNodeInfo = errors.New("truncated node info")
	ErrNodeInfoOverrun   = errors.New("node info option overruns")
	ErrNodeInfoNoNodeID  = errors.New("node info without node id")
)

// optCodec is everything the codec knows about one option: how to store
// its value in a Msg, how long its TLVs are and how to write them. Each
// option is described once, in optCodecs.
type optCodec struct {
	decode func(m *Msg, v []byte) error
	size   func(m *Msg) int // the option's TLVs, headers included
	append func(m *Msg, dst []byte, o Opt) []byte
}

// optCodecs describes every known option; other options are skipped when
// decoding, for forward compatibility.
var optCodecs = [maxOpt + 1]optCodec{
	OptSeq:                   u32Opt(func(m *Msg) *uint32 { return &m.Seq }),
	OptClusterName:           bytesOpt(func(m *Msg) *[]byte { return &m.ClusterName }),
	OptTLSSupported:          u8Opt(0, 2, func(m *Msg) *TLSSupported { return &m.TLSSupported }),
	OptTLSClientCertRequired: u8Opt(0, 255, func(m *Msg) *uint8 { return &m.TLSClientCertRequired }),
	OptSupportedMessages:     u16sOpt(func(m *Msg) *[]uint16 { return &m.SupportedMessages }),
	OptSupportedOptions:      u16sOpt(func(m *Msg) *[]uint16 { return &m.SupportedOptions }),
	OptReplyErrorCode:        u16Opt(func(m *Msg) *ErrorCode { return &m.ReplyErrorCode }),
	OptServerMaxRequestSize:  u32Opt(func(m *Msg) *uint32 { return &m.ServerMaxRequestSize }),
	OptServerMaxReplySize:    u32Opt(func(m *Msg) *uint32 { return &m.ServerMaxReplySize }),
	OptNodeID:                nodeIDOpt,
	OptSupportedAlgorithms:   u16sOpt(func(m *Msg) *[]uint16 { return &m.SupportedAlgorithms }),
	OptAlgorithm:             u16Opt(func(m *Msg) *Algorithm { return &m.Algorithm }),
	OptHeartbeatInterval:     u32Opt(func(m *Msg) *uint32 { return &m.HeartbeatInterval }),
	OptRingID:                ringOpt,
	OptConfigVersion:         u64Opt(func(m *Msg) *uint64 { return &m.ConfigVersion }),
	OptDataCenterID:          dataCenterIDOpt,
	OptNodeState:             nodeStateOpt,
	OptNodeInfo:              nodeInfoOpt,
	OptNodeListType:          u8Opt(0, 3, func(m *Msg) *NodeListType { return &m.NodeListType }),
	OptVote:                  u8Opt(1, 5, func(m *Msg) *Vote { return &m.Vote }),
	OptQuorate:               u8Opt(0, 1, func(m *Msg) *uint8 { return &m.Quorate }),
	OptTieBreaker:            tieBreakerOpt,
	OptHeuristics:            u8Opt(1, 2, func(m *Msg) *Heuristics { return &m.Heuristics }),
	OptKAPTieBreaker:         u8Opt(0, 1, func(m *Msg) *uint8 { return &m.KAPTieBreaker }),
}

// The options that also appear inside a NODE_INFO.
var (
	nodeIDOpt       = u32Opt(func(m *Msg) *uint32 { return &m.NodeID })
	dataCenterIDOpt = u32Opt(func(m *Msg) *uint32 { return &m.DataCenterID })
	nodeStateOpt    = u8Opt(1, 3, func(m *Msg) *NodeState { return &m.NodeState })
)

func tlvHeader(dst []byte, o Opt, n int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(o))
	return binary.BigEndian.AppendUint16(dst, uint16(n))
}

// fixedOpt is an option of n bytes.
func fixedOpt(n int, get func(v []byte, m *Msg) error, put func(m *Msg, dst []byte) []byte) optCodec {
	return optCodec{
		decode: func(m *Msg, v []byte) error {
			if len(v) != n {
				return ErrWrongLength
			}
			return get(v, m)
		},
		size:   func(*Msg) int { return 4 + n },
		append: func(m *Msg, dst []byte, o Opt) []byte { return put(m, tlvHeader(dst, o, n)) },
	}
}

func u8Opt[T ~uint8](lo, hi T, f func(*Msg) *T) optCodec {
	return fixedOpt(1, func(v []byte, m *Msg) error {
		if T(v[0]) < lo || T(v[0]) > hi {
			return ErrOutOfRange
		}
		*f(m) = T(v[0])
		return nil
	}, func(m *Msg, dst []byte) []byte { return append(dst, byte(*f(m))) })
}

func u16Opt[T ~uint16](f func(*Msg) *T) optCodec {
	return fixedOpt(2, func(v []byte, m *Msg) error {
		*f(m) = T(binary.BigEndian.Uint16(v))
		return nil
	}, func(m *Msg, dst []byte) []byte { return binary.BigEndian.AppendUint16(dst, uint16(*f(m))) })
}

func u32Opt(f func(*Msg) *uint32) optCodec {
	return fixedOpt(4, func(v []byte, m *Msg) error {
		*f(m) = binary.BigEndian.Uint32(v)
		return nil
	}, func(m *Msg, dst []byte) []byte { return binary.BigEndian.AppendUint32(dst, *f(m)) })
}

func u64Opt(f func(*Msg) *uint64) optCodec {
	return fixedOpt(8, func(v []byte, m *Msg) error {
		*f(m) = binary.BigEndian.Uint64(v)
		return nil
	}, func(m *Msg, dst []byte) []byte { return binary.BigEndian.AppendUint64(dst, *f(m)) })
}

var ringOpt = fixedOpt(12, func(v []byte, m *Msg) error {
	m.RingID = RingID{NodeID: binary.BigEndian.Uint32(v), Seq: binary.BigEndian.Uint64(v[4:])}
	return nil
}, func(m *Msg, dst []byte) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(dst, m.RingID.NodeID), m.RingID.Seq)
})

// tieBreakerOpt: a mode byte and a node id, which only the node-id mode
// uses (written as 0 otherwise).
var tieBreakerOpt = fixedOpt(5, func(v []byte, m *Msg) error {
	mode := TieBreakerMode(v[0])
	if mode < TieBreakerLowest || mode > TieBreakerNodeID {
		return ErrTieBreakerMode
	}
	m.TieBreaker = TieBreaker{Mode: mode}
	if mode == TieBreakerNodeID {
		m.TieBreaker.NodeID = binary.BigEndian.Uint32(v[1:])
	}
	return nil
}, func(m *Msg, dst []byte) []byte {
	id := uint32(0)
	if m.TieBreaker.Mode == TieBreakerNodeID {
		id = m.TieBreaker.NodeID
	}
	return binary.BigEndian.AppendUint32(append(dst, byte(m.TieBreaker.Mode)), id)
})

func bytesOpt(f func(*Msg) *[]byte) optCodec {
	return optCodec{
		decode: func(m *Msg, v []byte) error { *f(m) = append([]byte{}, v...); return nil },
		size:   func(m *Msg) int { return 4 + len(*f(m)) },
		append: func(m *Msg, dst []byte, o Opt) []byte { return append(tlvHeader(dst, o, len(*f(m))), *f(m)...) },
	}
}

func u16sOpt(f func(*Msg) *[]uint16) optCodec {
	return optCodec{
		decode: func(m *Msg, v []byte) error {
			if len(v)%2 != 0 {
				return ErrOddLength
			}
			out := make([]uint16, len(v)/2)
			for i := range out {
				out[i] = binary.BigEndian.Uint16(v[2*i:])
			}
			*f(m) = out
			return nil
		},
		size: func(m *Msg) int { return 4 + 2*len(*f(m)) },
		append: func(m *Msg, dst []byte, o Opt) []byte {
			dst = tlvHeader(dst, o, 2*len(*f(m)))
			for _, x := range *f(m) {
				dst = binary.BigEndian.AppendUint16(dst, x)
			}
			return dst
		},
	}
}

// nodeInfoOpt: one TLV per node, each holding the node's own options
// (node id always; data center and state when set). NODE_INFO options
// accumulate.
var nodeInfoOpt = optCodec{
	decode: func(m *Msg, v []byte) error {
		ni, err := decodeNodeInfo(v)
		if err == nil {
			m.Nodes = append(m.Nodes, ni)
		}
		return err
	},
	size: func(m *Msg) int {
		n := 0
		for _, ni := range m.Nodes {
			n += 4 + nodeInfoLen(ni)
		}
		return n
	},
	append: func(m *Msg, dst []byte, o Opt) []byte {
		for _, ni := range m.Nodes {
			dst = tlvHeader(dst, o, nodeInfoLen(ni))
			dst = binary.BigEndian.AppendUint32(tlvHeader(dst, OptNodeID, 4), ni.NodeID)
			if ni.DataCenterID != 0 {
				dst = binary.BigEndian.AppendUint32(tlvHeader(dst, OptDataCenterID, 4), ni.DataCenterID)
			}
			if ni.State != NodeStateNotSet {
				dst = append(tlvHeader(dst, OptNodeState, 1), byte(ni.State))
			}
		}
		return dst
	},
}

func nodeInfoLen(ni NodeInfo) int {
	n := 8
	if ni.DataCenterID != 0 {
		n += 8
	}
	if ni.State != NodeStateNotSet {
		n += 5
	}
	return n
}

// decodeNodeInfo reads the options inside a NODE_INFO with the same
// codecs as at the top level; unknown ones are skipped.
func decodeNodeInfo(v []byte) (NodeInfo, error) {
	var ni NodeInfo
	if len(v) == 0 {
		return ni, ErrEmptyNodeInfo
	}
	var inner Msg
	for pos := 0; pos < len(v); {
		if len(v)-pos < 4 {
			return ni, ErrTruncatedNodeInfo
		}
		o := Opt(binary.BigEndian.Uint16(v[pos:]))
		l := int(binary.BigEndian.Uint16(v[pos+2:]))
		if len(v)-pos-4 < l {
			return ni, ErrNodeInfoOverrun
		}
		var c *optCodec
		switch o {
		case OptNodeID:
			c = &nodeIDOpt
		case OptDataCenterID:
			c = &dataCenterIDOpt
		case OptNodeState:
			c = &nodeStateOpt
		}
		if c != nil {
			if err := c.decode(&inner, v[pos+4:pos+4+l]); err != nil {
				return ni, &nodeInfoError{o, err}
			}
		}
		pos += 4 + l
	}
	ni = NodeInfo{NodeID: inner.NodeID, DataCenterID: inner.DataCenterID, State: inner.NodeState}
	if ni.NodeID == 0 {
		return ni, ErrNodeInfoNoNodeID
	}
	return ni, nil
}

// nodeInfoError is a bad option inside a NODE_INFO.
type nodeInfoError struct {
	opt Opt
	err error
}

func (e *nodeInfoError) Error() string {
	return "node info: option " + strconv.Itoa(int(e.opt)) + ": " + e.err.Error()
}

func (e *nodeInfoError) Unwrap() error { return e.err }

// decodeOpt stores one option.
func (m *Msg) decodeOpt(o Opt, v []byte) error {
	if int(o) >= len(optCodecs) || optCodecs[o].decode == nil {
		return nil // unknown options are skipped for forward compatibility
	}
	if err := optCodecs[o].decode(m, v); err != nil {
		return err
	}
	m.Has.Set(o)
	return nil
}

func (m *Msg) appendOpt(dst []byte, o Opt) []byte {
	if int(o) >= len(optCodecs) || optCodecs[o].append == nil {
		return dst
	}
	return optCodecs[o].append(m, dst, o)
}

// Len returns the encoded size of m, header included, without encoding
// it.
func (m *Msg) Len() int {
	n := HeaderSize
	for o := range optCodecs {
		if m.Has.Has(Opt(o)) && optCodecs[o].size != nil {
			n += optCodecs[o].size(m)
		}
	}
	return n
}
