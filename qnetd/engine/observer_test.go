package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/scenario"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

type recorder struct{ decisions []string }

func (r *recorder) VoteSent(string, uint32, wire.Vote, string) {}

func (r *recorder) Decided(cluster string, d engine.Decision) {
	r.decisions = append(r.decisions, fmt.Sprintf("%s %v: %s", cluster, d.Winners, d.Reason))
}

// TestDecisionReasons: the observer hears which partition won and why.
func TestDecisionReasons(t *testing.T) {
	tr := scenario.NewEngineTransport(scenarioConfig())
	rec := &recorder{}
	tr.E.SetObserver(rec)
	r := scenario.NewRunner(tr)
	for _, block := range []string{
		"cluster c1 algorithm=ffsplit tie_breaker=lowest kap=off\njoin 1 2 3 4 nodes=1,2,3,4 ring=1.4",
		"split 1,2|3,4 seq=8",
		"heuristics 3 pass\nheuristics 4 pass",
	} {
		_, err := r.Run(scenario.Block{Commands: splitLines(block)})
		require.NoError(t, err)
	}
	require.Contains(t, rec.decisions, "c1 [1 2 3 4]: has a majority: 4 of 4 configured nodes")
	require.Contains(t, rec.decisions, "c1 [1 2]: 50:50 split, equal scores; it holds the tie-breaker node 1 (node with lowest node id)")
	require.Equal(t, "c1 [3 4]: 50:50 split; better heuristics score (4 against 2)", rec.decisions[len(rec.decisions)-1])
}

func splitLines(s string) []string { return strings.Split(s, "\n") }
