package engine_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scenario files")

// scenarioConfig is the server the scenarios assume: TLS off (votes do not
// depend on TLS; TLS has its own tests), upstream defaults otherwise.
func scenarioConfig() engine.Config {
	cfg := engine.DefaultConfig()
	cfg.TLS = wire.TLSUnsupported
	return cfg
}

func TestScenarios(t *testing.T) { runStories(t, "testdata/*.txt") }

// TestStates: one story per row of DOCS.md's table of cluster states,
// each for every algorithm (in-process only: the state is ours, upstream
// has none).
func TestStates(t *testing.T) { runStories(t, "testdata/state/*.txt") }

func runStories(t *testing.T, glob string) {
	files, err := filepath.Glob(glob)
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := client.ParseStory(path)
			require.NoError(t, err)
			got, err := client.RunStory(f, client.NewEngineTransport(scenarioConfig()))
			require.NoError(t, err)
			if *rewrite {
				require.NoError(t, os.WriteFile(path, []byte(f.Format(got)), 0o644))
				return
			}
			for i, b := range f.Blocks {
				require.Equal(t, b.Want, got[i], "%s:%d", path, b.Line)
			}
		})
	}
}
