package logline

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// names are the field names and texts an event is made of: the fuzzer's
// own texts first, then the names ConsoleWriter treats apart and texts
// that need quoting.
func names(a, b, c string) [16]string {
	return [16]string{a, b, c, zerolog.LevelFieldName, zerolog.TimestampFieldName, zerolog.MessageFieldName,
		zerolog.ErrorFieldName, zerolog.CallerFieldName, "", "a b", "x=y", "é", "\x00\n", `"q"\`, "<&>", "\u2028\xff"}
}

// addField adds to e the field that op says: its low 4 bits the type, its
// high 4 bits the name; arg picks the text.
func addField(e *zerolog.Event, op, arg byte, s [16]string, n int64, x float64) *zerolog.Event {
	key, text := s[op>>4], s[arg&0xf]
	switch op & 0xf {
	case 0:
		return e.Str(key, text)
	case 1:
		return e.Int64(key, n)
	case 2:
		return e.Uint32(key, uint32(n))
	case 3:
		return e.Float64(key, x)
	case 4:
		return e.Bool(key, n&1 == 1)
	case 5:
		return e.Err(errors.New(text))
	case 6:
		return e.Strs(key, s[arg&0xf:])
	case 7:
		return e.Uints32(key, []uint32{uint32(n), uint32(arg)})
	case 8:
		return e.Dur(key, time.Duration(n))
	case 9:
		return e.Time(key, time.Unix(n%(1<<40), 0))
	case 10:
		return e.Timestamp()
	case 11:
		return e.Dict(key, zerolog.Dict().Str(text, key).Int(key, int(arg)))
	case 12:
		return e.Interface(key, nil)
	case 13:
		return e.Floats64(key, []float64{x, math.Inf(1)})
	case 14:
		return e.Bytes(key, []byte(text))
	}
	return e.AnErr(key, nil)
}

// logEvent makes one zerolog line from the fuzzer's input: ops[0] the level
// (and whether the logger stamps the time), every two bytes after it a
// field, an odd length a message.
func logEvent(ops []byte, a, b, c string, n int64, x float64) []byte {
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	if len(ops) == 0 {
		ops = []byte{2}
	}
	if ops[0]&0x80 != 0 {
		log = log.With().Timestamp().Logger()
	}
	var e *zerolog.Event
	switch ops[0] & 0xf {
	case 0:
		e = log.Trace()
	case 1:
		e = log.Debug()
	case 2:
		e = log.Info()
	case 3:
		e = log.Warn()
	case 4:
		e = log.Error()
	case 5:
		e = log.WithLevel(zerolog.FatalLevel)
	case 6:
		e = log.WithLevel(zerolog.PanicLevel)
	default:
		e = log.Log()
	}
	s := names(a, b, c)
	for i := 1; i+1 < len(ops); i += 2 {
		e = addField(e, ops[i], ops[i+1], s, n, x)
	}
	if len(ops)%2 == 0 {
		e.Msg(s[ops[len(ops)-1]&0xf])
	} else {
		e.Send()
	}
	return buf.Bytes()
}

// FuzzSameAsConsoleWriter: whatever zerolog event is logged, the line is
// the one ConsoleWriter prints, byte for byte.
func FuzzSameAsConsoleWriter(f *testing.F) {
	// The engine's decision: Str cluster, Uint32 node_id, Str addr,
	// Str algorithm, Str reason, Msg.
	f.Add([]byte{0x82, 0x00, 0x01, 0x12, 0x00, 0x20, 0x02, 0x00, 0x00, 0x30, 0x02, 0x01}, "cluster", "node_id",
		"its request for a vote", int64(2), 0.0)
	// The cluster watch: vote_holders as an array of numbers.
	f.Add([]byte{0x82, 0x00, 0x00, 0x17, 0x01, 0x21, 0x00, 0x0b}, "cluster", "vote_holders", "nodes", int64(3), 0.0)
	// A TLS handshake failure: an error besides the fields.
	f.Add([]byte{0x83, 0x00, 0x01, 0x05, 0x02, 0x90, 0x00, 0x00}, "addr", "192.0.2.7:40312",
		"tls: first record does not look like a TLS handshake", int64(0), 0.0)
	// The pairing endpoint: an argument list.
	f.Add([]byte{0x83, 0x06, 0x02, 0x00, 0x01, 0x02}, "args", "-s", "pairing: scp refused", int64(-1), 1.5)
	// No level, the special names as fields, a nested object.
	f.Add([]byte{0x0f, 0x30, 0x00, 0x40, 0x01, 0x50, 0x02, 0x70, 0x03, 0x0b, 0x0c}, "x", "y", "z", int64(1), math.NaN())
	f.Fuzz(func(t *testing.T, ops []byte, a, b, c string, n int64, x float64) {
		p := logEvent(ops, a, b, c, n, x)
		layout := time.DateTime
		if n&2 != 0 {
			layout = ""
		}
		same(t, p, layout)
	})
}

// FuzzRawLine: whatever bytes are written, ours writes and returns what
// ConsoleWriter does, its decoding error included.
func FuzzRawLine(f *testing.F) {
	f.Add(decisionLine())
	f.Add([]byte(`{"level":"info","cluster":"c","old_state":"gone","new_state":"quorate","reason":"a node joined","vote_holders":[1,2],"nodes":2,"time":"2026-03-04T05:06:07Z","message":"cluster state changed"}` + "\n"))
	f.Add([]byte(`{"level":"warn","addr":"[2001:db8::1]:5403","cluster":"","reason":"tls","error":"remote error: tls: bad certificate","time":"2026-03-04T05:06:07+02:00","message":"TLS handshake failed"}` + "\n"))
	f.Add([]byte(`{"level":"info","addr":"10.0.0.1","args":["-s","-n","pve"],"message":"pairing: corosync-qnetd-tool"}`))
	f.Add([]byte(`{"a":"\ud83d\ude00\ud800\u0000\"\\\/\b\f\n\r\t","b":-0.0e-0,"c":[true,false,null],"d":{"e":[]}}`))
	f.Add([]byte("{\"\xff\":\"\xc3\x28\"}  \r\n"))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, p []byte) {
		same(t, p, time.DateTime)
	})
}
