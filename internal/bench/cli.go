package bench

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const usage = `usage: qnetd-bench WORKLOAD [flags]

workloads (each runs against Debian's corosync-qnetd and ours, one after the other):
  all       every workload below, with the goals of issue #7
  connect   N clusters x K nodes connect at once until all voted (plain and TLS)
  restart   reconnect storm after a server restart (TLS)
  idle      CPU of idle clients with heartbeats at the default interval
  splits    random splits and heals at a fixed rate: decision latency
  storm     TLS connection storm (INIT only), the first benchmark
  profile   ours only, in-process: where the memory per client goes (pprof)

Run "qnetd-bench WORKLOAD -h" for the flags.
`

// Main runs "qnetd-bench WORKLOAD [flags]" and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "storm":
		return stormMain(args[1:], stdout, stderr)
	case "profile":
		return profileMain(args[1:], stdout, stderr)
	case "all", "connect", "restart", "idle", "splits":
		return runMain(args[0], args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return 2
}

func runMain(workload string, args []string, stdout, stderr io.Writer) int {
	fl, err := parseRunFlags(workload, args, stderr)
	if err != nil {
		return 2
	}
	if !defaultBinary(&fl.bin, stderr) {
		return 1
	}
	r := &runner{p: fl.p, bin: fl.bin, log: timedLog(stderr)}
	if r.upstream, r.ours, err = parseServers(fl.servers); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if r.tmp, err = os.MkdirTemp("", "qnetd-bench-"); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	defer removeUnlessKept(r.tmp, stderr)
	rep := newReport(fl.p)
	ok := runAll(r.workloads(workload, fl.modes), rep, stderr)
	r.finish()
	rep.finish()
	writeReport(rep, fl.out, fl.asJSON, stdout)
	if !ok {
		return 1
	}
	return 0
}

// runFlags are the flags of the workloads that compare the two servers.
type runFlags struct {
	p       Params
	modes   string // connect: plain and/or tls
	servers string // upstream and/or ours
	asJSON  bool
	out     string // directory for bench.md and bench.json; "": none
	bin     string // our qnetd binary; "": the one next to this executable
}

// parseRunFlags parses the flags of workload; the flag package has
// printed the error or the usage.
func parseRunFlags(workload string, args []string, stderr io.Writer) (runFlags, error) {
	fs := flag.NewFlagSet("bench "+workload, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var fl runFlags
	p := &fl.p
	fs.IntVar(&p.Clusters, "clusters", 1000, "clusters (connect, restart, splits)")
	fs.IntVar(&p.Nodes, "nodes", 2, "nodes per cluster")
	fs.IntVar(&p.IdleClients, "idle-clients", 10000, "clients for the idle workload (plaintext)")
	fs.DurationVar(&p.IdleWindow, "idle-window", 24*time.Second, "idle: CPU is measured over this window")
	fs.Float64Var(&p.Rate, "rate", 100, "splits: splits and heals started per second")
	fs.DurationVar(&p.SplitsFor, "splits-for", 30*time.Second, "splits: how long at -rate")
	fs.DurationVar(&p.SaturateFor, "saturate-for", 10*time.Second, "splits: then with 64 decisions in flight back to back, for this long (0: skip)")
	fs.DurationVar(&p.Timeout, "timeout", 180*time.Second, "for all nodes to hold the vote")
	fs.DurationVar(&p.LeaveWait, "leave-wait", 240*time.Second, "connect: how long to watch the RSS come back after the clients left")
	fs.DurationVar(&p.ReconnectPause, "reconnect-pause", time.Second, "nodes reconnect after a random pause below this")
	fs.DurationVar(&p.Heartbeat, "heartbeat", 8*time.Second, "heartbeat interval of the nodes (corosync-qdevice's default: 8s)")
	fs.StringVar(&fl.modes, "modes", "plain,tls", "connect: plain and/or tls")
	fs.StringVar(&fl.servers, "servers", "upstream,ours", "which servers to run")
	fs.BoolVar(&fl.asJSON, "json", false, "print JSON instead of the markdown table")
	fs.StringVar(&fl.out, "out", "", "also write bench.md and bench.json to this directory")
	fs.StringVar(&fl.bin, "bin", "", "our qnetd binary (default: the qnetd next to this executable)")
	err := fs.Parse(args)
	return fl, err
}

// parseServers reads -servers: a comma separated list of upstream and ours.
func parseServers(list string) (upstream, ours bool, err error) {
	for _, s := range strings.Split(list, ",") {
		switch strings.TrimSpace(s) {
		case "upstream":
			upstream = true
		case "ours":
			ours = true
		default:
			return false, false, fmt.Errorf("-servers %q: want upstream and/or ours", list)
		}
	}
	return upstream, ours, nil
}

// timedLog logs progress lines to stderr, each with the time of day.
func timedLog(stderr io.Writer) func(string, ...any) {
	return func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
}

// removeUnlessKept removes the servers' files, or with QNETD_BENCH_KEEP
// set keeps them and says where they are.
func removeUnlessKept(tmp string, stderr io.Writer) {
	if os.Getenv("QNETD_BENCH_KEEP") == "" {
		os.RemoveAll(tmp)
	} else {
		fmt.Fprintln(stderr, "bench: files kept in", tmp)
	}
}

// newReport is the report of a run with p, on this machine.
func newReport(p Params) *Report {
	return &Report{Machine: ThisMachine(), Params: map[string]any{
		"clusters": p.Clusters, "nodes_per_cluster": p.Nodes, "idle_clients": p.IdleClients, "idle_window_s": p.IdleWindow.Seconds(),
		"split_rate_per_s": p.Rate, "splits_for_s": p.SplitsFor.Seconds(), "saturate_for_s": p.SaturateFor.Seconds(), "heartbeat_ms": p.Heartbeat.Milliseconds(),
		"reconnect_pause_ms": p.ReconnectPause.Milliseconds(), "leave_wait_s": p.LeaveWait.Seconds()}}
}

// namedRun is one workload run against every server.
type namedRun struct {
	name string
	fn   func() (*Pair, error)
}

// workloads lists the runs that workload stands for, in the order they
// run; modes picks the connect workload's plain and TLS runs.
func (r *runner) workloads(workload, modes string) []namedRun {
	wants := func(w string) bool { return workload == "all" || workload == w }
	var runs []namedRun
	if wants("connect") {
		for _, m := range strings.Split(modes, ",") {
			tlsOn := strings.TrimSpace(m) == "tls"
			runs = append(runs, namedRun{nameConnect(tlsOn), func() (*Pair, error) { return r.connect(tlsOn) }})
		}
	}
	if wants("restart") {
		runs = append(runs, namedRun{nameRestart, r.restart})
	}
	if wants("idle") {
		runs = append(runs, namedRun{nameIdle, r.idle})
	}
	if wants("splits") {
		runs = append(runs, namedRun{nameSplits, r.splits})
	}
	return runs
}

// runAll runs every one of runs, adds their results to rep and prints
// their errors; false when one failed.
func runAll(runs []namedRun, rep *Report, stderr io.Writer) bool {
	ok := true
	for _, run := range runs {
		pair, err := run.fn()
		if pair != nil {
			rep.Workloads = append(rep.Workloads, pair)
		}
		if err != nil {
			fmt.Fprintf(stderr, "bench: %s: %v\n", run.name, err)
			ok = false
		}
	}
	return ok
}

// writeReport prints the report as markdown or, with asJSON, as JSON, and
// with dir set also writes both there (best effort: the printed report is
// the result).
func writeReport(rep *Report, dir string, asJSON bool, stdout io.Writer) {
	js, _ := json.MarshalIndent(rep, "", "  ")
	var md strings.Builder
	rep.Markdown(&md)
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "bench.json"), append(js, '\n'), 0o644)
			_ = os.WriteFile(filepath.Join(dir, "bench.md"), []byte(md.String()), 0o644)
		}
	}
	if asJSON {
		fmt.Fprintln(stdout, string(js))
	} else {
		fmt.Fprint(stdout, md.String())
	}
}

// runner starts the servers for each workload and keeps those whose RSS
// is still watched after their clients left.
type runner struct {
	p              Params
	bin            string
	tmp            string
	upstream, ours bool
	log            func(string, ...any)
	// TLS client configurations per server kind, reused across workloads
	// (signing with NSS's certutil takes ~35 ms per cluster).
	clientTLS map[string]func(string) (*tls.Config, error)
	watching  []watched
}

type watched struct {
	s *Server
	r *Result
}

func (r *runner) start(kind string, tlsOn bool) (*Server, error) {
	dir := filepath.Join(r.tmp, kind+"-"+tlsMode(tlsOn))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	o := Options{TLS: tlsOn, Dir: dir}
	if tlsOn && r.clientTLS != nil {
		o.ClientTLS = r.clientTLS[kind]
	}
	var s *Server
	var err error
	if kind == "upstream" {
		s, err = StartUpstreamWith(o)
	} else {
		s, err = StartOursWith(r.bin, o)
	}
	if err != nil {
		return nil, err
	}
	if tlsOn {
		if r.clientTLS == nil {
			r.clientTLS = map[string]func(string) (*tls.Config, error){}
		}
		r.clientTLS[kind] = s.ClientTLS
	}
	return s, nil
}

func (r *runner) kinds() []string {
	var k []string
	if r.upstream {
		k = append(k, "upstream")
	}
	if r.ours {
		k = append(k, "ours")
	}
	return k
}

// each runs fn against a fresh server of every kind. A server that dies
// of a signal is restarted 100 ms later (as systemd does) and the crashes
// are reported with the result; an error of one server does not stop the
// other's run.
func (r *runner) each(name string, tlsOn bool, fn func(*Server) (*Result, error), keep bool) (*Pair, error) {
	pair := &Pair{Name: name}
	var errs []string
	for _, kind := range r.kinds() {
		s, err := r.start(kind, tlsOn)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", kind, err))
			continue
		}
		s.Supervise = true
		r.log("%s: %s (pid %d) on %s", name, kind, s.PID(), s.Addr)
		res, err := fn(s)
		if res == nil && err != nil {
			res = &Result{Workload: name, Server: kind, TLS: tlsOn, FirstError: err.Error()}
		}
		if res != nil {
			res.Crashes = s.Crashes()
			if kind == "upstream" {
				pair.Upstream = res
			} else {
				pair.Ours = res
			}
			r.log("%s: %s: %s", name, kind, res.summary())
		}
		if exited, xerr := s.Exited(); exited {
			err = fmt.Errorf("%s exited during the workload (%v): %s", kind, xerr, tail(s.Log(), 1500))
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", kind, err))
		}
		if keep && res != nil && err == nil {
			r.watching = append(r.watching, watched{s, res})
		} else {
			s.Stop()
		}
	}
	if len(errs) > 0 {
		return pair, errors.New(strings.Join(errs, "; "))
	}
	return pair, nil
}

func (r *runner) finish() {
	if len(r.watching) > 0 {
		r.log("waiting for the RSS after the clients left (up to %s)", r.p.LeaveWait)
	}
	for _, w := range r.watching {
		w.r.WaitLeave()
		w.s.Stop()
	}
	r.watching = nil
}

func (r *runner) connect(tlsOn bool) (*Pair, error) {
	if tlsOn {
		r.log("signing %d client certificates for each server (not measured)", r.p.Clusters)
	}
	return r.each(nameConnect(tlsOn), tlsOn, func(s *Server) (*Result, error) { return Connect(s, r.p) }, true)
}

func (r *runner) restart() (*Pair, error) {
	return r.each(nameRestart, true, func(s *Server) (*Result, error) { return Restart(s, r.p) }, false)
}

func (r *runner) idle() (*Pair, error) {
	return r.each(nameIdle, false, func(s *Server) (*Result, error) { return Idle(s, r.p) }, true)
}

func (r *runner) splits() (*Pair, error) {
	return r.each(nameSplits, false, func(s *Server) (*Result, error) { return Splits(s, r.p) }, false)
}

func (r *Result) summary() string {
	s := fmt.Sprintf("%d/%d voted", r.Voted, r.Clients)
	if r.AllVotedS > 0 {
		s += fmt.Sprintf(" in %.2f s", r.AllVotedS)
	}
	if r.Decisions > 0 {
		s += fmt.Sprintf(", %d decisions p50 %.2f ms p99 %.2f ms max %.1f ms", r.Decisions, r.P50Ms, r.P99Ms, r.MaxMs)
	}
	s += fmt.Sprintf(", CPU %.2f s, RSS %.1f MB idle / %.1f MB peak", r.CPUS, r.RSSIdleMB, r.RSSPeakMB)
	if r.MemPerClientKB != 0 {
		s += fmt.Sprintf(", %.1f kB/client", r.MemPerClientKB)
	}
	if a := r.anomalies(); a != "" {
		s += "; " + a
	}
	return s
}

func stormMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench storm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("n", "500,2000", "client counts, comma separated")
	tlsOn := fs.Bool("tls", true, "STARTTLS with client certificates")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	timeout := fs.Duration("timeout", 120*time.Second, "per storm")
	bin := fs.String("bin", "", "our qnetd binary (default: the qnetd next to this executable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !defaultBinary(bin, stderr) {
		return 1
	}
	var ns []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "bench: -n %q: want client counts like 500,2000\n", *sizes)
			return 2
		}
		ns = append(ns, n)
	}
	var results []StormResult
	for _, n := range ns {
		for _, startServer := range []func() (*Server, error){
			func() (*Server, error) { return StartUpstream(*tlsOn) },
			func() (*Server, error) { return StartOurs(*bin, *tlsOn) },
		} {
			s, err := startServer()
			if err != nil {
				fmt.Fprintln(stderr, "bench:", err)
				return 1
			}
			r, err := Storm(s, n, *timeout)
			s.Stop()
			if err != nil {
				fmt.Fprintln(stderr, "bench:", err)
				return 1
			}
			results = append(results, r)
			fmt.Fprintf(stderr, "  %s: %d clients, %d in after %s (%d failed, %d reconnects%s)\n", r.Server, n, r.Connected, r.AllIn.Round(time.Millisecond), r.Failed, r.Retries, firstErr(r))
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(results)
		return 0
	}
	fmt.Fprintf(stdout, "%-8s %-4s %-9s %10s %10s %10s %7s %10s  %s\n", "clients", "tls", "server", "all in", "p50", "p99", "failed", "reconnects", "ours faster by")
	for i := 0; i+1 < len(results); i += 2 {
		up, ours := results[i], results[i+1]
		for _, r := range []StormResult{up, ours} {
			ratio := ""
			if r.Server == "ours" && ours.AllIn > 0 && up.Failed == 0 && ours.Failed == 0 {
				ratio = fmt.Sprintf("%.1fx", float64(up.AllIn)/float64(ours.AllIn))
			}
			fmt.Fprintf(stdout, "%-8d %-4v %-9s %10s %10s %10s %7d %10d  %s\n", r.Clients, r.TLS, r.Server,
				r.AllIn.Round(time.Millisecond), r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Failed, r.Retries, ratio)
		}
	}
	return 0
}

func firstErr(r StormResult) string {
	if r.FirstErr == "" {
		return ""
	}
	return "; first: " + r.FirstErr
}

// defaultBinary makes an empty -bin mean the qnetd beside this executable:
// the bench is its own command so that the add-on's binary does not carry
// it, and "make bench" builds both into bin/.
func defaultBinary(bin *string, stderr io.Writer) bool {
	if *bin != "" {
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "bench: finding our qnetd binary:", err)
		return false
	}
	ours := filepath.Join(filepath.Dir(exe), "qnetd")
	if _, err := os.Stat(ours); err != nil {
		fmt.Fprintf(stderr, "bench: our qnetd binary: %v (build ./cmd/qnetd next to qnetd-bench, or pass -bin)\n", err)
		return false
	}
	*bin = ours
	return true
}
