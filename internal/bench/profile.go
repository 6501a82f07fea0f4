package bench

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// profileMain runs our server in this process with N simulated clients and
// shows where the server's memory per client goes: live heap by
// allocation site (every allocation recorded), goroutines and stacks. It
// writes heap.pprof and goroutine.pprof for "go tool pprof".
func profileMain(args []string, stdout, stderr io.Writer) int {
	runtime.MemProfileRate = 1 // before anything of the server is allocated
	fs := flag.NewFlagSet("bench profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.Int("clients", 2000, "simulated nodes (two per cluster)")
	tlsOn := fs.Bool("tls", false, "STARTTLS with client certificates")
	out := fs.String("out", "", "write heap.pprof and goroutine.pprof here")
	top := fs.Int("top", 12, "allocation sites to list")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := profile(*clients, *tlsOn, *out, *top, stdout); err != nil {
		fmt.Fprintln(stderr, "bench profile:", err)
		return 1
	}
	return 0
}

func profile(clients int, tlsOn bool, out string, top int, w io.Writer) error {
	cfg, clientTLS, cleanup, err := profileConfig(tlsOn)
	if err != nil {
		return err
	}
	defer cleanup()
	srv := server.New(cfg)
	ln, err := srv.Listen()
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Shutdown()
	f, err := NewFleet(FleetConfig{Addr: ln.Addr().String(), Prefix: "p", Clusters: (clients + 1) / 2, TLS: clientTLS, Concurrency: 64})
	if err != nil {
		return err
	}
	defer f.Close()
	if err := connectAndMeasure(f, tlsOn, w); err != nil {
		return err
	}
	sites, serverTotal := serverHeapSites(liveHeap())
	printTopSites(w, sites, serverTotal, f.Total(), top)
	if out == "" {
		return nil
	}
	return writeProfiles(out, w)
}

// profileConfig is the in-process server's configuration on a loopback
// port of its own: plaintext, or with tlsOn STARTTLS with a fresh
// certificate authority in a temporary directory, which cleanup removes.
// clientTLS signs the simulated clusters' certificates.
func profileConfig(tlsOn bool) (cfg server.Config, clientTLS func(string) (*tls.Config, error), cleanup func(), err error) {
	cfg = server.DefaultConfig()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.Engine.TLS = wire.TLSUnsupported
	cfg.Log = zerolog.Nop()
	if !tlsOn {
		return cfg, nil, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "qnetd-profile-")
	if err != nil {
		return cfg, nil, nil, err
	}
	a, err := pki.Init(dir, time.Now())
	if err != nil {
		os.RemoveAll(dir)
		return cfg, nil, nil, err
	}
	cfg.Engine.TLS, cfg.TLS = wire.TLSSupportedOn, a.TLSConfig(true)
	clientTLS = cachedTLS(func(c string) (*tls.Config, error) { return GoSignedClient(a, c) })
	return cfg, clientTLS, func() { os.RemoveAll(dir) }, nil
}

// connectAndMeasure starts the fleet, waits until every node voted and
// prints what the clients added per client: goroutines, stacks and live
// heap.
func connectAndMeasure(f *Fleet, tlsOn bool, w io.Writer) error {
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	f.Start()
	if _, err := f.WaitAllAcked(5 * time.Minute); err != nil {
		return err
	}
	time.Sleep(time.Second)
	// The heap profile is published two cycles after the allocations.
	runtime.GC()
	runtime.GC()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	n := f.Total()
	g := runtime.NumGoroutine() - g0
	fmt.Fprintf(w, "%d clients (tls=%v) connected to an in-process server, every node voted\n", n, tlsOn)
	fmt.Fprintf(w, "goroutines: %d more = %.2f per client (1 of them the simulated node's own)\n", g, float64(g)/float64(n))
	fmt.Fprintf(w, "stacks in use: %.1f kB per client (server and client goroutines together)\n", float64(after.StackInuse-before.StackInuse)/1024/float64(n))
	fmt.Fprintf(w, "live heap: %.1f kB per client (server and client together)\n", float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1024/float64(n))
	return nil
}

// liveHeap returns the heap profile's records.
func liveHeap() []runtime.MemProfileRecord {
	var recs []runtime.MemProfileRecord
	for {
		k, ok := runtime.MemProfile(recs, false)
		if ok {
			return recs[:k]
		}
		recs = make([]runtime.MemProfileRecord, k+100)
	}
}

// serverHeapSites sums the live heap by allocation site, server side only
// (stacks through qnetd/server; the simulated nodes' allocations are left
// out), and returns the sites and their total.
func serverHeapSites(recs []runtime.MemProfileRecord) (map[string]int64, int64) {
	sites := map[string]int64{}
	var total int64
	for _, r := range recs {
		in := r.InUseBytes()
		if in <= 0 {
			continue
		}
		if site, isServer := allocSite(r.Stack()); isServer {
			sites[site] += in
			total += in
		}
	}
	return sites, total
}

// allocSite names an allocation's site by its first frame outside the
// runtime (or the first server frame) and tells whether the server made
// it rather than a simulated node.
func allocSite(stack []uintptr) (site string, isServer bool) {
	frames := runtime.CallersFrames(stack)
	for {
		fr, more := frames.Next()
		name := fr.Function
		if site == "" && !strings.HasPrefix(name, "runtime.") {
			site = fmt.Sprintf("%s (%s:%d)", name, filepath.Base(fr.File), fr.Line)
		}
		if strings.Contains(name, "qnetd/qnetd/server.") || strings.Contains(name, "qnetd/qnetd/engine.") {
			isServer = true
			if site == "" {
				site = name
			}
		}
		if strings.Contains(name, "internal/bench.(*") || strings.Contains(name, "qnetd/qnetd/client.") {
			// a simulated node's
			return site, false
		}
		if !more {
			return site, isServer
		}
	}
}

// printTopSites prints the server's live heap per client and its top
// allocation sites, largest first.
func printTopSites(w io.Writer, sites map[string]int64, serverTotal int64, n, top int) {
	type kv struct {
		k string
		v int64
	}
	var list []kv
	for k, v := range sites {
		list = append(list, kv{k, v})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].v > list[j].v })
	fmt.Fprintf(w, "server live heap: %.1f kB per client; top allocation sites (kB per client):\n", float64(serverTotal)/1024/float64(n))
	for i, e := range list {
		if i >= top {
			break
		}
		fmt.Fprintf(w, "  %7.2f  %s\n", float64(e.v)/1024/float64(n), e.k)
	}
}

// writeProfiles writes heap.pprof and goroutine.pprof to the directory
// out.
func writeProfiles(out string, w io.Writer) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, p := range []string{"heap", "goroutine"} {
		fh, err := os.Create(filepath.Join(out, p+".pprof"))
		if err != nil {
			return err
		}
		_ = pprof.Lookup(p).WriteTo(fh, 0)
		fh.Close()
	}
	fmt.Fprintf(w, "wrote %s/heap.pprof and goroutine.pprof (go tool pprof -sample_index=inuse_space -focus qnetd/server -top ...)\n", out)
	return nil
}
