package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzSeeds returns every captured message, the §1.1 examples and some
// malformed messages.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, c := range loadCaptures(t) {
		seeds = append(seeds, c.Raw)
	}
	seq := func(x uint32) []byte { return tlvSeed(0, binary.BigEndian.AppendUint32(nil, x)...) }
	seeds = append(seeds,
		// §1.1 examples.
		[]byte{0, 0, 0, 0, 0, 0x0e, 0, 0, 0, 4, 0, 0, 0, 1, 0, 1, 0, 2, 'c', '1'},
		[]byte{0, 1, 0, 0, 0, 0x12, 0, 0, 0, 4, 0, 0, 0, 1, 0, 2, 0, 1, 1, 0, 3, 0, 1, 1},
		// Malformed: empty body, short header, trailing bytes, overrun,
		// bad values, bad node info, unknown type, lying length.
		frameSeed(0),
		[]byte{0, 0, 0},
		frameSeed(8, seq(1), []byte{0, 1}),
		frameSeed(0, seq(1), []byte{0, 1, 0, 9, 'a'}),
		frameSeed(14, seq(1), tlvSeed(19, 0)),
		frameSeed(3, seq(3), tlvSeed(21, 4, 0, 0, 0, 1)),
		frameSeed(3, seq(3), tlvSeed(21, 1, 0, 0, 0, 9), tlvSeed(999, 1, 2)),
		frameSeed(10, seq(5), tlvSeed(17)),
		frameSeed(10, seq(5), tlvSeed(17, 0, 9, 0, 4, 0, 0, 0, 0)),
		frameSeed(10, seq(5), tlvSeed(17, 0, 9, 0, 4, 0, 0, 0, 1, 0, 16, 0, 1, 4)),
		frameSeed(10, seq(5), tlvSeed(17, 0, 9, 0, 4, 0, 0, 0, 1, 0, 15, 0, 4, 0, 0, 0, 3, 0, 16, 0, 1, 2, 0, 7, 0, 0)),
		frameSeed(0xffff, seq(1)),
		frameSeed(16, tlvSeed(22, 3), seq(2)),
		frameSeed(6, seq(1), tlvSeed(12, 0, 0, 0x1f, 0x40), tlvSeed(23, 2)),
		[]byte{0, 8, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 1},
	)
	return seeds
}

func tlvSeed(o uint16, v ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, o)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func frameSeed(t uint16, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	b := binary.BigEndian.AppendUint16(nil, t)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// checkDecode decodes b and checks the codec's properties: no panic, a
// consistent error, no aliasing of b, and the round trip
// Decode(Append(Decode(b))) == Decode(b). Unknown options are dropped
// and tie-breaker node ids normalised by Decode, so the comparison is
// between the decoded message and the decoding of its re-encoding, never
// with b itself.
func checkDecode(t *testing.T, b []byte) {
	in := append([]byte(nil), b...)
	m, err := Decode(in)
	if err != nil {
		if errors.Is(err, ErrShort) {
			require.Less(t, len(b), HeaderSize)
			return
		}
		var de *DecodeError
		require.True(t, errors.As(err, &de), "%T %v", err, err)
		require.Error(t, de.Err)
		require.GreaterOrEqual(t, de.Offset, 0)
		require.LessOrEqual(t, de.Offset, len(b))
		if m != nil && de.SeqValid {
			require.True(t, m.Has.Has(OptSeq))
			require.Equal(t, m.Seq, de.Seq)
		}
		return
	}
	require.NotNil(t, m)
	typ, n, _ := ParseHeader(b)
	require.Equal(t, typ, m.Type)
	require.EqualValues(t, len(b)-HeaderSize, n)
	require.Positive(t, n, "an empty body decoded")
	require.Zero(t, m.Has&^(OptSet(1)<<(maxOpt+1)-1), "bits beyond the last option")
	require.Equal(t, m.Has.Has(OptNodeInfo), len(m.Nodes) > 0)
	for _, ni := range m.Nodes {
		require.NotZero(t, ni.NodeID)
		require.LessOrEqual(t, ni.State, NodeStateLeaving)
	}
	if m.TieBreaker.Mode != TieBreakerNodeID {
		require.Zero(t, m.TieBreaker.NodeID)
	}

	// The decoded message must not alias the input.
	for i := range in {
		in[i] ^= 0xa5
	}
	again, err := Decode(b)
	require.NoError(t, err)
	require.Equal(t, again, m, "decoded message changed with its input buffer")

	enc := m.Append(nil)
	require.Equal(t, len(enc), m.Len())
	if m.Has == 0 {
		// Only unknown options: the re-encoding is a bare header, which
		// does not decode (a message needs at least one TLV).
		require.Equal(t, HeaderSize, len(enc))
		_, err := Decode(enc)
		require.Error(t, err)
		return
	}
	require.LessOrEqual(t, len(enc), len(b), "re-encoding grew")
	m2, err := Decode(enc)
	require.NoError(t, err, "re-encoding of %v does not decode: % x", m, enc)
	require.Equal(t, m, m2)
	// The encoding is canonical: encoding again gives the same bytes.
	require.Equal(t, enc, m2.Append(nil))
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, n, err := ParseHeader(b)
		if len(b) < HeaderSize {
			require.ErrorIs(t, err, ErrShort)
			return
		}
		require.NoError(t, err)
		require.Equal(t, MsgType(uint16(b[0])<<8|uint16(b[1])), typ)
		require.Equal(t, uint32(b[2])<<24|uint32(b[3])<<16|uint32(b[4])<<8|uint32(b[5]), n)
		require.Equal(t, typ <= MsgHeuristicsChangeReply, typ.Known())
		require.NotEmpty(t, typ.String())
	})
}

// splitStream cuts a whole stream with a Framer, returning the frames
// complete so far and how many bytes they used.
func splitStream(data []byte, maxRecv int) ([]Frame, int) {
	var f Framer
	var out []Frame
	rest := data
	for {
		fr, more, ok := f.Next(rest, uint32(maxRecv))
		if !ok {
			return out, len(data) - len(rest)
		}
		out = append(out, fr)
		rest = more
	}
}

func FuzzStream(f *testing.F) {
	seeds := fuzzSeeds(f)
	// Whole captured streams, one per capture file, as sent on the wire.
	streams := map[string][]byte{}
	var names []string
	for _, c := range loadCaptures(f) {
		if _, ok := streams[c.File]; !ok {
			names = append(names, c.File)
		}
		streams[c.File] = append(streams[c.File], c.Raw...)
	}
	for _, n := range names {
		f.Add(streams[n])
	}
	for i := 0; i+1 < len(seeds); i += 2 {
		f.Add(append(append([]byte{}, seeds[i]...), seeds[i+1]...))
	}
	// A too-long and an unknown-type message followed by a good one.
	f.Add(append(frameSeed(0, make([]byte, 32763)), seeds[0]...))
	f.Add(append([]byte{0, 99, 0, 0, 0, 0, 0, 42, 0, 0, 0, 1, 0xff}, seeds[0]...))

	f.Fuzz(func(t *testing.T, data []byte) {
		frames, used := splitStream(data, DefaultMaxReceiveSize)
		require.LessOrEqual(t, used, len(data))
		for _, fr := range frames {
			if fr.Raw == nil {
				continue
			}
			require.LessOrEqual(t, len(fr.Raw), DefaultMaxReceiveSize)
			checkDecode(t, fr.Raw)
		}
		// However the bytes arrive, the same frames; at most one
		// message held; Read from a stream gives them too.
		var f Framer
		var cut []Frame
		for i := 0; i < len(data); i += 1 + i%7 {
			rest := data[i:min(i+1+i%7, len(data))]
			for {
				fr, more, ok := f.Next(rest, DefaultMaxReceiveSize)
				require.LessOrEqual(t, f.Pending(), DefaultMaxReceiveSize)
				if !ok {
					break
				}
				cut, rest = append(cut, fr), more
			}
		}
		require.Equal(t, frames, cut)
		var rf Framer
		r := bytes.NewReader(data)
		for i := range frames {
			fr, err := rf.Read(r, DefaultMaxReceiveSize)
			require.NoError(t, err)
			require.Equal(t, frames[i], fr)
		}
	})
}

func TestSplitStream(t *testing.T) {
	good := frameSeed(0, tlvSeed(0, 0, 0, 0, 1))
	tooLong := frameSeed(0, make([]byte, DefaultMaxReceiveSize-HeaderSize+1))
	maxOK := frameSeed(0, tlvSeed(1, make([]byte, DefaultMaxReceiveSize-HeaderSize-4)...))
	unknown := frameSeed(18, tlvSeed(0, 0, 0, 0, 1))
	unknownEmpty := frameSeed(0xffff)
	data := bytes.Join([][]byte{good, tooLong, unknown, unknownEmpty, maxOK, good[:7]}, nil)
	frames, used := splitStream(data, DefaultMaxReceiveSize)
	require.Equal(t, len(data)-7, used)
	require.Len(t, frames, 5)
	require.Equal(t, good, frames[0].Raw)
	require.Nil(t, frames[1].Raw)
	require.Equal(t, Frame{Refused: ErrMessageTooLong, Answer: ErrMessageTooLong}, frames[1])
	require.Equal(t, Frame{Refused: ErrUnsupportedMessage, Answer: ErrUnsupportedMessage}, frames[2])
	require.Equal(t, Frame{Refused: ErrUnsupportedMessage, Answer: ErrNoError}, frames[3], "fact 7")
	require.Equal(t, maxOK, frames[4].Raw)
	require.Len(t, frames[4].Raw, DefaultMaxReceiveSize)
	m, err := Decode(frames[4].Raw)
	require.NoError(t, err)
	require.Len(t, m.ClusterName, DefaultMaxReceiveSize-HeaderSize-4)
}
