package engine_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
)

// infoLines runs the blocks against an engine logging at info and returns
// its lines as maps.
func infoLines(t *testing.T, r *client.Runner, buf *bytes.Buffer, block string) []map[string]any {
	t.Helper()
	buf.Reset()
	_, err := r.Run(client.Block{Commands: splitLines(block)})
	require.NoError(t, err)
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

func messages(lines []map[string]any) []string {
	var out []string
	for _, l := range lines {
		out = append(out, l["message"].(string))
	}
	return out
}

// TestDecisionsLogAtInfo: every decision that changes something and every
// vote change is one info line with the cluster, partition or node and
// the reason in fields; a round that repeats the last decision, and a
// vote sent again unchanged, stay below info.
func TestDecisionsLogAtInfo(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.InfoLevel)
	tr := client.NewEngineTransportLog(scenarioConfig(), log)
	r := client.NewRunner(tr)

	lines := infoLines(t, r, &buf, "cluster c1 algorithm=ffsplit tie_breaker=lowest kap=off\njoin 1 2 nodes=1,2 ring=1.4")
	require.Contains(t, messages(lines), "ffsplit decision: a partition gets the qdevice vote")
	gets := 0
	for _, l := range lines {
		if l["message"] == "node gets the qdevice vote" {
			gets++
			require.Equal(t, "c1", l["cluster"])
			require.NotEmpty(t, l["reason"])
		}
		if l["message"] == "ffsplit decision: a partition gets the qdevice vote" {
			require.Equal(t, "1,2", l["partition"])
			require.NotEmpty(t, l["reason"])
		}
	}
	require.Equal(t, 2, gets, "one line per node that got the vote")

	lines = infoLines(t, r, &buf, "cluster c1\nsplit 1|2 seq=8")
	var split, lost int
	for _, l := range lines {
		switch l["message"] {
		case "ffsplit decision: a partition gets the qdevice vote":
			split++
			require.Equal(t, "1", l["partition"], "tie_breaker lowest")
		case "node loses the qdevice vote":
			lost++
			require.EqualValues(t, 2, l["node_id"])
		}
	}
	require.Equal(t, 1, split, "one decision line for the split: %v", messages(lines))
	require.Equal(t, 1, lost, "node 2 loses the vote: %v", messages(lines))

	// The same split reported again decides the same: nothing at info.
	lines = infoLines(t, r, &buf, "cluster c1\nsplit 1|2 seq=9")
	for _, l := range lines {
		require.NotContains(t, l["message"], "decision", "a repeated decision is not an info line")
		require.NotContains(t, l["message"], "qdevice vote", "an unchanged vote is not an info line")
	}
}

// TestNodeConnectsAndLeavesAtInfo: a node's connect and disconnect are
// info lines with its cluster and node id.
func TestNodeConnectsAndLeavesAtInfo(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.InfoLevel)
	r := client.NewRunner(client.NewEngineTransportLog(scenarioConfig(), log))
	lines := infoLines(t, r, &buf, "cluster c1 algorithm=lms tie_breaker=lowest\njoin 1 nodes=1 ring=1.4")
	require.Contains(t, messages(lines), "client initialised")
	lines = infoLines(t, r, &buf, "cluster c1\ndisconnect 1")
	require.Contains(t, messages(lines), "node disconnected")
	for _, l := range lines {
		if l["message"] == "node disconnected" {
			require.Equal(t, "c1", l["cluster"])
			require.EqualValues(t, 1, l["node_id"])
		}
	}
}
