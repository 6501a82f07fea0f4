package bench

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/server/servertest"

	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func inProcess(t *testing.T, mutate func(*server.Config)) string {
	t.Helper()
	_, ln := servertest.Start(t, mutate)
	return ln.Addr().String()
}

func TestReadProc(t *testing.T) {
	st, err := ReadProc(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, st.RSS)
	require.GreaterOrEqual(t, st.HWM, st.RSS/2)
	require.Positive(t, st.RSSFile, "the test binary's own pages")
	require.Less(t, st.RSSFile, st.RSS)
	require.Positive(t, st.Threads)
	n, err := CountFDs(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, n)
}

func TestFleetSplitsHealsAndReconnects(t *testing.T) {
	addr := inProcess(t, nil)
	f, err := NewFleet(FleetConfig{Addr: addr, Clusters: 5, Nodes: 3, Heartbeat: time.Second, ReconnectPause: 50 * time.Millisecond})
	require.NoError(t, err)
	f.Start()
	defer f.Close()
	_, err = f.WaitAllAcked(10 * time.Second)
	require.NoError(t, err)

	c := f.Clusters[0]
	// Whole -> {1} and {2,3}: the larger partition wins.
	_, err = c.Flip(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, client.Nack, c.Nodes[0].Vote())
	require.Equal(t, client.Ack, c.Nodes[1].Vote())
	require.Equal(t, client.Ack, c.Nodes[2].Vote())
	// Heal: everyone.
	_, err = c.Flip(5 * time.Second)
	require.NoError(t, err)
	for _, n := range c.Nodes {
		require.Equal(t, client.Ack, n.Vote())
	}
	lat, errs, _, _ := RunSplits(f, nil, 50, 500*time.Millisecond)
	require.Empty(t, errs)
	require.NotEmpty(t, lat)
	require.Zero(t, f.BadOutcomes.Load(), f.BadOutcome())

	// A dropped node comes back and votes again.
	c = f.Clusters[1]
	require.True(t, c.TryLock())
	c.Nodes[2].Drop()
	require.NoError(t, c.WaitVoted(5*time.Second))
	c.Unlock()
	require.Zero(t, f.Losses.Load())
	require.Zero(t, f.EchoMissed.Load())
}

func TestFleetTLS(t *testing.T) {
	a, err := pki.Init(t.TempDir(), time.Now())
	require.NoError(t, err)
	addr := inProcess(t, func(c *server.Config) {
		c.Engine.TLS = wire.TLSRequired
		c.TLS = a.TLSConfig(true)
	})
	f, err := NewFleet(FleetConfig{Addr: addr, Clusters: 3, TLS: cachedTLS(func(cl string) (*tls.Config, error) { return GoSignedClient(a, cl) })})
	require.NoError(t, err)
	f.Start()
	defer f.Close()
	_, err = f.WaitAllAcked(10 * time.Second)
	require.NoError(t, err, f.FirstError())
	require.Equal(t, 6, f.Up())
}

func TestReport(t *testing.T) {
	rep := &Report{Workloads: []*Pair{
		{Name: nameConnect(false), Upstream: &Result{Server: "upstream", Clients: 2000, Voted: 2000, AllVotedS: 10, RSSIdleMB: 12, MemPerClientKB: 2.2, ReturnedS: -1, RSSAfterMB: 16},
			Ours: &Result{Server: "ours", Clients: 2000, Voted: 2000, AllVotedS: 0.5, RSSIdleMB: 6, MemPerClientKB: 30, ReturnedS: 3, RSSAfterMB: 7}},
		{Name: nameConnect(true), Upstream: &Result{Server: "upstream", Clients: 2000, Voted: 2000, AllVotedS: 32, MemPerClientKB: 85, ReturnedS: -1},
			Ours: &Result{Server: "ours", Clients: 2000, Voted: 2000, AllVotedS: 2, MemPerClientKB: 40, ReturnedS: 100, ReturnedPct: 80}},
		{Name: nameIdle, Upstream: &Result{Workload: "idle", Server: "upstream", Clients: 10000, Voted: 10000, CPUS: 12, WindowS: 24, MemPerClientKB: 2.14, Returned5sPct: 0, RSSAfterMB: 30},
			Ours: &Result{Workload: "idle", Server: "ours", Clients: 10000, Voted: 10000, CPUS: 0.6, WindowS: 24, MemPerClientKB: 2.2, Returned5sPct: 95, RSSAfterMB: 12,
				AgainAddedMB: 10.8, Again5sPct: 100, FirstKeptMB: 2.9, FirstKeptFileMB: 0.6}},
		{Name: nameSplits, Upstream: &Result{Server: "upstream", Clusters: 1000, Decisions: 10, P50Ms: 44, P99Ms: 48, CPUPerDecisionMs: 5.8},
			Ours: &Result{Server: "ours", Clusters: 1000, Decisions: 10, P50Ms: 0.3, P99Ms: 2, Losses: 1, FirstError: "x", CPUPerDecisionMs: 0.12,
				CPUPerDecisionNetMs: 0.1}},
	}}
	for _, p := range rep.Workloads {
		p.Finish()
	}
	rep.Evaluate()
	require.InDelta(t, 0.05, rep.Workloads[0].Ratio["all_voted_s"], 1e-9)
	require.InDelta(t, 0.05, rep.Workloads[2].Ratio["cpu_s"], 1e-9)
	met := map[string]bool{}
	for _, g := range rep.Goals {
		met[g.Goal] = g.Met
	}
	require.Equal(t, map[string]bool{
		"2000-client TLS storm >= 5x faster":                                                      true,
		"TLS memory per client <= 1/2 of upstream and returned after disconnect (2/3 of it back)": true,
		"decision latency p50 <= 2 ms and p99 <= 10 ms":                                           true,
		"server CPU per decision <= 0.15 ms (splits at a fixed rate)":                             true,
		"idle CPU at 10000 clients <= 1/10 of upstream":                                           true,
		"plain memory per client at 10000 clients <= upstream's":                                  false,
		"at least 90 % of the memory the clients added back within 5 s after they left":           true,
		"idle RSS <= upstream's":                                                                  true,
		"plain memory per client <= 2x upstream":                                                  false,
	}, met)
	var b bytes.Buffer
	rep.Markdown(&b)
	out := b.String()
	require.Contains(t, out, "| | ours/upstream |")
	require.Contains(t, out, "splits, ours: 1 connections lost; first: x")
	require.Contains(t, out, "plain memory per client <= 2x upstream: **MISSED**")
	require.Contains(t, out, "plain memory per client at 10000 clients <= upstream's: **MISSED** (1.03x: 2.20 kB vs 2.14 kB)")
	require.Contains(t, out, "| 12.0 MB (0 % back in 0 s) | 95 % | 100 % of 10.8 MB |")
	require.Contains(t, out, "| 0.12 ms | 0.1 ms |")
	require.Contains(t, out, "a second storm: ours 100 %")
	require.Contains(t, out, "of the 2.9 MB ours kept after the first, 0.6 MB are file pages of the binary")
	require.Contains(t, out, "without their heartbeats 0.100 ms")
	_, err := json.Marshal(rep)
	require.NoError(t, err)
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 2, Main(nil, &out, &errb))
	require.Contains(t, errb.String(), "splits")
	require.Equal(t, 2, Main([]string{"nope"}, &out, &errb))
}
