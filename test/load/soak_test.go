package load_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/bench"
)

// TestSoakChurn (only with -soak): 1,000 clusters for -soak.duration
// (10 minutes): 900 stay and split, heal and lose a node now and then,
// 100 come and go under new names all the time. The staying nodes are
// served within their heartbeat throughout; at the end the server is back
// to its baseline of goroutines and live heap.
//
//	go test ./test/load -run Soak -soak -soak.duration 10m -timeout 30m -v
func TestSoakChurn(t *testing.T) {
	if !*soak {
		t.Skip("soak test: run with -soak")
	}
	srv, addr := inProcess(t, nil)
	base := takeBaseline(t)
	hb := 2 * time.Second
	stay := fleet(t, bench.FleetConfig{Addr: addr, Prefix: "stay", Clusters: 900, Nodes: 2, Heartbeat: hb,
		ReconnectPause: 500 * time.Millisecond, Concurrency: 100})
	_, err := stay.WaitAllAcked(2 * time.Minute)
	require.NoError(t, err)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	decisions := 0
	wg.Add(1)
	go func() { // splits and heals
		defer wg.Done()
		lat, errs, _, _ := bench.RunSplitsUntil(stay, nil, 50, *soakFor, stop)
		decisions = len(lat)
		for _, e := range errs {
			fail("decision: %v", e)
		}
	}()
	drops := 0
	wg.Add(1)
	go func() { // a node loses its connection and comes back, 5 a second
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			c := stay.Clusters[rand.N(len(stay.Clusters))]
			if !c.TryLock() {
				continue
			}
			wg.Add(1)
			drops++
			go func() {
				defer wg.Done()
				defer c.Unlock()
				c.Nodes[rand.N(len(c.Nodes))].Drop()
				if err := c.WaitVoted(10 * time.Second); err != nil {
					fail("after a drop: %v", err)
				}
			}()
		}
	}()
	var generations sync.Map
	for w := 0; w < 10; w++ { // 10 x 10 clusters that come and go under new names
		wg.Add(1)
		go func() {
			defer wg.Done()
			for gen := 0; ; gen++ {
				select {
				case <-stop:
					return
				default:
				}
				f, err := bench.NewFleet(bench.FleetConfig{Addr: addr, Prefix: fmt.Sprintf("churn%d-%d-", w, gen), Clusters: 10, Nodes: 2,
					Heartbeat: hb, ReconnectPause: 500 * time.Millisecond})
				if err != nil {
					fail("%v", err)
					return
				}
				f.Start()
				if _, err := f.WaitAllAcked(30 * time.Second); err != nil {
					fail("churn: %v", err)
				}
				select {
				case <-stop:
				case <-time.After(rand.N(5 * time.Second)):
				}
				f.Close()
				if f.EchoMissed.Load() > 0 || f.Losses.Load() > 0 {
					fail("churn fleet: %d echo replies late, %d connections lost: %s", f.EchoMissed.Load(), f.Losses.Load(), f.FirstError())
				}
				generations.Store(w, gen+1)
			}
		}()
	}

	end := time.Now().Add(*soakFor)
	for time.Now().Before(end) {
		time.Sleep(min(30*time.Second, time.Until(end))) // a progress line every 30 s
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("%s left: %d connections, %d/%d staying nodes voted, goroutines %d, heap in use %d MB, echo max %s",
			time.Until(end).Round(time.Second), srv.NumConnections(), stay.Acked(), stay.Total(), runtime.NumGoroutine(),
			ms.HeapInuse>>20, stay.MaxEchoRTT())
	}
	close(stop)
	wg.Wait()
	require.Empty(t, failures)
	requireServed(t, stay)
	gens := 0
	generations.Range(func(_, v any) bool { gens += v.(int); return true })
	t.Logf("%s: %d decisions, %d drops, %d short-lived fleets of 10 clusters", *soakFor, decisions, drops, gens)
	stay.Close()
	checkBaseline(t, srv, base)
}
