package load_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/bench"
	"github.com/qnetd-addon/qnetd/internal/pki"
)

// snapshot reads every regular file of dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = b
	}
	return out
}

// TestKill9AtRandomMoments runs our binary with TLS and a data directory,
// 30 two-node clusters with client certificates from its CA, and kills the
// daemon with SIGKILL 20 times at random moments: half of them while the
// clusters split and heal, half during the reconnect storm right after a
// restart. After each kill the data directory is unchanged and loads with
// the same CA; after each restart that is not cut short by the next kill,
// every node holds the vote again within one heartbeat interval of
// starting the process (nodes reconnect like corosync-qdevice: at once,
// then after a random pause).
func TestKill9AtRandomMoments(t *testing.T) {
	const kills, clusters = 20, 30
	hb := 2 * time.Second
	dir := t.TempDir()
	s, err := bench.StartOursWith(ourBinary(t), bench.Options{TLS: true, Dir: dir})
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	nss := filepath.Join(dir, "nssdb")
	a, err := pki.Load(nss)
	require.NoError(t, err)
	ca := a.CA.Raw
	files := snapshot(t, nss)

	f := fleet(t, bench.FleetConfig{Addr: s.Addr, Prefix: "k9-", Clusters: clusters, Nodes: 2, Heartbeat: hb,
		TLS: s.ClientTLS, ReconnectPause: 200 * time.Millisecond})
	_, err = f.WaitAllAcked(30 * time.Second)
	require.NoError(t, err)

	revoted := 0
	var slowest time.Duration
	kill := func(i int) {
		exited, xerr := s.Exited()
		require.False(t, exited, "before kill %d the server exited by itself: %v\n%s", i+1, xerr, s.Log())
		s.Kill()
	}
	for i := 0; i < kills; i++ {
		duringSplits := i%2 == 0
		if duringSplits {
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				bench.RunSplitsUntil(f, nil, 50, time.Hour, stop) // errors expected: the server dies under them
			}()
			time.Sleep(rand.N(time.Second)) // a random moment of the workload
			kill(i)
			close(stop)
			<-done
		} else {
			time.Sleep(rand.N(300 * time.Millisecond)) // a random moment of the reconnect storm
			kill(i)
		}
		require.NoError(t, f.WaitUp(0, 10*time.Second), "kill %d", i+1)

		require.Equal(t, files, snapshot(t, nss), "kill %d changed the data directory", i+1)
		a, err := pki.Load(nss)
		require.NoError(t, err, "kill %d", i+1)
		require.True(t, bytes.Equal(ca, a.CA.Raw), "kill %d: another CA", i+1)

		// Membership changed while qnetd was away: every cluster whole again.
		f.HealOffline()
		t0 := time.Now()
		require.NoError(t, s.Start(), "restart after kill %d", i+1)
		if nextDuringStorm := (i+1)%2 == 1 && i+1 < kills; nextDuringStorm {
			continue
		}
		at, err := f.WaitAllAcked(3 * hb)
		require.NoError(t, err, "after kill %d", i+1)
		took := at.Sub(t0)
		require.LessOrEqual(t, took, hb, "after kill %d every node held the vote only after %s", i+1, took)
		slowest = max(slowest, took)
		revoted++
	}
	require.Empty(t, s.Crashes(), "the server died by itself")
	t.Logf("%d kills; %d restarts checked, every node re-voted after at most %s (heartbeat %s)", kills, revoted, slowest, hb)
}
