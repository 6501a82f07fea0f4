package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ---- helpers ---------------------------------------------------------------

// tlv builds one raw TLV; the length is len(v) (callers that need a lying
// length use rawTLV).
func tlv(o uint16, v ...byte) []byte {
	return rawTLV(o, uint16(len(v)), v...)
}

// rawTLV builds a TLV whose length field is l whatever len(v) is.
func rawTLV(o, l uint16, v ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, o)
	b = binary.BigEndian.AppendUint16(b, l)
	return append(b, v...)
}

func be16(x uint16) []byte { return binary.BigEndian.AppendUint16(nil, x) }
func be32(x uint32) []byte { return binary.BigEndian.AppendUint32(nil, x) }
func be64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// frame builds a whole message: header (with the right body length) and
// the concatenated parts as body.
func frame(t MsgType, parts ...[]byte) []byte {
	body := cat(parts...)
	b := binary.BigEndian.AppendUint16(nil, uint16(t))
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func seqTLV(x uint32) []byte { return tlv(uint16(OptSeq), be32(x)...) }

func ringTLV(node uint32, seq uint64) []byte {
	return tlv(uint16(OptRingID), cat(be32(node), be64(seq))...)
}

// nodeInfoTLV builds a NODE_INFO option from raw inner TLVs.
func nodeInfoTLV(inner ...[]byte) []byte { return tlv(uint16(OptNodeInfo), cat(inner...)...) }

func innerID(id uint32) []byte { return tlv(uint16(OptNodeID), be32(id)...) }
func innerDC(dc uint32) []byte { return tlv(uint16(OptDataCenterID), be32(dc)...) }
func innerState(s byte) []byte { return tlv(uint16(OptNodeState), s) }
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "|", "").Replace(s))
	require.NoError(t, err)
	return b
}

func mustDecode(t *testing.T, b []byte) *Msg {
	t.Helper()
	m, err := Decode(b)
	require.NoError(t, err, "% x", b)
	require.NotNil(t, m)
	return m
}

func decodeErr(t *testing.T, b []byte) (*Msg, *DecodeError) {
	t.Helper()
	m, err := Decode(b)
	require.Error(t, err, "% x decoded as %v", b, m)
	var de *DecodeError
	require.True(t, errors.As(err, &de), "want *DecodeError, got %T %v", err, err)
	require.Error(t, de.Err)
	return m, de
}

func opts(os ...Opt) OptSet {
	var s OptSet
	for _, o := range os {
		s.Set(o)
	}
	return s
}

// ---- §1.1 worked examples ---------------------------------------------------

func TestSpecExamples(t *testing.T) {
	preinit := unhex(t, "00 00 | 00 00 00 0e | 00 00 00 04 00 00 00 01 | 00 01 00 02 63 31")
	preinitReply := unhex(t, "00 01 | 00 00 00 12 | 00 00 00 04 00 00 00 01 | 00 02 00 01 01 | 00 03 00 01 01")

	t.Run("preinit", func(t *testing.T) {
		want := &Msg{Type: MsgPreinit, Has: opts(OptSeq, OptClusterName), Seq: 1, ClusterName: []byte("c1")}
		require.Equal(t, want, mustDecode(t, preinit))
		require.Equal(t, preinit, want.Append(nil))
		require.Equal(t, len(preinit), want.Len())
	})
	t.Run("preinit reply", func(t *testing.T) {
		want := &Msg{Type: MsgPreinitReply, Has: opts(OptSeq, OptTLSSupported, OptTLSClientCertRequired),
			Seq: 1, TLSSupported: TLSSupportedOn, TLSClientCertRequired: 1}
		require.Equal(t, want, mustDecode(t, preinitReply))
		require.Equal(t, preinitReply, want.Append(nil))

		// Built fluently, the way the server builds it.
		m := &Msg{Type: MsgPreinitReply, Seq: 1, TLSSupported: TLSSupportedOn, TLSClientCertRequired: 1}
		m.Set(OptTLSClientCertRequired).Set(OptTLSSupported).Set(OptSeq)
		require.Equal(t, preinitReply, m.Append(nil))
	})
	t.Run("append keeps prefix", func(t *testing.T) {
		m := mustDecode(t, preinit)
		out := m.Append([]byte("xyz"))
		require.Equal(t, cat([]byte("xyz"), preinit), out)
		out = m.Append(out)
		require.Equal(t, cat([]byte("xyz"), preinit, preinit), out)
	})
}

// ---- framing (§1.2 header, §1.6 TLV walk) -----------------------------------

func TestParseHeader(t *testing.T) {
	for n := 0; n < HeaderSize; n++ {
		_, _, err := ParseHeader(make([]byte, n))
		require.ErrorIs(t, err, ErrShort, "len %d", n)
		_, err = Decode(make([]byte, n))
		require.ErrorIs(t, err, ErrShort, "len %d", n)
	}
	typ, n, err := ParseHeader(unhex(t, "ffff ffffffff 00"))
	require.NoError(t, err)
	require.Equal(t, MsgType(0xffff), typ)
	require.Equal(t, uint32(0xffffffff), n)
	typ, n, err = ParseHeader(unhex(t, "0011 00008000"))
	require.NoError(t, err)
	require.Equal(t, MsgHeuristicsChangeReply, typ)
	require.Equal(t, uint32(32768), n)
}

func TestDecodeFraming(t *testing.T) {
	seq := seqTLV(7)
	cases := []struct {
		name    string
		msg     []byte
		ok      bool
		off     int  // expected DecodeError.Offset
		seqSeen bool // expected DecodeError.SeqValid
	}{
		{name: "empty body", msg: frame(MsgPreinit), off: 6},
		{name: "empty body, unknown type", msg: frame(MsgType(99)), off: 6},
		{name: "body of 1 byte", msg: frame(MsgPreinit, []byte{0}), off: 6},
		{name: "body of 2 bytes", msg: frame(MsgPreinit, []byte{0, 0}), off: 6},
		{name: "body of 3 bytes", msg: frame(MsgPreinit, []byte{0, 0, 0}), off: 6},
		{name: "1 trailing byte", msg: frame(MsgPreinit, seq, []byte{0}), off: 14, seqSeen: true},
		{name: "2 trailing bytes", msg: frame(MsgPreinit, seq, []byte{0, 1}), off: 14, seqSeen: true},
		{name: "3 trailing bytes", msg: frame(MsgPreinit, seq, []byte{0, 1, 0}), off: 14, seqSeen: true},
		{name: "first TLV overruns by 1", msg: frame(MsgPreinit, rawTLV(1, 3, 'a', 'b')), off: 6},
		{name: "first TLV header only, len 1", msg: frame(MsgPreinit, rawTLV(1, 1)), off: 6},
		{name: "TLV overruns after seq", msg: frame(MsgPreinit, seq, rawTLV(1, 0xffff, 'a')), off: 14, seqSeen: true},
		{name: "unknown TLV overruns", msg: frame(MsgPreinit, seq, rawTLV(999, 5, 1, 2, 3, 4)), off: 14, seqSeen: true},
		{name: "seq itself overruns", msg: frame(MsgPreinit, rawTLV(0, 4, 0, 0, 0)), off: 6},
		{name: "one TLV ending exactly", msg: frame(MsgPreinit, seq), ok: true},
		{name: "zero-length TLV at the end", msg: frame(MsgPreinit, seq, tlv(1)), ok: true},
		{name: "only an unknown zero-length TLV", msg: frame(MsgPreinit, tlv(1000)), ok: true},
		{name: "unknown type decodes", msg: frame(MsgType(0xfffe), seq), ok: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.ok {
				m := mustDecode(t, c.msg)
				typ, _, _ := ParseHeader(c.msg)
				require.Equal(t, typ, m.Type)
				return
			}
			_, de := decodeErr(t, c.msg)
			require.Equal(t, c.off, de.Offset, de.Error())
			require.Equal(t, c.seqSeen, de.SeqValid)
			if c.seqSeen {
				require.Equal(t, uint32(7), de.Seq)
			}
			require.Contains(t, de.Error(), fmt.Sprintf("offset %d", c.off))
		})
	}
}

func TestDecodeLengthFieldMismatch(t *testing.T) {
	good := frame(MsgPreinit, seqTLV(1))
	long := append(append([]byte{}, good...), 0, 0, 0, 0)
	_, de := decodeErr(t, long) // header says 8, 12 bytes follow
	require.False(t, de.SeqValid)
	_, de = decodeErr(t, good[:len(good)-1]) // header says 8, 7 bytes follow
	require.False(t, de.SeqValid)
	huge := unhex(t, "0000 ffffffff 00000004 00000001")
	decodeErr(t, huge)
}

// ---- §1.4 per-option validation -------------------------------------------------

// fixedOpts are the known options with a fixed value length.
var fixedOpts = []struct {
	opt  Opt
	size int
}{
	{OptSeq, 4}, {OptTLSSupported, 1}, {OptTLSClientCertRequired, 1}, {OptReplyErrorCode, 2},
	{OptServerMaxRequestSize, 4}, {OptServerMaxReplySize, 4}, {OptNodeID, 4}, {OptAlgorithm, 2},
	{OptHeartbeatInterval, 4}, {OptRingID, 12}, {OptConfigVersion, 8}, {OptDataCenterID, 4},
	{OptNodeState, 1}, {OptNodeListType, 1}, {OptVote, 1}, {OptQuorate, 1}, {OptTieBreaker, 5},
	{OptHeuristics, 1}, {OptKAPTieBreaker, 1},
}

func TestDecodeWrongLength(t *testing.T) {
	for _, f := range fixedOpts {
		for _, l := range []int{0, f.size - 1, f.size + 1, f.size * 2, 255} {
			if l == f.size {
				continue
			}
			// 0x01 bytes are in range for every option, so only the length
			// can be wrong.
			v := bytes.Repeat([]byte{1}, l)
			t.Run(fmt.Sprintf("opt %d len %d", f.opt, l), func(t *testing.T) {
				_, de := decodeErr(t, frame(MsgInit, tlv(uint16(f.opt), v...)))
				require.Equal(t, f.opt, de.Opt)
				require.Equal(t, 6, de.Offset)
				require.False(t, de.SeqValid)

				// Same after a valid seq (the seq option itself is the
				// second TLV then: the first seq stays valid).
				_, de = decodeErr(t, frame(MsgInit, seqTLV(42), tlv(uint16(f.opt), v...)))
				require.Equal(t, f.opt, de.Opt)
				require.Equal(t, 14, de.Offset)
				require.True(t, de.SeqValid)
				require.Equal(t, uint32(42), de.Seq)
			})
		}
		// The right length with in-range bytes decodes.
		m := mustDecode(t, frame(MsgInit, tlv(uint16(f.opt), bytes.Repeat([]byte{1}, f.size)...)))
		require.Equal(t, opts(f.opt), m.Has, "opt %d", f.opt)
	}
}

func TestDecodeArrays(t *testing.T) {
	fields := map[Opt]func(*Msg) []uint16{
		OptSupportedMessages:   func(m *Msg) []uint16 { return m.SupportedMessages },
		OptSupportedOptions:    func(m *Msg) []uint16 { return m.SupportedOptions },
		OptSupportedAlgorithms: func(m *Msg) []uint16 { return m.SupportedAlgorithms },
	}
	for o, get := range fields {
		for _, l := range []int{1, 3, 37} {
			_, de := decodeErr(t, frame(MsgInit, tlv(uint16(o), make([]byte, l)...)))
			require.Equal(t, o, de.Opt)
		}
		m := mustDecode(t, frame(MsgInit, tlv(uint16(o))))
		require.True(t, m.Has.Has(o))
		require.Empty(t, get(m))
		m = mustDecode(t, frame(MsgInit, tlv(uint16(o), 0, 0, 0xff, 0xff, 0x00, 0x11)))
		require.Equal(t, []uint16{0, 0xffff, 0x11}, get(m))
		require.Equal(t, frame(MsgInit, tlv(uint16(o), 0, 0, 0xff, 0xff, 0x00, 0x11)), m.Append(nil))
	}
}

func TestDecodeValueRanges(t *testing.T) {
	u8 := func(f func(*Msg) uint8) func(*Msg) uint64 { return func(m *Msg) uint64 { return uint64(f(m)) } }
	type rng struct {
		opt  Opt
		good []byte
		bad  []byte
		get  func(*Msg) uint64
	}
	ranges := []rng{
		{OptTLSSupported, []byte{0, 1, 2}, []byte{3, 4, 255}, u8(func(m *Msg) uint8 { return uint8(m.TLSSupported) })},
		{OptTLSClientCertRequired, []byte{0, 1, 2, 255}, nil, u8(func(m *Msg) uint8 { return m.TLSClientCertRequired })},
		{OptNodeState, []byte{1, 2, 3}, []byte{0, 4, 255}, u8(func(m *Msg) uint8 { return uint8(m.NodeState) })},
		{OptNodeListType, []byte{0, 1, 2, 3}, []byte{4, 255}, u8(func(m *Msg) uint8 { return uint8(m.NodeListType) })},
		{OptVote, []byte{1, 2, 3, 4, 5}, []byte{0, 6, 255}, u8(func(m *Msg) uint8 { return uint8(m.Vote) })},
		{OptQuorate, []byte{0, 1}, []byte{2, 255}, u8(func(m *Msg) uint8 { return m.Quorate })},
		{OptHeuristics, []byte{1, 2}, []byte{0, 3, 255}, u8(func(m *Msg) uint8 { return uint8(m.Heuristics) })},
		{OptKAPTieBreaker, []byte{0, 1}, []byte{2, 255}, u8(func(m *Msg) uint8 { return m.KAPTieBreaker })},
	}
	for _, r := range ranges {
		for _, v := range r.good {
			in := frame(MsgNodeList, seqTLV(3), tlv(uint16(r.opt), v))
			m := mustDecode(t, in)
			require.Equal(t, uint64(v), r.get(m), "opt %d value %d", r.opt, v)
			require.Equal(t, opts(OptSeq, r.opt), m.Has)
			require.Equal(t, in, m.Append(nil), "opt %d value %d re-encodes", r.opt, v)
		}
		for _, v := range r.bad {
			_, de := decodeErr(t, frame(MsgNodeList, seqTLV(3), tlv(uint16(r.opt), v)))
			require.Equal(t, r.opt, de.Opt, "opt %d value %d", r.opt, v)
			require.Equal(t, 14, de.Offset)
			require.True(t, de.SeqValid)
			require.Equal(t, uint32(3), de.Seq)
		}
	}

	// Tie-breaker: mode 1..3, any node id bytes.
	for _, mode := range []byte{1, 2, 3} {
		mustDecode(t, frame(MsgInit, tlv(uint16(OptTieBreaker), mode, 0, 0, 0, 9)))
	}
	for _, mode := range []byte{0, 4, 255} {
		_, de := decodeErr(t, frame(MsgInit, tlv(uint16(OptTieBreaker), mode, 0, 0, 0, 9)))
		require.Equal(t, OptTieBreaker, de.Opt, "mode %d", mode)
	}

	// u16 enums are not range-checked by the decoder (INIT checks the
	// algorithm later; any error code is accepted).
	m := mustDecode(t, frame(MsgInitReply, tlv(uint16(OptReplyErrorCode), 0xff, 0xff), tlv(uint16(OptAlgorithm), 0xff, 0xfe)))
	require.Equal(t, ErrorCode(0xffff), m.ReplyErrorCode)
	require.Equal(t, Algorithm(0xfffe), m.Algorithm)
}

func TestDecodeScalarValues(t *testing.T) {
	in := frame(MsgInit,
		seqTLV(0xdeadbeef),
		tlv(uint16(OptServerMaxRequestSize), be32(32768)...),
		tlv(uint16(OptServerMaxReplySize), be32(1<<24)...),
		tlv(uint16(OptNodeID), be32(0xfffffffe)...),
		tlv(uint16(OptHeartbeatInterval), be32(8000)...),
		ringTLV(0x01020304, 0x0102030405060708),
		tlv(uint16(OptConfigVersion), be64(0xfffffffffffffff0)...),
		tlv(uint16(OptDataCenterID), be32(77)...),
	)
	m := mustDecode(t, in)
	require.Equal(t, uint32(0xdeadbeef), m.Seq)
	require.Equal(t, uint32(32768), m.ServerMaxRequestSize)
	require.Equal(t, uint32(1<<24), m.ServerMaxReplySize)
	require.Equal(t, uint32(0xfffffffe), m.NodeID)
	require.Equal(t, uint32(8000), m.HeartbeatInterval)
	require.Equal(t, RingID{NodeID: 0x01020304, Seq: 0x0102030405060708}, m.RingID)
	require.Equal(t, uint64(0xfffffffffffffff0), m.ConfigVersion)
	require.Equal(t, uint32(77), m.DataCenterID)
	require.Equal(t, opts(OptSeq, OptServerMaxRequestSize, OptServerMaxReplySize, OptNodeID,
		OptHeartbeatInterval, OptRingID, OptConfigVersion, OptDataCenterID), m.Has)
}

func TestDecodeZeroValuesArePresent(t *testing.T) {
	// "absent" and "zero" stay apart.
	m := mustDecode(t, frame(MsgSetOption, seqTLV(0), tlv(uint16(OptHeartbeatInterval), be32(0)...)))
	require.True(t, m.Has.Has(OptSeq))
	require.True(t, m.Has.Has(OptHeartbeatInterval))
	require.False(t, m.Has.Has(OptKAPTieBreaker))
	require.Zero(t, m.HeartbeatInterval)
}

// ---- tie-breaker normalisation ------------------------------------------------

func TestTieBreakerNodeID(t *testing.T) {
	cases := []struct {
		mode byte
		id   uint32
		want TieBreaker
	}{
		{1, 7, TieBreaker{Mode: TieBreakerLowest}},
		{2, 0xffffffff, TieBreaker{Mode: TieBreakerHighest}},
		{1, 0, TieBreaker{Mode: TieBreakerLowest}},
		{3, 7, TieBreaker{Mode: TieBreakerNodeID, NodeID: 7}},
		{3, 0, TieBreaker{Mode: TieBreakerNodeID, NodeID: 0}},
	}
	for _, c := range cases {
		in := frame(MsgInit, tlv(uint16(OptTieBreaker), cat([]byte{c.mode}, be32(c.id))...))
		m := mustDecode(t, in)
		require.Equal(t, c.want, m.TieBreaker, "mode %d id %d", c.mode, c.id)
		// The encoder writes the normalised id.
		want := frame(MsgInit, tlv(uint16(OptTieBreaker), cat([]byte{c.mode}, be32(c.want.NodeID))...))
		require.Equal(t, want, m.Append(nil))
	}
	// The encoder writes 0 unless the mode is NODE_ID, whatever the struct says.
	for _, mode := range []TieBreakerMode{TieBreakerLowest, TieBreakerHighest} {
		m := (&Msg{Type: MsgInit, TieBreaker: TieBreaker{Mode: mode, NodeID: 9}}).Set(OptTieBreaker)
		require.Equal(t, frame(MsgInit, tlv(uint16(OptTieBreaker), byte(mode), 0, 0, 0, 0)), m.Append(nil))
	}
	m := (&Msg{Type: MsgInit, TieBreaker: TieBreaker{Mode: TieBreakerNodeID, NodeID: 9}}).Set(OptTieBreaker)
	require.Equal(t, frame(MsgInit, tlv(uint16(OptTieBreaker), 3, 0, 0, 0, 9)), m.Append(nil))
}

// ---- unknown and duplicate options ----------------------------------------------

func TestUnknownOptionsSkipped(t *testing.T) {
	in := frame(MsgEchoRequest,
		tlv(24),
		seqTLV(5),
		tlv(100, 1, 2, 3),
		tlv(0xffff, make([]byte, 7)...),
		tlv(uint16(OptVote), 1),
		tlv(25, 0xff),
	)
	m := mustDecode(t, in)
	require.Equal(t, &Msg{Type: MsgEchoRequest, Has: opts(OptSeq, OptVote), Seq: 5, Vote: VoteACK}, m)
	require.Equal(t, frame(MsgEchoRequest, seqTLV(5), tlv(uint16(OptVote), 1)), m.Append(nil))

	// An unknown option may be as long as a TLV can be.
	m = mustDecode(t, frame(MsgPreinit, seqTLV(1), tlv(4242, make([]byte, 0xffff)...)))
	require.Equal(t, opts(OptSeq), m.Has)

	// Unknown options do not hide a failure after them.
	_, de := decodeErr(t, frame(MsgPreinit, seqTLV(1), tlv(4242, 1), tlv(uint16(OptVote), 0)))
	require.Equal(t, OptVote, de.Opt)
	require.Equal(t, 6+8+5, de.Offset)
	require.True(t, de.SeqValid)

	// A message of unknown options only decodes with nothing set; its
	// re-encoding has an empty body (which would not decode).
	m = mustDecode(t, frame(MsgEchoRequest, tlv(24, 1, 2)))
	require.Zero(t, m.Has)
	require.Equal(t, frame(MsgEchoRequest), m.Append(nil))
}

func TestDuplicateLastWins(t *testing.T) {
	in := frame(MsgInit,
		seqTLV(1),
		tlv(uint16(OptClusterName), 'a'),
		tlv(uint16(OptSupportedMessages), 0, 1, 0, 2),
		tlv(uint16(OptVote), 1),
		tlv(uint16(OptTieBreaker), 3, 0, 0, 0, 7),
		ringTLV(1, 1),
		tlv(uint16(OptHeuristics), 1),
		tlv(uint16(OptTLSSupported), 2),
		seqTLV(2),
		tlv(uint16(OptClusterName), 'b', 'b'),
		tlv(uint16(OptSupportedMessages), 0, 3),
		tlv(uint16(OptVote), 2),
		tlv(uint16(OptTieBreaker), 1, 0, 0, 0, 7),
		ringTLV(2, 9),
		tlv(uint16(OptHeuristics), 2),
		tlv(uint16(OptTLSSupported), 0),
		tlv(uint16(OptClusterName)),
		tlv(uint16(OptSupportedMessages)),
	)
	m := mustDecode(t, in)
	require.Equal(t, uint32(2), m.Seq)
	require.Equal(t, []byte{}, m.ClusterName)
	require.Equal(t, []uint16{}, m.SupportedMessages)
	require.Equal(t, VoteNACK, m.Vote)
	require.Equal(t, TieBreaker{Mode: TieBreakerLowest}, m.TieBreaker)
	require.Equal(t, RingID{NodeID: 2, Seq: 9}, m.RingID)
	require.Equal(t, HeuristicsFail, m.Heuristics)
	require.Equal(t, TLSUnsupported, m.TLSSupported)

	// The non-empty arrays last.
	m = mustDecode(t, frame(MsgInit, tlv(uint16(OptSupportedOptions)), tlv(uint16(OptSupportedOptions), 0, 5)))
	require.Equal(t, []uint16{5}, m.SupportedOptions)

	// A later invalid duplicate is an error, even though an earlier one was valid.
	_, de := decodeErr(t, frame(MsgInit, seqTLV(1), tlv(uint16(OptVote), 1), tlv(uint16(OptVote), 9)))
	require.Equal(t, OptVote, de.Opt)
	require.Equal(t, 6+8+5, de.Offset)
}

// ---- NODE_INFO ----------------------------------------------------------------

func TestNodeInfoAccumulates(t *testing.T) {
	// Duplicates are kept, in order (fact 11: config [1,1,2] is 3 nodes).
	in := frame(MsgNodeList,
		seqTLV(4),
		tlv(uint16(OptNodeListType), 0),
		nodeInfoTLV(innerID(1)),
		nodeInfoTLV(innerID(1)),
		nodeInfoTLV(innerID(2)),
	)
	m := mustDecode(t, in)
	require.Equal(t, []NodeInfo{{NodeID: 1}, {NodeID: 1}, {NodeID: 2}}, m.Nodes)
	require.True(t, m.Has.Has(OptNodeInfo))
	require.Equal(t, in, m.Append(nil))

	// Quorum list: node id and state, in the order sent.
	in = frame(MsgNodeList,
		seqTLV(6),
		tlv(uint16(OptNodeListType), 3),
		tlv(uint16(OptQuorate), 1),
		nodeInfoTLV(innerID(2), innerState(1)),
		nodeInfoTLV(innerID(3), innerState(2)),
		nodeInfoTLV(innerID(1), innerState(3)),
	)
	m = mustDecode(t, in)
	require.Equal(t, []NodeInfo{{NodeID: 2, State: NodeStateMember}, {NodeID: 3, State: NodeStateDead},
		{NodeID: 1, State: NodeStateLeaving}}, m.Nodes)
	require.Equal(t, in, m.Append(nil))

	// Config list with data center ids and a config version.
	in = frame(MsgNodeList,
		seqTLV(1),
		tlv(uint16(OptNodeListType), 1),
		tlv(uint16(OptConfigVersion), be64(12)...),
		nodeInfoTLV(innerID(1), innerDC(10)),
		nodeInfoTLV(innerID(2)),
		nodeInfoTLV(innerID(3), innerDC(20), innerState(1)),
	)
	m = mustDecode(t, in)
	require.Equal(t, []NodeInfo{{NodeID: 1, DataCenterID: 10}, {NodeID: 2}, {NodeID: 3, DataCenterID: 20, State: NodeStateMember}}, m.Nodes)
	require.Equal(t, uint64(12), m.ConfigVersion)
	require.Equal(t, in, m.Append(nil))

	// NODE_INFO interleaved with other options still accumulates; the
	// encoder groups them at the NODE_INFO position.
	m = mustDecode(t, frame(MsgNodeList, nodeInfoTLV(innerID(5)), seqTLV(1), nodeInfoTLV(innerID(6)), tlv(uint16(OptNodeListType), 2)))
	require.Equal(t, []NodeInfo{{NodeID: 5}, {NodeID: 6}}, m.Nodes)
	require.Equal(t, frame(MsgNodeList, seqTLV(1), tlv(uint16(OptNodeListType), 2), nodeInfoTLV(innerID(5)), nodeInfoTLV(innerID(6))), m.Append(nil))
}

func TestNodeInfoInner(t *testing.T) {
	good := []struct {
		name  string
		inner []byte
		want  NodeInfo
	}{
		{"node id only", innerID(1), NodeInfo{NodeID: 1}},
		{"data center id", cat(innerID(1), innerDC(3)), NodeInfo{NodeID: 1, DataCenterID: 3}},
		{"state", cat(innerID(1), innerState(2)), NodeInfo{NodeID: 1, State: NodeStateDead}},
		{"all, reversed order", cat(innerState(3), innerDC(9), innerID(0xffffffff)), NodeInfo{NodeID: 0xffffffff, DataCenterID: 9, State: NodeStateLeaving}},
		{"explicit data center 0", cat(innerID(4), innerDC(0)), NodeInfo{NodeID: 4}},
		{"unknown inner option ignored", cat(tlv(1, 'x'), innerID(2), tlv(0xffff, 1, 2, 3), tlv(99)), NodeInfo{NodeID: 2}},
		{"inner seq and vote are not inner options", cat(innerID(2), tlv(uint16(OptSeq), 1), tlv(uint16(OptVote), 0)), NodeInfo{NodeID: 2}},
		{"duplicate inner node id, last wins", cat(innerID(2), innerID(3)), NodeInfo{NodeID: 3}},
		{"node id 0 then real id", cat(innerID(0), innerID(3)), NodeInfo{NodeID: 3}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			m := mustDecode(t, frame(MsgNodeList, seqTLV(1), tlv(uint16(OptNodeInfo), c.inner...)))
			require.Equal(t, []NodeInfo{c.want}, m.Nodes)
			// The top-level fields are not touched by inner options.
			require.Zero(t, m.NodeID)
			require.Zero(t, m.DataCenterID)
			require.Zero(t, m.NodeState)
			require.Equal(t, opts(OptSeq, OptNodeInfo), m.Has)
		})
	}

	bad := []struct {
		name  string
		inner []byte
	}{
		{"empty", nil},
		{"1 byte", []byte{0}},
		{"3 bytes", []byte{0, 9, 0}},
		{"truncated inner header after node id", cat(innerID(1), []byte{0, 15})},
		{"1 trailing byte", cat(innerID(1), []byte{0})},
		{"3 trailing bytes", cat(innerID(1), []byte{0, 15, 0})},
		{"inner overrun", rawTLV(uint16(OptNodeID), 8, be32(1)...)},
		{"unknown inner overrun", cat(innerID(1), rawTLV(77, 2, 1))},
		{"node id 0", innerID(0)},
		{"no node id", innerDC(4)},
		{"only unknown", tlv(77, 1, 2)},
		{"state only", innerState(1)},
		{"real id then 0", cat(innerID(3), innerID(0))},
		{"node id len 3", tlv(uint16(OptNodeID), 0, 0, 1)},
		{"node id len 5", tlv(uint16(OptNodeID), 0, 0, 0, 0, 1)},
		{"data center len 2", cat(innerID(1), tlv(uint16(OptDataCenterID), 0, 1))},
		{"data center len 8", cat(innerID(1), tlv(uint16(OptDataCenterID), be64(1)...))},
		{"state 0", cat(innerID(1), innerState(0))},
		{"state 4", cat(innerID(1), innerState(4))},
		{"state len 0", cat(innerID(1), tlv(uint16(OptNodeState)))},
		{"state len 2", cat(innerID(1), tlv(uint16(OptNodeState), 1, 1))},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			// After a good NODE_INFO: the error is at the second one.
			in := frame(MsgNodeList, seqTLV(9), nodeInfoTLV(innerID(1)), tlv(uint16(OptNodeInfo), c.inner...))
			_, de := decodeErr(t, in)
			require.Equal(t, OptNodeInfo, de.Opt)
			require.Equal(t, 6+8+12, de.Offset)
			require.True(t, de.SeqValid)
			require.Equal(t, uint32(9), de.Seq)

			_, de = decodeErr(t, frame(MsgNodeList, tlv(uint16(OptNodeInfo), c.inner...), seqTLV(9)))
			require.Equal(t, OptNodeInfo, de.Opt)
			require.False(t, de.SeqValid)
		})
	}
}

// ---- DecodeError.SeqValid ----------------------------------------------------------

func TestDecodeErrorSeqValid(t *testing.T) {
	badVote := tlv(uint16(OptVote), 0)
	cases := []struct {
		name     string
		msg      []byte
		seqValid bool
		seq      uint32
	}{
		{"seq before", frame(MsgVoteInfoReply, seqTLV(11), badVote), true, 11},
		{"seq 0 before", frame(MsgVoteInfoReply, seqTLV(0), badVote), true, 0},
		{"seq after", frame(MsgVoteInfoReply, badVote, seqTLV(11)), false, 0},
		{"no seq", frame(MsgVoteInfoReply, badVote), false, 0},
		{"seq, unknown, bad", frame(MsgVoteInfoReply, seqTLV(12), tlv(500, 1), badVote), true, 12},
		{"last valid seq before", frame(MsgVoteInfoReply, seqTLV(1), seqTLV(2), badVote, seqTLV(3)), true, 2},
		{"only a bad seq", frame(MsgVoteInfoReply, tlv(uint16(OptSeq), 0, 0, 1)), false, 0},
		{"good seq then bad seq", frame(MsgVoteInfoReply, seqTLV(13), tlv(uint16(OptSeq), 0, 0, 1)), true, 13},
		{"seq then trailing bytes", frame(MsgVoteInfoReply, seqTLV(14), []byte{0, 0}), true, 14},
		{"seq then overrun", frame(MsgVoteInfoReply, seqTLV(15), rawTLV(0, 4, 0)), true, 15},
		{"overrun swallowing a seq", frame(MsgVoteInfoReply, rawTLV(1, 9), seqTLV(16)), false, 0},
		{"seq then bad node info", frame(MsgNodeList, seqTLV(17), nodeInfoTLV(innerID(0))), true, 17},
		{"seq then bad tie-breaker", frame(MsgInit, seqTLV(18), tlv(uint16(OptTieBreaker), 0, 0, 0, 0, 0)), true, 18},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, de := decodeErr(t, c.msg)
			require.Equal(t, c.seqValid, de.SeqValid)
			require.Equal(t, c.seq, de.Seq)
		})
	}
}

// ---- cluster names (fact 10) -----------------------------------------------------

func TestClusterNameOpaque(t *testing.T) {
	names := [][]byte{
		{},
		{0},
		[]byte("a\x00b"),
		[]byte("c1\x00"),
		{0xff, 0xfe, 0x80},
		[]byte("\xc3\x28"), // invalid UTF-8
		[]byte("qp-iso-a"),
		[]byte("qp-ISO-A"),
		[]byte(" spaces "),
		bytes.Repeat([]byte{'x'}, 0xffff),
	}
	for _, n := range names {
		in := frame(MsgPreinit, seqTLV(1), tlv(uint16(OptClusterName), n...))
		m := mustDecode(t, in)
		require.True(t, m.Has.Has(OptClusterName))
		require.NotNil(t, m.ClusterName)
		require.Equal(t, n, m.ClusterName, "%q", n)
		require.Equal(t, in, m.Append(nil))
	}
	a := mustDecode(t, frame(MsgPreinit, tlv(uint16(OptClusterName), []byte("qp-iso-a")...)))
	b := mustDecode(t, frame(MsgPreinit, tlv(uint16(OptClusterName), []byte("qp-ISO-A")...)))
	require.NotEqual(t, a.ClusterName, b.ClusterName)

	// The decoded name does not alias the input buffer.
	in := frame(MsgPreinit, tlv(uint16(OptClusterName), []byte("abc")...))
	m := mustDecode(t, in)
	copy(in[HeaderSize+4:], "xyz")
	require.Equal(t, []byte("abc"), m.ClusterName)
}

// ---- §1.7 server message order -------------------------------------------------------

func TestEncodeServerOrder(t *testing.T) {
	ring := RingID{NodeID: 1, Seq: 0x0d}
	ringB := ringTLV(1, 0x0d)
	cases := []struct {
		name string
		msg  *Msg
		want []byte
	}{
		{
			name: "PREINIT_REPLY with seq",
			msg: (&Msg{Type: MsgPreinitReply, Seq: 1, TLSSupported: TLSUnsupported, TLSClientCertRequired: 1}).
				Set(OptTLSClientCertRequired).Set(OptTLSSupported).Set(OptSeq),
			want: frame(MsgPreinitReply, seqTLV(1), tlv(2, 0), tlv(3, 1)),
		},
		{
			name: "PREINIT_REPLY without seq",
			msg: (&Msg{Type: MsgPreinitReply, TLSSupported: TLSRequired, TLSClientCertRequired: 1}).
				Set(OptTLSClientCertRequired).Set(OptTLSSupported),
			want: frame(MsgPreinitReply, tlv(2, 2), tlv(3, 1)),
		},
		{
			name: "INIT_REPLY full",
			msg: (&Msg{Type: MsgInitReply, Seq: 2, ReplyErrorCode: ErrNoError, SupportedMessages: AllMsgTypes(),
				SupportedOptions: AllOpts(), ServerMaxRequestSize: DefaultMaxReceiveSize,
				ServerMaxReplySize: DefaultMaxSendSize, SupportedAlgorithms: AllAlgorithms()}).
				Set(OptSupportedAlgorithms).Set(OptServerMaxReplySize).Set(OptServerMaxRequestSize).
				Set(OptSeq).Set(OptSupportedOptions).Set(OptSupportedMessages).Set(OptReplyErrorCode),
			want: frame(MsgInitReply,
				tlv(6, 0, 0),
				tlv(4, u16list(0, 17)...),
				tlv(5, u16list(0, 23)...),
				seqTLV(2),
				tlv(7, be32(32768)...),
				tlv(8, be32(32768)...),
				tlv(10, 0, 0, 0, 1, 0, 2, 0, 3)),
		},
		{
			name: "INIT_REPLY without lists and seq",
			msg: (&Msg{Type: MsgInitReply, ReplyErrorCode: ErrPreinitRequired, ServerMaxRequestSize: 40000,
				ServerMaxReplySize: 50000, SupportedAlgorithms: AllAlgorithms()}).
				Set(OptSupportedAlgorithms).Set(OptServerMaxReplySize).Set(OptServerMaxRequestSize).Set(OptReplyErrorCode),
			want: frame(MsgInitReply, tlv(6, 0, 6), tlv(7, be32(40000)...), tlv(8, be32(50000)...), tlv(10, 0, 0, 0, 1, 0, 2, 0, 3)),
		},
		{
			name: "INIT_REPLY with seq and options only",
			msg: (&Msg{Type: MsgInitReply, Seq: 3, ReplyErrorCode: ErrInvalidHeartbeatInterval, SupportedOptions: []uint16{0, 23},
				ServerMaxRequestSize: 32768, ServerMaxReplySize: 32768, SupportedAlgorithms: []uint16{1}}).
				Set(OptSupportedAlgorithms).Set(OptServerMaxReplySize).Set(OptServerMaxRequestSize).Set(OptSeq).
				Set(OptSupportedOptions).Set(OptReplyErrorCode),
			want: frame(MsgInitReply, tlv(6, 0, 13), tlv(5, 0, 0, 0, 23), seqTLV(3), tlv(7, be32(32768)...),
				tlv(8, be32(32768)...), tlv(10, 0, 1)),
		},
		{
			name: "SERVER_ERROR with seq",
			msg:  (&Msg{Type: MsgServerError, Seq: 8, ReplyErrorCode: ErrErrorDecodingMsg}).Set(OptReplyErrorCode).Set(OptSeq),
			want: frame(MsgServerError, seqTLV(8), tlv(6, 0, 9)),
		},
		{
			name: "SERVER_ERROR without seq",
			msg:  (&Msg{Type: MsgServerError, ReplyErrorCode: ErrMessageTooLong}).Set(OptReplyErrorCode),
			want: frame(MsgServerError, tlv(6, 0, 5)),
		},
		{
			name: "SET_OPTION_REPLY",
			msg:  (&Msg{Type: MsgSetOptionReply, Seq: 3, HeartbeatInterval: 8000, KAPTieBreaker: 1}).Set(OptKAPTieBreaker).Set(OptHeartbeatInterval).Set(OptSeq),
			want: frame(MsgSetOptionReply, seqTLV(3), tlv(12, be32(8000)...), tlv(23, 1)),
		},
		{
			name: "NODE_LIST_REPLY",
			msg: (&Msg{Type: MsgNodeListReply, Seq: 4, NodeListType: ListMembership, RingID: ring, Vote: VoteWaitForReply}).
				Set(OptVote).Set(OptRingID).Set(OptNodeListType).Set(OptSeq),
			want: frame(MsgNodeListReply, seqTLV(4), tlv(18, 2), ringB, tlv(19, 4)),
		},
		{
			name: "ASK_FOR_VOTE_REPLY",
			msg:  (&Msg{Type: MsgAskForVoteReply, Seq: 5, RingID: ring, Vote: VoteACK}).Set(OptRingID).Set(OptVote).Set(OptSeq),
			want: frame(MsgAskForVoteReply, seqTLV(5), tlv(19, 1), ringB),
		},
		{
			name: "VOTE_INFO",
			msg:  (&Msg{Type: MsgVoteInfo, Seq: 1, RingID: ring, Vote: VoteNACK}).Set(OptRingID).Set(OptVote).Set(OptSeq),
			want: frame(MsgVoteInfo, seqTLV(1), tlv(19, 2), ringB),
		},
		{
			name: "HEURISTICS_CHANGE_REPLY",
			msg: (&Msg{Type: MsgHeuristicsChangeReply, Seq: 11, RingID: ring, Vote: VoteNoChange, Heuristics: HeuristicsPass}).
				Set(OptHeuristics).Set(OptRingID).Set(OptVote).Set(OptSeq),
			want: frame(MsgHeuristicsChangeReply, seqTLV(11), tlv(19, 5), ringB, tlv(22, 1)),
		},
		{
			name: "options outside the order go last, ascending",
			msg: (&Msg{Type: MsgServerError, Seq: 1, ReplyErrorCode: 4, ClusterName: []byte("z"), NodeID: 3}).
				Set(OptNodeID).Set(OptClusterName).Set(OptReplyErrorCode).Set(OptSeq),
			want: frame(MsgServerError, seqTLV(1), tlv(6, 0, 4), tlv(1, 'z'), tlv(9, be32(3)...)),
		},
		{
			name: "unknown type: ascending",
			msg:  (&Msg{Type: MsgType(77), Seq: 1, Vote: VoteACK, ReplyErrorCode: 2}).Set(OptVote).Set(OptReplyErrorCode).Set(OptSeq),
			want: frame(MsgType(77), seqTLV(1), tlv(6, 0, 2), tlv(19, 1)),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.msg.Append(nil)
			require.Equal(t, hex.EncodeToString(c.want), hex.EncodeToString(got))
			require.Equal(t, len(c.want), c.msg.Len())
			// And it decodes back to the same message.
			require.Equal(t, c.msg, mustDecode(t, got))
		})
	}
}

// u16list returns big-endian u16s from..to inclusive.
func u16list(from, to uint16) []byte {
	var b []byte
	for i := from; i <= to; i++ {
		b = append(b, be16(i)...)
	}
	return b
}

func TestEncodeClientOrder(t *testing.T) {
	// §1.8: the order the real client uses (the captures check it byte
	// for byte; this covers options the captures lack, e.g. config version
	// and data center ids).
	m := (&Msg{Type: MsgNodeList, Seq: 3, NodeListType: ListChangedConfig, ConfigVersion: 5,
		Nodes: []NodeInfo{{NodeID: 1, DataCenterID: 2}, {NodeID: 2}}}).
		Set(OptNodeInfo).Set(OptConfigVersion).Set(OptNodeListType).Set(OptSeq)
	want := frame(MsgNodeList, seqTLV(3), tlv(18, 1), tlv(14, be64(5)...),
		nodeInfoTLV(innerID(1), innerDC(2)), nodeInfoTLV(innerID(2)))
	require.Equal(t, want, m.Append(nil))

	m = (&Msg{Type: MsgSetOption, Seq: 4, HeartbeatInterval: 10000, KAPTieBreaker: 0}).
		Set(OptKAPTieBreaker).Set(OptHeartbeatInterval).Set(OptSeq)
	require.Equal(t, frame(MsgSetOption, seqTLV(4), tlv(12, be32(10000)...), tlv(23, 0)), m.Append(nil))

	// Has(NODE_INFO) with no entries writes nothing.
	m = (&Msg{Type: MsgNodeList, Seq: 1}).Set(OptSeq).Set(OptNodeInfo)
	require.Equal(t, frame(MsgNodeList, seqTLV(1)), m.Append(nil))
}

func TestOptSet(t *testing.T) {
	var s OptSet
	for o := Opt(0); o <= maxOpt; o++ {
		require.False(t, s.Has(o))
		s.Set(o)
		require.True(t, s.Has(o))
	}
	require.False(t, s.Has(maxOpt+1))
	require.False(t, s.Has(0xffff))
}
