package server

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// frameEvents feeds stream to a fresh connection in the given pieces, the
// way a socket may deliver it, continuing in plaintext after a STARTTLS
// (as when the engine refuses it), and describes every event posted.
func frameEvents(t testing.TB, stream []byte, cuts []int) []string {
	events := make(chan event, len(stream)/wire.HeaderSize+2)
	s := &Server{cfg: DefaultConfig(), log: zerolog.Nop(), sink: func(ev event) bool { events <- ev; return true }}
	c := &conn{s: s}
	var out []string
	drain := func() {
		for {
			select {
			case ev := <-events:
				switch ev.kind {
				case evMessage:
					out = append(out, fmt.Sprintf("message %x starttls=%v", ev.raw, ev.startTLS != nil))
				case evFrameError:
					out = append(out, fmt.Sprintf("frame error %v", ev.code))
				case evDecodeError:
					out = append(out, fmt.Sprintf("decode error %v", ev.derr))
				default:
					t.Fatalf("unexpected event %d", ev.kind)
				}
			default:
				return
			}
		}
	}
	pieces := split(stream, cuts)
	for len(pieces) > 0 {
		p := pieces[0]
		pieces = pieces[1:]
		rest, answer, ok := c.feed(p)
		require.True(t, ok)
		if answer != nil && len(rest) > 0 {
			pieces = append([][]byte{rest}, pieces...)
		}
		require.LessOrEqual(t, c.framer.Pending(), int(s.cfg.Engine.MaxReceiveSize), "partial grows beyond one message")
		drain()
	}
	return out
}

func split(b []byte, cuts []int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		if c > prev && c < len(b) {
			out = append(out, b[prev:c])
			prev = c
		}
	}
	return append(out, b[prev:])
}

func everyByte(n int) []int {
	cuts := make([]int, n)
	for i := range cuts {
		cuts[i] = i
	}
	return cuts
}

func randomCuts(r *rand.Rand, n int) []int {
	var cuts []int
	for i := 0; i < n; i += 1 + r.IntN(64) {
		cuts = append(cuts, i)
	}
	return cuts
}

// capturedStreams are the real client's byte streams from the rig.
func capturedStreams(t testing.TB) map[string][]byte {
	files, err := filepath.Glob("../wire/testdata/captures/*-c2s.hex")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out := map[string][]byte{}
	for _, name := range files {
		f, err := os.Open(name)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			b, err := hex.DecodeString(line)
			require.NoError(t, err, name)
			out[filepath.Base(name)] = append(out[filepath.Base(name)], b...)
		}
		f.Close()
	}
	return out
}

// badStream has every kind of framing trouble: an unknown type with and
// without a body, an oversized message, a message that does not decode,
// a STARTTLS with bytes behind it, and an unfinished tail.
func badStream() []byte {
	var b []byte
	b = append(b, 0x00, 0x63, 0, 0, 0, 0)                   // unknown type, no body
	b = append(b, 0x00, 0x63, 0, 0, 0, 3, 1, 2, 3)          // unknown type, body
	b = append(b, 0x00, 0x00, 0, 0, 0x80, 0x01)             // PREINIT announcing 32 KiB + 1
	b = append(b, make([]byte, 0x8001)...)                  // ... its body
	b = append(b, 0x00, 0x00, 0, 0, 0, 3, 0xff, 0xff, 0xff) // PREINIT that does not decode
	b = append(b, withSeq(wire.MsgEchoRequest)...)
	b = append(b, withSeq(wire.MsgStartTLS)...)
	b = append(b, 0x16, 0x03, 0, 0, 0, 0x30) // TLS bytes read as plaintext: an unknown type
	b = append(b, make([]byte, 0x30)...)
	b = append(b, 0x00, 0x0c, 0, 0, 0, 10, 1, 2) // unfinished
	return b
}

func TestFramerGivesTheSameMessagesHoweverTheBytesArrive(t *testing.T) {
	streams := capturedStreams(t)
	streams["bad"] = badStream()
	r := rand.New(rand.NewPCG(1, 2))
	for name, stream := range streams {
		whole := frameEvents(t, stream, nil)
		require.NotEmpty(t, whole, name)
		require.Equal(t, whole, frameEvents(t, stream, everyByte(len(stream))), "%s: a byte at a time", name)
		for i := 0; i < 20; i++ {
			require.Equal(t, whole, frameEvents(t, stream, randomCuts(r, len(stream))), "%s: random pieces", name)
		}
	}
	require.Equal(t, []string{
		"frame error no error",
		"frame error unsupported message",
		"frame error message too long",
		"decode error " + frameDecodeErr(t, []byte{0x00, 0x00, 0, 0, 0, 3, 0xff, 0xff, 0xff}),
		fmt.Sprintf("message %x starttls=false", withSeq(wire.MsgEchoRequest)),
		fmt.Sprintf("message %x starttls=true", withSeq(wire.MsgStartTLS)),
		"frame error unsupported message",
	}, frameEvents(t, streams["bad"], nil))
}

func withSeq(typ wire.MsgType) []byte {
	m := &wire.Msg{Type: typ, Seq: 1}
	m.Set(wire.OptSeq)
	return m.Append(nil)
}

func frameDecodeErr(t *testing.T, raw []byte) string {
	_, err := wire.Decode(raw)
	require.Error(t, err)
	return err.Error()
}

// FuzzFramer: whatever a client sends, and however the kernel cuts it
// into reads, the framer posts the same events and never holds more than
// one message.
func FuzzFramer(f *testing.F) {
	for _, s := range capturedStreams(f) {
		f.Add(s, uint64(1))
	}
	f.Add(badStream(), uint64(7))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		whole := frameEvents(t, stream, nil)
		cuts := randomCuts(rand.New(rand.NewPCG(seed, seed)), len(stream))
		require.Equal(t, whole, frameEvents(t, stream, cuts))
	})
}
