package adminipc

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// words runs the lexer until it stops advancing, collecting every token
// (empty ones included, as upstream returns them).
func words(line string, max int) ([]string, bool) {
	l := NewLexer([]byte(line), max)
	var out []string
	for i := 0; i < 20; i++ {
		tok, ok := l.Next()
		if !ok {
			return out, false
		}
		if tok == "" && (l.pos >= len(l.in) || l.in[l.pos] == '\n' || l.in[l.pos] == '\r') {
			return out, true
		}
		out = append(out, tok)
	}
	return out, true
}

func TestLexer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"\n", nil},
		{"status \n", []string{"status"}},
		{"  list\tverbose\v\fcluster  x \n", []string{"list", "verbose", "cluster", "x"}},
		{`list cluster "my \"c\"" ` + "\n", []string{"list", "cluster", `my "c"`}},
		{`"a b"c d`, []string{"a bc", "d"}},
		{`ab"c d"ef`, []string{"abc def"}},
		{`"x\\y"`, []string{`x\y`}},
		{`"x\ny"`, []string{`x\ny`}},        // other backslashes are kept inside quotes
		{`a\ b\"c\\d`, []string{`a b"c\d`}}, // outside quotes every backslash escapes
		{`trailing\`, []string{"trailing"}},
		{"\"open quote\n more", []string{"open quote"}},
		{`"q\`, []string{"q"}},
		{"one\rtwo", []string{"one"}}, // \r ends the line
		{"one\ntwo\n", []string{"one"}},
		{`"" x`, []string{"", "x"}}, // callers cannot tell "" from the end, as upstream
		{"a\x00b c", []string{"a\x00b", "c"}},
	} {
		got, ok := words(tc.in, 4096)
		require.True(t, ok, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func TestLexerLimit(t *testing.T) {
	// the token and its NUL must fit in max
	_, ok := words("abcd", 5)
	require.True(t, ok)
	_, ok = words("abcde", 5)
	require.False(t, ok)
}

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Command
	}{
		{"\n", Command{Op: OpNone}},
		{"   \t\n", Command{Op: OpNone}},
		{"\"\" status\n", Command{Op: OpNone}},
		{"status \n", Command{Op: OpStatus}},
		{"STATUS Verbose\n", Command{Op: OpStatus, Verbose: true}},
		{"status x verbose\n", Command{Op: OpStatus}}, // only the 2nd word counts
		{"status verbosex\n", Command{Op: OpStatus}},
		{"list \n", Command{Op: OpList}},
		{"list verbose \n", Command{Op: OpList, Verbose: true}},
		{`list verbose cluster "my \"c\"" ` + "\n", Command{Op: OpList, Verbose: true, Cluster: `my "c"`}},
		{"list cluster a cluster b\n", Command{Op: OpList, Cluster: "b"}},
		{"list cluster\n", Command{Op: OpList}},
		{"list cluster verbose\n", Command{Op: OpList, Cluster: "verbose"}},
		{"LiSt CLUSTER x VERBOSE\n", Command{Op: OpList, Verbose: true, Cluster: "x"}},
		{"list bogus verbose\n", Command{Op: OpList}}, // another word stops parsing
		{"list cluster \"\" verbose\n", Command{Op: OpList, Verbose: true}},
		{"list cluster \"a\x00b\"\n", Command{Op: OpList, Cluster: "a"}},
		{"shutdown \n", Command{Op: OpShutdown}},
		{"ShutDown now please\n", Command{Op: OpShutdown}},
		{"status\x00junk\n", Command{Op: OpStatus}}, // C string compare
		{"stats\n", Command{Op: OpUnknown, Word: "stats"}},
		{"\"sta tus\"\n", Command{Op: OpUnknown, Word: "sta tus"}},
		{"x\x00y\n", Command{Op: OpUnknown, Word: "x"}},
		{"status", Command{Op: OpStatus}},
	} {
		require.Equal(t, tc.want, ParseCommand([]byte(tc.in), 4096), "%q", tc.in)
	}
	require.Equal(t, Command{Op: OpTooLong}, ParseCommand([]byte(strings.Repeat("a", 20)+"\n"), 8))
	require.Equal(t, Command{Op: OpTooLong}, ParseCommand([]byte("list cluster "+strings.Repeat("a", 20)+"\n"), 16))
	require.Equal(t, Command{Op: OpList}, ParseCommand([]byte("list "+strings.Repeat("a", 20)+"\n"), 16),
		"an over-long word in the list loop just ends it, as upstream")
}

func TestBuildCommand(t *testing.T) {
	name := `my "c" \x`
	empty := ""
	for _, tc := range []struct {
		op      ToolOp
		verbose bool
		cluster *string
		want    string
	}{
		{ToolStatus, false, nil, "status \n"},
		{ToolStatus, true, nil, "status verbose \n"},
		{ToolList, false, nil, "list \n"},
		{ToolList, true, &name, `list verbose cluster "my \"c\" \\x" ` + "\n"},
		{ToolShutdown, false, nil, "shutdown \n"},
		{ToolShutdown, true, &empty, `shutdown verbose cluster "" ` + "\n"},
	} {
		got, ok := BuildCommand(tc.op, tc.verbose, tc.cluster)
		require.True(t, ok)
		require.Equal(t, tc.want, got)
		// and the server reads back what was meant
		cmd := ParseCommand([]byte(got), 4096)
		if tc.op == ToolList && tc.cluster != nil {
			require.Equal(t, *tc.cluster, cmd.Cluster)
		}
	}
	long := strings.Repeat("x", 4096-len(`list cluster "" `)-2)
	_, ok := BuildCommand(ToolList, false, &long)
	require.True(t, ok)
	long += "x"
	_, ok = BuildCommand(ToolList, false, &long)
	require.False(t, ok, "4096-byte buffer including \\n\\0")
}
