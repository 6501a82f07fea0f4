package logline

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// written is what one Write of a writer gave.
type written struct {
	out string
	n   int
	err string
}

func write(w func(out *bytes.Buffer) interface {
	Write([]byte) (int, error)
}, p []byte) written {
	var buf bytes.Buffer
	n, err := w(&buf).Write(p)
	r := written{out: buf.String(), n: n}
	if err != nil {
		r.err = err.Error()
	}
	return r
}

func console(layout string) func(out *bytes.Buffer) interface{ Write([]byte) (int, error) } {
	return func(out *bytes.Buffer) interface{ Write([]byte) (int, error) } {
		return zerolog.ConsoleWriter{Out: out, NoColor: true, TimeFormat: layout}
	}
}

func ours(layout string) func(out *bytes.Buffer) interface{ Write([]byte) (int, error) } {
	return func(out *bytes.Buffer) interface{ Write([]byte) (int, error) } { return New(out, layout) }
}

// same requires that both writers give the same for p, and says whether
// ours took its own way (not ConsoleWriter's).
func same(t testing.TB, p []byte, layout string) (string, bool) {
	t.Helper()
	want := write(console(layout), p)
	got := write(ours(layout), p)
	if want != got {
		t.Fatalf("line %q:\nConsoleWriter: %q n=%d err=%q\nlogline:       %q n=%d err=%q",
			p, want.out, want.n, want.err, got.out, got.n, got.err)
	}
	var l line
	_, fast := l.format(p, layout)
	return got.out, fast
}

// local is how a time of the tests prints in the local zone.
func local(rfc3339, layout string) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic(err)
	}
	return t.In(time.Local).Format(layout)
}

func TestWriterLines(t *testing.T) {
	ts := local("2026-03-04T05:06:07+01:00", time.DateTime)
	cases := []struct {
		name, in, want string
		fast           bool // taken apart here, not by ConsoleWriter
	}{
		{"decision", `{"level":"info","time":"2026-03-04T05:06:07+01:00","cluster":"c1","node_id":2,"addr":"192.0.2.1:5403","algorithm":"ffsplit","reason":"its request for a vote","message":"node gets the qdevice vote"}` + "\n",
			ts + ` INF node gets the qdevice vote addr=192.0.2.1:5403 algorithm=ffsplit cluster=c1 node_id=2 reason="its request for a vote"` + "\n", true},
		{"error first", `{"level":"warn","zeta":1,"error":"boom: it broke","alpha":"a","message":"m"}`,
			`<nil> WRN m error="boom: it broke" alpha=a zeta=1` + "\n", true},
		{"error drops an empty name", `{"level":"error","":"x","error":"e","b":true}`,
			`<nil> ERR error=e b=true` + "\n", true},
		{"empty name without error", `{"level":"debug","":"x","b":false}`,
			`<nil> DBG =x b=false` + "\n", true},
		{"no level", `{"message":"hello","n":-1.5e+3}`, `<nil> ??? hello n=-1.5e+3` + "\n", true},
		{"null level and message", `{"level":null,"message":null,"v":null}`, `<nil> ??? v=null` + "\n", true},
		{"level in capitals", `{"level":"TRACE"}`, `<nil> TRC` + "\n", true},
		{"every level", `{"level":"panic","message":"p"}`, `<nil> PNC p` + "\n", true},
		{"fatal", `{"level":"fatal"}`, `<nil> FTL` + "\n", true},
		{"unknown level", `{"level":"notice","message":"m"}`, `<nil> NOT m` + "\n", false},
		{"numeric level name", `{"level":"1"}`, `<nil> INF` + "\n", false},
		{"number level", `{"level":3}`, `<nil> 3` + "\n", false},
		{"empty message", `{"level":"info","message":"","a":"b"}`, `<nil> INF a=b` + "\n", true},
		{"number message", `{"level":"info","message":12}`, `<nil> INF 12` + "\n", true},
		{"bool message", `{"level":"info","message":true}`, `<nil> INF %!s(bool=true)` + "\n", false},
		{"message as it is", `{"level":"info","message":"a \"b\"\n\tc"}`, "<nil> INF a \"b\"\n\tc\n", true},
		{"quoted values", `{"s":"a b","q":"say \"hi\"","bs":"a\\b","ctl":"\u0001\u007f","nl":"x\ny","u":"ünï","e":""}`,
			`<nil> ??? bs="a\\b" ctl="\x01\x7f" e= nl="x\ny" q="say \"hi\"" s="a b" u="ünï"` + "\n", true},
		{"not printable", `{"z":"\u200b\ud83d\ude00\udb40\udc01"}`, `<nil> ??? z="\u200b😀\U000e0001"` + "\n", true},
		{"lone surrogate", `{"z":"\ud800x"}`, `<nil> ??? z="�x"` + "\n", true},
		{"invalid UTF-8", "{\"z\":\"a\xffb\"}", `<nil> ??? z="a�b"` + "\n", true},
		{"names printed as they are", `{"a b":"1","x=y":"2","\u00e9":3}`, `<nil> ??? a b=1 x=y=2 é=3` + "\n", true},
		{"time", `{"time":"2026-03-04T05:06:07+01:00"}`, ts + " ???\n", true},
		{"time that does not parse", `{"time":"yesterday"}`, "yesterday ???\n", true},
		{"empty time", `{"time":"","level":"info"}`, "INF\n", true},
		{"null time", `{"time":null}`, "<nil> ???\n", true},
		{"unix time", `{"time":1700000000}`, local("2023-11-14T22:13:20Z", time.DateTime) + " ???\n", false},
		{"arrays", `{"level":"info","args":["-l", "x y"],"ids":[ 1 , 2,3 ],"none":[],"mix":[true,null,-0.5]}`,
			`<nil> INF args=["-l","x y"] ids=[1,2,3] mix=[true,null,-0.5] none=[]` + "\n", true},
		{"array of text", `{"a":["<b>&","ü","\u00fc",""]}`, `<nil> ??? a=["<b>&","ü","ü",""]` + "\n", false},
		{"array of text as it is", `{"a":["<b>&","ü",""]}`, `<nil> ??? a=["<b>&","ü",""]` + "\n", true},
		{"array with escapes", `{"a":["x\"y","\/","\u0001","\u2028"]}`, `<nil> ??? a=["x\"y","/","\u0001","\u2028"]` + "\n", false},
		{"nested", `{"d":{"b":1,"a":[{}]}}`, `<nil> ??? d={"a":[{}],"b":1}` + "\n", false},
		{"caller", `{"caller":"x.go:1"}`, "<nil> ??? x.go:1 >\n", false},
		{"name twice", `{"a":1,"a":2}`, "<nil> ??? a=2\n", false},
		{"level twice", `{"level":"info","level":"warn"}`, "<nil> WRN\n", false},
		{"white space", " \t{ \"a\" : 1 ,\r\n\"b\":\"c\" } \r\n", "<nil> ??? a=1 b=c\n", false},
		{"white space inside", "{ \"a\" : 1 ,\r\n\"b\":\"c\" } \r\n", "<nil> ??? a=1 b=c\n", true},
		{"empty object", `{}`, "<nil> ???\n", true},
		{"trailing text", `{"a":1}x`, "<nil> ??? a=1\n", false},
		{"escaped names", `{"lev\u0065l":"info","m\/":"\/"}`, "<nil> INF m/=/\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, fast := same(t, []byte(c.in), time.DateTime)
			require.Equal(t, c.want, got)
			require.Equal(t, c.fast, fast, "taken apart here")
		})
	}
}

func TestWriterNotJSON(t *testing.T) {
	for _, in := range []string{"", "\n", "x", "[1]", `"s"`, "null", `{"a":}`, `{"a":1,}`, `{"a":01}`,
		`{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":tru}`, `{"a":truex}`, `{"a":"\x"}`, `{"a":"\u12"}`,
		"{\"a\":\"\x01\"}", `{"a":"b`, `{"a"`, `{"a" 1}`, `{1:2}`, `{"a":[1,]}`, `{"a":[1 2]}`, `{"a":[`, "{\"a\":[\"\xff\"]}", `{"a":[[]]}`} {
		t.Run(in, func(t *testing.T) {
			_, fast := same(t, []byte(in), time.DateTime)
			require.False(t, fast, "%q is not a flat JSON object", in)
		})
	}
}

// TestWriterKitchen: the pairing command's writer has no time format, and
// ConsoleWriter's default is time.Kitchen.
func TestWriterKitchen(t *testing.T) {
	got, fast := same(t, []byte(`{"level":"info","time":"2026-03-04T15:06:07Z","message":"m"}`), "")
	require.True(t, fast)
	require.Equal(t, local("2026-03-04T15:06:07Z", time.Kitchen)+" INF m\n", got)
}

// TestWriterTimeKept: the time kept from the previous line is used only
// for the same time.
func TestWriterTimeKept(t *testing.T) {
	var buf bytes.Buffer
	w := New(&buf, time.DateTime)
	for _, s := range []string{"2026-03-04T05:06:07Z", "2026-03-04T05:06:07Z", "2026-03-04T05:06:08Z", "bad", ""} {
		buf.Reset()
		_, err := fmt.Fprintf(w, `{"time":%q}`, s)
		require.NoError(t, err)
		want := s
		if tt, err := time.Parse(time.RFC3339, s); err == nil {
			want = tt.In(time.Local).Format(time.DateTime)
		}
		require.Equal(t, strings.TrimPrefix(want+" ???\n", " "), buf.String())
	}
}

// TestQuoteEveryRune compares appendQuoted with strconv.Quote for every
// rune, alone and between ASCII.
func TestQuoteEveryRune(t *testing.T) {
	var b []byte
	for r := rune(0); r <= utf8.MaxRune; r++ {
		s := "a" + string(r) + "\x00"
		b = appendQuoted(b[:0], []byte(s))
		if string(b) != strconv.Quote(s) {
			t.Fatalf("rune %U: %s, strconv.Quote %s", r, b, strconv.Quote(s))
		}
	}
	for c := 0; c < 256; c++ {
		s := string([]byte{byte(c)})
		require.Equal(t, strconv.Quote(s), string(appendQuoted(nil, []byte(s))), "byte %#x", c)
	}
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestWriterOutputError: the output's error comes back with len(p), as
// from ConsoleWriter.
func TestWriterOutputError(t *testing.T) {
	p := []byte(`{"level":"info","message":"m"}` + "\n")
	wn, werr := zerolog.ConsoleWriter{Out: failing{}, NoColor: true}.Write(p)
	n, err := New(failing{}, "").Write(p)
	require.Equal(t, wn, n)
	require.Equal(t, werr, err)
	require.Equal(t, len(p), n)
}

// TestWriterBigLine: a line above what the pool keeps is written whole
// and its buffers are not kept.
func TestWriterBigLine(t *testing.T) {
	big := strings.Repeat("x", maxKept+1)
	p := []byte(`{"level":"info","big":"` + big + `"}`)
	got, fast := same(t, p, time.DateTime)
	require.True(t, fast)
	require.Equal(t, "<nil> INF big="+big+"\n", got)
	var l line
	_, ok := l.format(p, time.DateTime)
	require.True(t, ok)
	require.False(t, l.small())
	_, ok = l.format([]byte(`{"a":1}`), time.DateTime)
	require.True(t, ok)
	require.False(t, l.small(), "a line's buffers keep their size")
	var fresh line
	_, ok = fresh.format([]byte(`{"a":1}`), time.DateTime)
	require.True(t, ok)
	require.True(t, fresh.small())
}

// TestWriterManyFields: a line with more fields than the pool keeps room
// for is printed whole, and its buffers are not kept.
func TestWriterManyFields(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"level":"info"`)
	for i := range maxKept/64 + 1 {
		fmt.Fprintf(&b, `,"f%05d":%d`, i, i)
	}
	b.WriteString("}")
	got, fast := same(t, []byte(b.String()), time.DateTime)
	require.True(t, fast)
	require.True(t, strings.HasPrefix(got, "<nil> INF f00000=0 f00001=1 "), got[:40])
	require.True(t, strings.HasSuffix(got, " f01024=1024\n"))
	var l line
	_, ok := l.format([]byte(b.String()), time.DateTime)
	require.True(t, ok)
	require.False(t, l.small())
}

// TestWriterConcurrent: lines written at once by many goroutines come out
// whole, one Write each.
func TestWriterConcurrent(t *testing.T) {
	out := &lines{}
	log := zerolog.New(New(out, time.DateTime)).With().Timestamp().Logger()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				log.Info().Int("g", g).Int("i", i).Str("pad", strings.Repeat("p", i)).Msg("line")
			}
		})
	}
	wg.Wait()
	require.Len(t, out.got, 8*200)
	seen := map[string]bool{}
	for _, l := range out.got {
		require.True(t, strings.HasSuffix(l, "\n") && strings.Count(l, "\n") == 1, "%q", l)
		f := strings.Fields(l)
		require.Equal(t, []string{"INF", "line"}, f[2:4], "%q", l)
		seen[f[4]+f[5]] = true
	}
	require.Len(t, seen, 8*200)
}

type lines struct {
	mu  sync.Mutex
	got []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, string(p))
	return len(p), nil
}

// TestWriterAllocations: a typical line costs no allocation.
func TestWriterAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates and empties pools")
	}
	w := New(discard{}, time.DateTime)
	p := decisionLine()
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// decisionLine is the line of a vote decision as the engine logs it.
func decisionLine() []byte {
	var buf bytes.Buffer
	log := zerolog.New(&buf).With().Timestamp().Logger()
	log.Info().Str("cluster", "pve-cluster").Uint32("node_id", 2).
		Str("addr", "192.168.1.12:40312").Str("algorithm", "ffsplit").Str("reason", "its request for a vote").
		Msg("node gets the qdevice vote")
	return buf.Bytes()
}
