package wire

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// capturedMsg is one message of a real qdevice <-> qnetd capture.
type capturedMsg struct {
	File string // base name of the .hex file
	Line int    // 1-based line number in File
	Name string // type name from the trailing "# ..." comment
	Raw  []byte // whole message, header included
}

func (c capturedMsg) where() string { return fmt.Sprintf("%s:%d", c.File, c.Line) }

// loadCaptures parses every testdata/captures/*.hex file (one message per
// line as lowercase hex, then "  # Type name"; lines starting with '#' are
// comments) and returns the messages in file and line order. It fails the
// test on any malformed line, so every returned message is whole and
// framed: its header's length equals the body size.
func loadCaptures(t testing.TB) []capturedMsg {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "captures", "*.hex"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no capture files")
	sort.Strings(files)
	var out []capturedMsg
	for _, f := range files {
		fh, err := os.Open(f)
		require.NoError(t, err)
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
		n := 0
		perFile := 0
		for sc.Scan() {
			n++
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			hexPart, name, _ := strings.Cut(line, "#")
			hexPart = strings.TrimSpace(hexPart)
			raw, err := hex.DecodeString(hexPart)
			require.NoError(t, err, "%s:%d: bad hex", f, n)
			require.GreaterOrEqual(t, len(raw), HeaderSize, "%s:%d: shorter than a header", f, n)
			_, blen, err := ParseHeader(raw)
			require.NoError(t, err)
			require.EqualValues(t, len(raw)-HeaderSize, blen, "%s:%d: header length does not match line", f, n)
			out = append(out, capturedMsg{File: filepath.Base(f), Line: n, Name: strings.TrimSpace(name), Raw: raw})
			perFile++
		}
		require.NoError(t, sc.Err())
		require.NoError(t, fh.Close())
		require.NotZero(t, perFile, "%s: no message", f)
	}
	return out
}

func TestCapturesDecodeAndReencode(t *testing.T) {
	caps := loadCaptures(t)
	counts := map[MsgType]int{}
	for _, c := range caps {
		m, err := Decode(c.Raw)
		require.NoError(t, err, "%s: %x", c.where(), c.Raw)
		require.Equal(t, c.Name, m.Type.String(), "%s: type name in comment", c.where())
		counts[m.Type]++
		got := m.Append(nil)
		require.Equal(t, hex.EncodeToString(c.Raw), hex.EncodeToString(got),
			"%s: %s re-encodes differently", c.where(), m)
		require.Equal(t, len(c.Raw), m.Len())

		// Direction sanity: c2s files carry client messages only, s2c
		// files server messages only.
		if strings.HasSuffix(c.File, "-s2c.hex") {
			require.True(t, m.Type.ServerOnly(), "%s: %s in a server stream", c.where(), m.Type)
		} else {
			require.False(t, m.Type.ServerOnly(), "%s: %s in a client stream", c.where(), m.Type)
		}
	}
	t.Logf("%d captured messages: %v", len(caps), counts)
	for _, typ := range []MsgType{
		MsgPreinit, MsgPreinitReply, MsgStartTLS, MsgInit, MsgInitReply,
		MsgSetOption, MsgSetOptionReply, MsgEchoRequest, MsgEchoReply,
		MsgNodeList, MsgNodeListReply, MsgVoteInfo, MsgVoteInfoReply,
		MsgHeuristicsChange, MsgHeuristicsChangeReply,
	} {
		require.NotZero(t, counts[typ], "no %s in the captures", typ)
	}
	// The stock client never sends ASK_FOR_VOTE and no error occurred.
	for _, typ := range []MsgType{MsgAskForVote, MsgAskForVoteReply, MsgServerError} {
		require.Zero(t, counts[typ], "unexpected %s in the captures", typ)
	}
}
