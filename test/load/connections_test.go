package load_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/bench"
)

// TestTenThousandConnections runs our binary (its own process, so the
// descriptors are the server's) with 5,000 two-node clusters: every node
// gets its vote, every heartbeat is answered within the interval while
// clusters split and heal, and when the clients leave the server closes
// every descriptor they used.
func TestTenThousandConnections(t *testing.T) {
	const clusters, nodes = 5000, 2
	if need := uint64(clusters*nodes + 200); fdLimit() < need {
		t.Skipf("open file limit %d, need %d", fdLimit(), need)
	}
	s, err := bench.StartOursWith(ourBinary(t), bench.Options{})
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	pid := s.PID()
	fds0, err := bench.CountFDs(pid)
	require.NoError(t, err)

	hb := 4 * time.Second
	f := fleet(t, bench.FleetConfig{Addr: s.Addr, Prefix: "tenk", Clusters: clusters, Nodes: nodes, Heartbeat: hb, Concurrency: 500})
	_, err = f.WaitAllAcked(60 * time.Second)
	require.NoError(t, err)
	fds, _ := bench.CountFDs(pid)
	// At least one descriptor per client (fds0 may include a probe
	// connection that was still being closed when it was counted).
	require.GreaterOrEqual(t, fds, clusters*nodes)

	// Two heartbeat intervals under full load, with decisions going on.
	n := splitsFor(t, f, 20, 2*hb)
	requireServed(t, f)
	st, _ := bench.ReadProc(pid)
	t.Logf("%d connections, %d decisions; server RSS %d MB, %d threads; slowest echo %s",
		f.Total(), n, st.RSS>>20, st.Threads, f.MaxEchoRTT())
	exited, xerr := s.Exited()
	require.False(t, exited, "server exited: %v", xerr)

	f.Close()
	require.NoError(t, bench.WaitFDs(pid, fds0, 30*time.Second))
}
