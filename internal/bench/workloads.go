package bench

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"time"
)

// Result is one workload against one server. Durations are in
// milliseconds or seconds and sizes in MB or kB, as the names say; zero
// means "not measured in this workload".
type Result struct {
	Workload string `json:"workload"`
	Server   string `json:"server"`
	TLS      bool   `json:"tls"`
	Clusters int    `json:"clusters"`
	Nodes    int    `json:"nodes_per_cluster"`
	Clients  int    `json:"clients"`

	// Time until every node held the vote (connect: from the first
	// connection; restart: from starting the new process).
	AllVotedS float64 `json:"all_voted_s,omitempty"`
	Voted     int     `json:"voted"`
	// Latency percentiles: for splits the decision latency (from sending
	// the membership list that completes the view until every node of the
	// cluster holds its vote); for connect and restart the time until each
	// node held its vote.
	P50Ms         float64 `json:"p50_ms,omitempty"`
	P99Ms         float64 `json:"p99_ms,omitempty"`
	MaxMs         float64 `json:"max_ms,omitempty"`
	Decisions     int     `json:"decisions,omitempty"`
	DecisionsPerS float64 `json:"decisions_per_s,omitempty"`
	// SaturatedPerS: decisions per second with 64 in flight back to back.
	SaturatedPerS float64 `json:"saturated_decisions_per_s,omitempty"`
	// CPU is the server's user+system time during the measured phase
	// (connect/restart: until all voted; idle: the window; splits: the run).
	CPUS    float64 `json:"cpu_s"`
	WindowS float64 `json:"window_s,omitempty"`
	// RSS: before any client, peak (VmHWM) during the workload, with every
	// client connected, and after they left (see ReturnedS).
	RSSIdleMB      float64 `json:"rss_idle_mb"`
	RSSPeakMB      float64 `json:"rss_peak_mb"`
	RSSLoadedMB    float64 `json:"rss_loaded_mb,omitempty"`
	RSSAfterMB     float64 `json:"rss_after_leave_mb,omitempty"`
	MemPerClientKB float64 `json:"mem_per_client_kb,omitempty"`
	// ReturnedPct is how much of the RSS the clients added went back
	// within the wait after they left; ReturnedS is when (-1: not half).
	ReturnedPct float64 `json:"returned_pct"`
	ReturnedS   float64 `json:"returned_s,omitempty"`
	// Returned5sPct is how much of it was back 5 s after the last client
	// left (a reconnect storm's memory should not stay with the box).
	Returned5sPct float64 `json:"returned_5s_pct"`
	// Idle also measures a second storm of as many clients on the same
	// server: AgainAddedMB is what they added to the RSS the first left
	// behind, Again5sPct how much of it was back 5 s after they left.
	// What the first storm leaves and the second does not is a one-time
	// cost (code paged in, the runtime's tables sized to the peak).
	AgainAddedMB float64 `json:"again_added_mb,omitempty"`
	Again5sPct   float64 `json:"again_returned_5s_pct,omitempty"`
	// FirstKeptMB is what the first storm left above the idle RSS 5 s
	// after its clients left, FirstKeptFileMB the part of it that is file
	// pages: the binary's code and tables read for the first time, shared
	// with the page cache and reclaimable, not memory the process holds.
	FirstKeptMB     float64 `json:"first_kept_mb,omitempty"`
	FirstKeptFileMB float64 `json:"first_kept_file_mb,omitempty"`
	// CPUPerDecisionNetMs leaves the heartbeats out: the splits run's CPU
	// less what the same clients cost idle over as long a time, divided by
	// the decisions.
	CPUPerDecisionNetMs float64 `json:"cpu_per_decision_net_ms,omitempty"`
	// CPUPerDecisionMs is the server's CPU over the splits run at a fixed
	// rate divided by the decisions made (heartbeats of every connected
	// node included: what a decision costs a busy server).
	CPUPerDecisionMs float64 `json:"cpu_per_decision_ms,omitempty"`

	Attempts    int64   `json:"attempts"`
	Failures    int64   `json:"failed_attempts"`
	Losses      int64   `json:"connections_lost"`
	EchoMissed  int64   `json:"echo_missed"`
	MaxEchoMs   float64 `json:"max_echo_ms,omitempty"`
	BadOutcomes int64   `json:"bad_outcomes"`
	Errors      int     `json:"errors,omitempty"`
	// Crashes: the server died of a signal and was restarted 100 ms later
	// (systemd's Restart=on-abnormal for corosync-qnetd).
	Crashes    []string `json:"crashes,omitempty"`
	FirstError string   `json:"first_error,omitempty"`

	// leave is set while the RSS after leave is still being watched.
	leave chan struct{}
}

func mb(b int64) float64         { return float64(b) / (1 << 20) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func percentile(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := len(s) * p / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func (r *Result) fleetStats(f *Fleet) {
	r.Attempts, r.Failures, r.Losses = f.Attempts.Load(), f.Failures.Load(), f.Losses.Load()
	r.EchoMissed, r.BadOutcomes = f.EchoMissed.Load(), f.BadOutcomes.Load()
	r.MaxEchoMs = ms(f.MaxEchoRTT())
	if r.FirstError == "" {
		r.FirstError = f.FirstError()
	}
	if r.FirstError == "" {
		r.FirstError = f.BadOutcome()
	}
}

func (r *Result) latencies(s []time.Duration) {
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r.P50Ms, r.P99Ms = ms(percentile(s, 50)), ms(percentile(s, 99))
	if len(s) > 0 {
		r.MaxMs = ms(s[len(s)-1])
	}
}

// Params are the workloads' sizes.
type Params struct {
	Clusters       int           // connect, restart, splits
	Nodes          int           // per cluster
	IdleClients    int           // idle
	IdleWindow     time.Duration // idle: CPU measured over this
	Rate           float64       // splits: decisions started per second
	SplitsFor      time.Duration // splits: how long
	SaturateFor    time.Duration // splits: then back to back with 64 in flight, for this long
	Timeout        time.Duration // for all nodes to hold the vote
	LeaveWait      time.Duration // how long to watch RSS come back after the clients left
	ReconnectPause time.Duration
	Heartbeat      time.Duration
}

// Connect measures N clusters x K nodes connecting at once (TCP, PREINIT,
// STARTTLS when the server has TLS, INIT, SET_OPTION, node lists) until
// every node holds the vote; then every client leaves and the RSS is
// watched (in the background, until LeaveWait or until it came back;
// Wait on the result before reading RSSAfterMB).
func Connect(s *Server, p Params) (*Result, error) {
	r := &Result{Workload: "connect", Server: s.Name, TLS: s.TLS, Clusters: p.Clusters, Nodes: p.Nodes, Clients: p.Clusters * p.Nodes}
	f, err := NewFleet(FleetConfig{Addr: s.Addr, Prefix: "c", Clusters: p.Clusters, Nodes: p.Nodes, Heartbeat: p.Heartbeat,
		TLS: s.ClientTLS, ReconnectPause: p.ReconnectPause})
	if err != nil {
		return nil, err
	}
	fds0, _ := CountFDs(s.PID())
	idle, err := s.Stats()
	if err != nil {
		return nil, err
	}
	_ = ResetPeak(s.PID())
	r.RSSIdleMB = mb(idle.RSS)
	begin := f.Start()
	loaded, werr := r.measureVoting(s, f, begin, idle.CPU, p.Timeout)
	if r.Clients > 0 {
		r.MemPerClientKB = float64(loaded.RSS-idle.RSS) / 1024 / float64(r.Clients)
	}
	r.leaveAll(s, f, fds0, idle.RSS, loaded.RSS, p.LeaveWait)
	return r, werr
}

// leaveWatch is what watchLeave saw.
type leaveWatch struct {
	last   int64   // the RSS when it stopped watching
	back   float64 // % of what the clients added back then
	at5s   float64 // % back 5 s after they left
	lowAtS float64 // when it came down last (-1: not half back)
}

// watchLeave follows the server's RSS after the clients left, once a
// second for up to wait (a Go process returns freed memory after its next
// GC, which an idle process runs every two minutes), and tells how much
// of what the clients added went back and when.
func watchLeave(s *Server, idle, loaded int64, left time.Time, wait time.Duration) leaveWatch {
	added := loaded - idle
	back := func(rss int64) float64 {
		if added <= 0 {
			return 0
		}
		return max(0, 100*float64(loaded-rss)/float64(added))
	}
	last, low := loaded, loaded
	var lowAt time.Duration
	at5s := -1.0
	for {
		st, err := s.Stats()
		if err != nil {
			break
		}
		last = st.RSS
		since := time.Since(left)
		if last < low-(512<<10) {
			low, lowAt = last, since
		}
		if at5s < 0 && since >= 5*time.Second {
			at5s = back(last)
		}
		if last-idle <= added/20 || since > wait {
			break
		}
		// Sample often around the 5 s mark, then once a second.
		step := time.Second
		if d := 5*time.Second - since; d > 0 && d < step {
			step = d
		}
		time.Sleep(step)
	}
	w := leaveWatch{last: last, back: back(last), at5s: at5s, lowAtS: -1}
	if w.at5s < 0 { // came back before 5 s
		w.at5s = w.back
	}
	if w.back >= 50 {
		w.lowAtS = lowAt.Seconds()
	}
	return w
}

// leaveAll closes every client of f, waits until the server closed their
// sockets (fds0 descriptors left) and watches its RSS come back from
// loaded towards idle in the background (WaitLeave).
func (r *Result) leaveAll(s *Server, f *Fleet, fds0 int, idle, loaded int64, wait time.Duration) {
	f.Close()
	r.fleetStats(f)
	if err := WaitFDs(s.PID(), fds0, 60*time.Second); err != nil {
		r.FirstError = err.Error()
	}
	left := time.Now()
	r.leave = make(chan struct{})
	go func() {
		defer close(r.leave)
		w := watchLeave(s, idle, loaded, left, wait)
		r.RSSAfterMB, r.ReturnedPct, r.Returned5sPct, r.ReturnedS = mb(w.last), w.back, w.at5s, w.lowAtS
	}()
}

// WaitLeave waits until the RSS after the clients left has been measured.
func (r *Result) WaitLeave() {
	if r.leave != nil {
		<-r.leave
	}
}

// Restart connects N clusters x K nodes (not measured), restarts the
// server (SIGTERM, then the same command line) and measures the reconnect
// storm: from starting the new process until every node holds the vote
// again. Nodes reconnect after a random pause below ReconnectPause.
func Restart(s *Server, p Params) (*Result, error) {
	r := &Result{Workload: "restart", Server: s.Name, TLS: s.TLS, Clusters: p.Clusters, Nodes: p.Nodes, Clients: p.Clusters * p.Nodes}
	f, err := NewFleet(FleetConfig{Addr: s.Addr, Prefix: "c", Clusters: p.Clusters, Nodes: p.Nodes, Heartbeat: p.Heartbeat,
		TLS: s.ClientTLS, ReconnectPause: p.ReconnectPause, Concurrency: 50})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	f.Start()
	if _, err := f.WaitAllAcked(p.Timeout); err != nil {
		return nil, fmt.Errorf("before the restart: %w", err)
	}
	s.Terminate()
	if err := f.WaitUp(0, 30*time.Second); err != nil {
		return nil, err
	}
	// The restart itself loses every connection; count from here.
	f.Attempts.Store(0)
	f.Failures.Store(0)
	f.Losses.Store(0)
	t0 := time.Now()
	if err := s.Start(); err != nil {
		return nil, err
	}
	_, werr := r.measureVoting(s, f, t0, 0, p.Timeout)
	r.fleetStats(f)
	return r, werr
}

// Idle connects IdleClients plain nodes (bounded concurrency, not
// measured), waits one heartbeat interval and measures the server's CPU
// over IdleWindow of heartbeats at the default interval and its memory
// per client; then every client leaves at once and the RSS is watched in
// the background as for Connect (WaitLeave before reading it).
func Idle(s *Server, p Params) (*Result, error) {
	n := p.Nodes
	clusters := (p.IdleClients + n - 1) / n
	r := &Result{Workload: "idle", Server: s.Name, TLS: s.TLS, Clusters: clusters, Nodes: n, Clients: clusters * n}
	idle, err := s.Stats()
	if err != nil {
		return nil, err
	}
	_ = ResetPeak(s.PID())
	r.RSSIdleMB = mb(idle.RSS)
	fds0, _ := CountFDs(s.PID())
	f, err := connectVoted(s, p, "i", clusters, n)
	if err != nil {
		return nil, err
	}
	r.Voted = f.Acked()
	time.Sleep(f.Config.Heartbeat) // the connect work is over, every node has sent an echo
	a, _ := s.Stats()
	time.Sleep(p.IdleWindow)
	b, _ := s.Stats()
	r.CPUS, r.WindowS = (b.CPU - a.CPU).Seconds(), p.IdleWindow.Seconds()
	r.RSSLoadedMB, r.RSSPeakMB = mb(b.RSS), mb(b.HWM)
	r.MemPerClientKB = float64(b.RSS-idle.RSS) / 1024 / float64(r.Clients)
	// Then they all leave at once, and the RSS is watched come back for
	// 5 s; then as many come and leave again.
	f.Close()
	r.fleetStats(f)
	if err := WaitFDs(s.PID(), fds0, 60*time.Second); err != nil {
		return r, err
	}
	first := watchLeave(s, idle.RSS, b.RSS, time.Now(), 5*time.Second)
	r.Returned5sPct = first.at5s
	before, err := s.Stats()
	if err != nil {
		return r, err
	}
	r.FirstKeptMB, r.FirstKeptFileMB = mb(before.RSS-idle.RSS), mb(before.RSSFile-idle.RSSFile)
	f, err = connectVoted(s, p, "j", clusters, n)
	if err != nil {
		return r, fmt.Errorf("second storm: %w", err)
	}
	time.Sleep(f.Config.Heartbeat)
	loaded, _ := s.Stats()
	r.AgainAddedMB = mb(loaded.RSS - before.RSS)
	f.Close()
	if err := WaitFDs(s.PID(), fds0, 60*time.Second); err != nil {
		return r, err
	}
	r.Again5sPct = watchLeave(s, before.RSS, loaded.RSS, time.Now(), 5*time.Second).at5s
	// Then the RSS is watched further in the background, against the
	// first storm's figures.
	r.leave = make(chan struct{})
	go func() {
		defer close(r.leave)
		w := watchLeave(s, idle.RSS, b.RSS, time.Now(), p.LeaveWait)
		// When it came down is the first storm's: this watch starts after
		// the second.
		r.RSSAfterMB, r.ReturnedPct, r.ReturnedS = mb(w.last), w.back, first.lowAtS
	}()
	return r, nil
}

// connectVoted connects a fleet with 64 connections in flight (the
// connecting is not what is measured) and waits until every node voted.
func connectVoted(s *Server, p Params, prefix string, clusters, nodes int) (*Fleet, error) {
	f, err := NewFleet(FleetConfig{Addr: s.Addr, Prefix: prefix, Clusters: clusters, Nodes: nodes, Heartbeat: p.Heartbeat,
		TLS: s.ClientTLS, ReconnectPause: p.ReconnectPause, Concurrency: 64})
	if err != nil {
		return nil, err
	}
	f.Start()
	if _, err := f.WaitAllAcked(p.Timeout); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Splits connects N clusters x K nodes (bounded concurrency, not
// measured) and then splits and heals random clusters at a fixed rate for
// SplitsFor, measuring each decision's latency.
func Splits(s *Server, p Params) (*Result, error) {
	r := &Result{Workload: "splits", Server: s.Name, TLS: s.TLS, Clusters: p.Clusters, Nodes: p.Nodes, Clients: p.Clusters * p.Nodes}
	idle, err := s.Stats()
	if err != nil {
		return nil, err
	}
	r.RSSIdleMB = mb(idle.RSS)
	f, err := connectVoted(s, p, "s", p.Clusters, p.Nodes)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r.Voted = f.Acked()
	// What the same clients cost idle, to tell a decision's own CPU from
	// the heartbeats'.
	time.Sleep(f.Config.Heartbeat) // the connect work is over
	a, _ := s.Stats()
	time.Sleep(p.Heartbeat)
	b, _ := s.Stats()
	idlePerS := (b.CPU - a.CPU).Seconds() / p.Heartbeat.Seconds()
	_ = ResetPeak(s.PID())
	lat, errs, elapsed, cpu := RunSplits(f, s, p.Rate, p.SplitsFor)
	r.Decisions = len(lat)
	r.Errors = len(errs)
	if len(errs) > 0 {
		r.FirstError = errs[0].Error()
	}
	if elapsed > 0 {
		r.DecisionsPerS = float64(len(lat)) / elapsed.Seconds()
	}
	r.CPUS, r.WindowS = cpu.Seconds(), elapsed.Seconds()
	if len(lat) > 0 {
		r.CPUPerDecisionMs = 1000 * r.CPUS / float64(len(lat))
		r.CPUPerDecisionNetMs = max(0, 1000*(r.CPUS-idlePerS*elapsed.Seconds())/float64(len(lat)))
	}
	r.latencies(lat)
	if p.SaturateFor > 0 {
		// Then as many as the server makes with 64 decisions in flight.
		n, errs, took := RunSplitsSaturated(f, 64, p.SaturateFor)
		r.SaturatedPerS = float64(n) / took.Seconds()
		r.Errors += len(errs)
		if len(errs) > 0 && r.FirstError == "" {
			r.FirstError = errs[0].Error()
		}
	}
	st, _ := s.Stats()
	r.RSSLoadedMB, r.RSSPeakMB = mb(st.RSS), mb(st.HWM)
	r.fleetStats(f)
	return r, nil
}

// RunSplits starts a split or heal of a random idle cluster of f every
// 1/rate seconds for d and waits for the last one. It returns the
// decision latencies, the errors, the time from the first start to the
// last decision and, when s is not nil, the server's CPU time over it.
func RunSplits(f *Fleet, s *Server, rate float64, d time.Duration) ([]time.Duration, []error, time.Duration, time.Duration) {
	return RunSplitsUntil(f, s, rate, d, nil)
}

// RunSplitsUntil is RunSplits that also stops starting decisions when
// stop is closed.
func RunSplitsUntil(f *Fleet, s *Server, rate float64, d time.Duration, stop <-chan struct{}) ([]time.Duration, []error, time.Duration, time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	var errs []error
	var wg sync.WaitGroup
	var cpu0 ProcStat
	if s != nil {
		cpu0, _ = s.Stats()
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < d {
		select {
		case <-tick.C:
		case <-stop:
			d = 0
			continue
		}
		c := f.Clusters[rand.N(len(f.Clusters))]
		if !c.TryLock() {
			continue // still deciding; the pacer does not wait
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Unlock()
			l, err := c.Flip(10 * time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			lat = append(lat, l)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var cpu time.Duration
	if s != nil {
		st, _ := s.Stats()
		cpu = st.CPU - cpu0.CPU
	}
	return lat, errs, elapsed, cpu
}

// RunSplitsSaturated keeps workers decisions going back to back (each
// worker splits or heals a random idle cluster, then the next one) for d,
// and returns how many were made, the errors and the time taken.
func RunSplitsSaturated(f *Fleet, workers int, d time.Duration) (int, []error, time.Duration) {
	var mu sync.Mutex
	var errs []error
	done := 0
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				c := f.Clusters[rand.N(len(f.Clusters))]
				if !c.TryLock() {
					runtime.Gosched()
					continue
				}
				_, err := c.Flip(10 * time.Second)
				c.Unlock()
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					done++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return done, errs, time.Since(start)
}

// measureVoting waits until every node holds its vote and records how long
// that took from begin, the server's CPU time since cpuBase, the vote
// latencies and the RSS with every client connected. It returns that
// reading and the wait's error.
func (r *Result) measureVoting(s *Server, f *Fleet, begin time.Time, cpuBase time.Duration, timeout time.Duration) (ProcStat, error) {
	at, werr := f.WaitAllAcked(timeout)
	after, _ := s.Stats()
	r.CPUS = (after.CPU - cpuBase).Seconds()
	r.Voted = f.Acked()
	if werr == nil {
		r.AllVotedS = at.Sub(begin).Seconds()
	} else {
		r.FirstError = werr.Error()
	}
	r.latencies(f.AckTimes(begin))
	// Let the last replies and heartbeats settle before taking the RSS
	// with every client connected.
	time.Sleep(2 * time.Second)
	loaded, _ := s.Stats()
	r.RSSLoadedMB, r.RSSPeakMB = mb(loaded.RSS), mb(loaded.HWM)
	return loaded, werr
}
