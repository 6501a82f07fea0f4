package addon

import (
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// TestHistoryFileInDataDir: the add-on keeps the status page's decision
// history in its data dir (/data), which survives restarts and updates.
func TestHistoryFileInDataDir(t *testing.T) {
	p := Paths{Data: "/data", RunDir: "/run/q"}
	require.Equal(t, filepath.Join("/data", "status-history.json"), DaemonConfig(p, Defaults(), zerolog.Nop()).Web.HistoryFile)
}
