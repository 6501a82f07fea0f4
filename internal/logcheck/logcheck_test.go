package logcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNoLogMessageFromVariableText fails the build when any log message in
// the module is built from non-constant text.
func TestNoLogMessageFromVariableText(t *testing.T) {
	found, err := Check(filepath.Join("..", ".."))
	require.NoError(t, err)
	var lines []string
	for _, f := range found {
		lines = append(lines, f.String())
	}
	require.Empty(t, lines, "put variable text into fields (Str, Err, ...), not into the message:\n%s", strings.Join(lines, "\n"))
}

// TestCheckFindsWhatItShould: the check itself, on a file with each case.
func TestCheckFindsWhatItShould(t *testing.T) {
	dir := t.TempDir()
	src := `package p

const fixed = "fixed"

func f(log, name any) {
	log.Info().Msg("constant")
	log.Info().Msg(fixed + " and " + "more")
	log.Info().Msg("hello " + name)
	log.Info().Msgf("hello %s", name)
	log.Info().Msg(err.Error())
}
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p_test.go"), []byte("package p\nfunc g(log, x any) { log.Info().Msg(x) }\n"), 0o644))
	found, err := Check(dir)
	require.NoError(t, err)
	var lines []int
	for _, f := range found {
		lines = append(lines, f.Pos.Line)
	}
	require.Equal(t, []int{8, 9, 10}, lines, "test files are not checked")
}
