package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

type recorder struct {
	decisions []string
	calls     []string // every call, in order
}

func (r *recorder) VoteSent(cluster string, node uint32, v wire.Vote, _ string) {
	r.calls = append(r.calls, fmt.Sprintf("vote %s/%d %s", cluster, node, v))
}

func (r *recorder) Decided(cluster string, d engine.Decision) {
	r.decisions = append(r.decisions, fmt.Sprintf("%s %v: %s", cluster, d.Winners, d.Reason))
	r.calls = append(r.calls, fmt.Sprintf("decided %s %v", cluster, d.Winners))
}

func (r *recorder) NodeLeft(cluster string, node uint32) {
	r.calls = append(r.calls, fmt.Sprintf("left %s/%d", cluster, node))
}

// left is the NodeLeft calls among calls.
func left(calls []string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, "left ") {
			out = append(out, c)
		}
	}
	return out
}

// TestDecisionReasons: the observer hears which partition won and why.
func TestDecisionReasons(t *testing.T) {
	tr := client.NewEngineTransport(scenarioConfig())
	rec := &recorder{}
	tr.E.SetObserver(rec)
	r := client.NewRunner(tr)
	for _, block := range []string{
		"cluster c1 algorithm=ffsplit tie_breaker=lowest kap=off\njoin 1 2 3 4 nodes=1,2,3,4 ring=1.4",
		"split 1,2|3,4 seq=8",
		"heuristics 3 pass\nheuristics 4 pass",
	} {
		_, err := r.Run(client.Block{Commands: splitLines(block)})
		require.NoError(t, err)
	}
	require.Contains(t, rec.decisions, "c1 [1 2 3 4]: has a majority: 4 of 4 configured nodes")
	require.Contains(t, rec.decisions, "c1 [1 2]: 50:50 split, equal scores; it holds the tie-breaker node 1 (node with lowest node id)")
	require.Equal(t, "c1 [3 4]: 50:50 split; better heuristics score (4 against 2)", rec.decisions[len(rec.decisions)-1])
}

func splitLines(s string) []string { return strings.Split(s, "\n") }

// TestNodeLeft: the observer hears every node that leaves its cluster,
// once, after the votes its departure caused, and never a connection that
// was refused before joining (a second node 1), so what it keeps per node
// can go with the node.
func TestNodeLeft(t *testing.T) {
	tr := client.NewEngineTransport(scenarioConfig())
	rec := &recorder{}
	tr.E.SetObserver(rec)
	r := client.NewRunner(tr)
	run := func(block string) {
		t.Helper()
		_, err := r.Run(client.Block{Commands: splitLines(block)})
		require.NoError(t, err)
	}
	run("cluster c1 algorithm=ffsplit tie_breaker=lowest kap=off\njoin 1 2 3 nodes=1,2,3 ring=1.4")
	run("cluster c2 algorithm=lms tie_breaker=lowest\njoin 1 nodes=1 ring=1.4")
	run("cluster c1\nduplicate 1")
	require.Empty(t, left(rec.calls), "nobody left; the refused second node 1 never joined")

	run("cluster c1\ndisconnect 3")
	require.Equal(t, []string{"left c1/3"}, left(rec.calls))
	run("cluster c1\nsplit 1|2 seq=8")
	mark := len(rec.calls)
	run("cluster c1\ndisconnect 2")
	after := rec.calls[mark:]
	// Node 1 had NACK since the split: the same NACK again is no change,
	// so the observer hears only the decision, then the departure.
	require.Equal(t, []string{"decided c1 []", "left c1/2"}, after, "the departure comes after the decision it caused")
	run("cluster c1\ndisconnect 1\ncluster c2\ndisconnect 1")
	require.Equal(t, []string{"left c1/3", "left c1/2", "left c1/1", "left c2/1"}, left(rec.calls))
	st := tr.E.Status()
	require.Empty(t, st.Clusters)
}
