// Package load_test holds the load and fault tests of issue #7: many
// connections, floods, slow and silent clients, churn, and kill -9 of the
// daemon. They assert behaviour (served within the heartbeat, back to the
// baseline, re-voted), never speed: speed is what qnetd-bench measures.
package load_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/server/servertest"

	"github.com/qnetd-addon/qnetd/internal/bench"
	"github.com/qnetd-addon/qnetd/qnetd/server"
)

var (
	soak    = flag.Bool("soak", false, "run the soak test (1,000-cluster churn)")
	soakFor = flag.Duration("soak.duration", 10*time.Minute, "how long the soak test churns")
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Every client is a descriptor: lift the soft limit to the hard one.
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func fdLimit() uint64 {
	var rl syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// ourBinary builds ./cmd/qnetd once per test run.
func ourBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "qnetd-load-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "qnetd")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/qnetd")
		cmd.Dir = moduleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build ./cmd/qnetd: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

func moduleRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return wd
}

// inProcess starts our server in this process on a free loopback port.
func inProcess(t *testing.T, mutate func(*server.Config)) (*server.Server, string) {
	t.Helper()
	srv, ln := servertest.Start(t, mutate)
	return srv, ln.Addr().String()
}

// baseline is the process's goroutines and live heap at a quiet moment,
// and the most goroutines seen since (sampled).
type baseline struct {
	goroutines int
	heap       uint64
	peak       atomic.Int64
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// takeBaseline records the baseline and samples the number of goroutines
// until the end of the test.
func takeBaseline(t *testing.T) *baseline {
	b := &baseline{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if n := int64(runtime.NumGoroutine()); n > b.peak.Load() {
				b.peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	b.goroutines, b.heap = runtime.NumGoroutine(), heapInUse()
	return b
}

// checkBaseline waits until the server has no connection left and the
// goroutines are back to the baseline (a goroutine ends a moment after
// its connection closes; there is nothing to wait on but the count), then
// checks the live heap came back too.
func checkBaseline(t *testing.T, srv *server.Server, b *baseline) {
	t.Helper()
	require.Eventually(t, func() bool { return srv.NumConnections() == 0 }, 30*time.Second, 10*time.Millisecond,
		"server still has %d connections", srv.NumConnections())
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > b.goroutines && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > b.goroutines {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutine leak: %d at the baseline, %d now\n%s", b.goroutines, n, buf[:runtime.Stack(buf, true)])
	}
	// The live heap may keep a little (pools, grown maps), and the runtime
	// keeps every goroutine descriptor it ever made (~530 bytes each) for
	// reuse; a leak of per-client state is kilobytes per client.
	slack := max(b.heap/4, 4<<20) + 600*uint64(max(0, b.peak.Load()-int64(b.goroutines)))
	var heap uint64
	ok := false
	for i := 0; i < 50; i++ {
		if heap = heapInUse(); heap <= b.heap+slack {
			ok = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		path := filepath.Join(os.TempDir(), "qnetd-load-heap.pprof")
		if fh, err := os.Create(path); err == nil {
			_ = pprof.Lookup("heap").WriteTo(fh, 0)
			fh.Close()
		}
		t.Fatalf("live heap %d kB, baseline %d kB (+%d kB allowed); heap profile: go tool pprof -sample_index=inuse_space -top %s",
			heap>>10, b.heap>>10, slack>>10, path)
	}
	t.Logf("baseline: goroutines %d -> %d (peak %d), heap %d kB -> %d kB", b.goroutines, runtime.NumGoroutine(), b.peak.Load(), b.heap>>10, heap>>10)
}

// fleet starts simulated clusters and stops them at the end of the test.
func fleet(t *testing.T, cfg bench.FleetConfig) *bench.Fleet {
	t.Helper()
	f, err := bench.NewFleet(cfg)
	require.NoError(t, err)
	f.Start()
	t.Cleanup(f.Close)
	return f
}

// requireServed checks that the well-behaved nodes of f were served: no
// echo reply later than one heartbeat interval, no connection lost or
// refused, no unexpected decision.
func requireServed(t *testing.T, f *bench.Fleet) {
	t.Helper()
	require.Zero(t, f.EchoMissed.Load(), "echo replies later than one heartbeat (%s): %s", f.Config.Heartbeat, f.FirstError())
	require.Zero(t, f.Losses.Load(), "connections lost: %s", f.FirstError())
	require.Zero(t, f.ServerErrors.Load(), "server errors: %s", f.FirstError())
	require.Zero(t, f.BadOutcomes.Load(), "unexpected decisions: %s", f.BadOutcome())
	require.Less(t, f.MaxEchoRTT(), f.Config.Heartbeat)
}

// splitsFor splits and heals clusters of f at rate per second for d and
// requires every decision to be made.
func splitsFor(t *testing.T, f *bench.Fleet, rate float64, d time.Duration) int {
	t.Helper()
	lat, errs, _, _ := bench.RunSplits(f, nil, rate, d)
	if len(errs) > 0 {
		msgs := make([]string, 0, 3)
		for _, e := range errs[:min(3, len(errs))] {
			msgs = append(msgs, e.Error())
		}
		t.Fatalf("%d of %d decisions failed: %s", len(errs), len(errs)+len(lat), strings.Join(msgs, "; "))
	}
	require.Zero(t, f.BadOutcomes.Load(), f.BadOutcome())
	return len(lat)
}
