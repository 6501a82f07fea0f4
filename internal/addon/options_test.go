package addon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOptionFiles: every good/*.json loads; every bad/*.json fails with the
// message in the .err file beside it.
func TestOptionFiles(t *testing.T) {
	good, _ := filepath.Glob("testdata/options/good/*.json")
	require.NotEmpty(t, good)
	for _, f := range good {
		_, err := LoadOptions(f)
		require.NoError(t, err, f)
	}
	bad, _ := filepath.Glob("testdata/options/bad/*.json")
	require.NotEmpty(t, bad)
	for _, f := range bad {
		want, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".err")
		require.NoError(t, err)
		_, err = LoadOptions(f)
		require.EqualError(t, err, strings.TrimSpace(string(want)), f)
	}
}
