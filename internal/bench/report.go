package bench

import (
	"fmt"
	"io"
	"strings"
)

// Pair is one workload against both servers.
type Pair struct {
	Name     string  `json:"name"`
	Upstream *Result `json:"upstream,omitempty"`
	Ours     *Result `json:"ours,omitempty"`
	// Ratio is ours/upstream for every metric both measured.
	Ratio map[string]float64 `json:"ratio_ours_upstream,omitempty"`
}

// Goal is one of issue #7's goals with what this run measured.
type Goal struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// Report is a whole benchmark run.
type Report struct {
	Machine   Machine        `json:"machine"`
	Params    map[string]any `json:"params"`
	Workloads []*Pair        `json:"workloads"`
	Goals     []Goal         `json:"goals"`
}

type metric struct {
	key  string
	get  func(*Result) float64
	head string
	fmt  func(*Result) string
}

func fnum(v float64, unit string) string {
	switch {
	case v == 0:
		return ""
	case v >= 100:
		return fmt.Sprintf("%.0f%s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f%s", v, unit)
	case v >= 1:
		return fmt.Sprintf("%.2f%s", v, unit)
	default:
		return fmt.Sprintf("%.3g%s", v, unit)
	}
}

var metrics = []metric{
	{"all_voted_s", func(r *Result) float64 { return r.AllVotedS }, "all voted", func(r *Result) string { return fnum(r.AllVotedS, " s") }},
	{"p50_ms", func(r *Result) float64 { return r.P50Ms }, "p50", func(r *Result) string { return fnum(r.P50Ms, " ms") }},
	{"p99_ms", func(r *Result) float64 { return r.P99Ms }, "p99", func(r *Result) string { return fnum(r.P99Ms, " ms") }},
	{"max_ms", func(r *Result) float64 { return r.MaxMs }, "max", func(r *Result) string { return fnum(r.MaxMs, " ms") }},
	{"decisions_per_s", func(r *Result) float64 { return r.DecisionsPerS }, "decisions/s", func(r *Result) string { return fnum(r.DecisionsPerS, "") }},
	{"saturated_decisions_per_s", func(r *Result) float64 { return r.SaturatedPerS }, "max decisions/s", func(r *Result) string { return fnum(r.SaturatedPerS, "") }},
	{"cpu_s", func(r *Result) float64 { return r.CPUS }, "CPU", func(r *Result) string {
		s := fnum(r.CPUS, " s")
		if r.WindowS > 0 && r.Workload == "idle" {
			s += fmt.Sprintf(" (%.1f %%)", 100*r.CPUS/r.WindowS)
		}
		if s == "" {
			s = "0 s"
		}
		return s
	}},
	{"rss_idle_mb", func(r *Result) float64 { return r.RSSIdleMB }, "RSS idle", func(r *Result) string { return fnum(r.RSSIdleMB, " MB") }},
	{"rss_peak_mb", func(r *Result) float64 { return r.RSSPeakMB }, "RSS peak", func(r *Result) string { return fnum(r.RSSPeakMB, " MB") }},
	{"rss_after_leave_mb", func(r *Result) float64 { return r.RSSAfterMB }, "RSS after leave", func(r *Result) string {
		if r.RSSAfterMB == 0 {
			return ""
		}
		if r.ReturnedS >= 0 {
			return fmt.Sprintf("%s (%.0f %% back in %.0f s)", fnum(r.RSSAfterMB, " MB"), r.ReturnedPct, r.ReturnedS)
		}
		return fmt.Sprintf("%s (%.0f %% back)", fnum(r.RSSAfterMB, " MB"), r.ReturnedPct)
	}},
	{"returned_5s_pct", func(r *Result) float64 { return r.Returned5sPct }, "back in 5 s", func(r *Result) string {
		if r.RSSAfterMB == 0 {
			return ""
		}
		return fmt.Sprintf("%.0f %%", r.Returned5sPct)
	}},
	{"again_returned_5s_pct", func(r *Result) float64 { return r.Again5sPct }, "2nd storm back in 5 s", func(r *Result) string {
		if r.AgainAddedMB == 0 {
			return ""
		}
		return fmt.Sprintf("%.0f %% of %.1f MB", r.Again5sPct, r.AgainAddedMB)
	}},
	{"cpu_per_decision_ms", func(r *Result) float64 { return r.CPUPerDecisionMs }, "CPU/decision", func(r *Result) string { return fnum(r.CPUPerDecisionMs, " ms") }},
	{"cpu_per_decision_net_ms", func(r *Result) float64 { return r.CPUPerDecisionNetMs }, "CPU/decision without heartbeats", func(r *Result) string {
		return fnum(r.CPUPerDecisionNetMs, " ms")
	}},
	{"mem_per_client_kb", func(r *Result) float64 { return r.MemPerClientKB }, "mem/client", func(r *Result) string { return fnum(r.MemPerClientKB, " kB") }},
}

// Finish computes the ratios.
func (p *Pair) Finish() {
	if p.Upstream == nil || p.Ours == nil {
		return
	}
	p.Ratio = map[string]float64{}
	for _, m := range metrics {
		u, o := m.get(p.Upstream), m.get(p.Ours)
		if u > 0 && o > 0 {
			p.Ratio[m.key] = o / u
		}
	}
	if p.Upstream.WindowS > 0 && p.Ours.WindowS > 0 && p.Upstream.CPUS > 0 {
		// CPU per second of window: the runs last about as long, not exactly.
		p.Ratio["cpu_s"] = (p.Ours.CPUS / p.Ours.WindowS) / (p.Upstream.CPUS / p.Upstream.WindowS)
	}
}

func fratio(v float64) string {
	switch {
	case v == 0:
		return ""
	case v >= 10:
		return fmt.Sprintf("%.0fx", v)
	case v >= 0.1:
		return fmt.Sprintf("%.2fx", v)
	default:
		return fmt.Sprintf("%.3fx", v)
	}
}

// Markdown writes the report as markdown: the table, anomalies, goals and
// the machine.
func (rep *Report) Markdown(w io.Writer) {
	var b strings.Builder
	b.WriteString("| workload | server | clients |")
	for _, m := range metrics {
		b.WriteString(" " + m.head + " |")
	}
	b.WriteString("\n|---|---|--:|")
	for range metrics {
		b.WriteString("--:|")
	}
	b.WriteString("\n")
	var notes []string
	for _, p := range rep.Workloads {
		first := true
		for _, r := range []*Result{p.Upstream, p.Ours} {
			if r == nil {
				continue
			}
			name := ""
			if first {
				name = p.Name
				first = false
			}
			fmt.Fprintf(&b, "| %s | %s | %d |", name, r.Server, r.Clients)
			for _, m := range metrics {
				b.WriteString(" " + m.fmt(r) + " |")
			}
			b.WriteString("\n")
			if n := r.anomalies(); n != "" {
				notes = append(notes, fmt.Sprintf("%s, %s: %s", p.Name, r.Server, n))
			}
		}
		if p.Ratio != nil {
			b.WriteString("| | ours/upstream | |")
			for _, m := range metrics {
				b.WriteString(" " + fratio(p.Ratio[m.key]) + " |")
			}
			b.WriteString("\n")
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString("- " + n + "\n")
		}
	}
	if len(rep.Goals) > 0 {
		b.WriteString("\nGoals (issue #7):\n\n")
		for _, g := range rep.Goals {
			mark := "MISSED"
			if g.Met {
				mark = "met"
			}
			fmt.Fprintf(&b, "- %s: **%s** (%s)\n", g.Goal, mark, g.Measured)
		}
	}
	m := rep.Machine
	fmt.Fprintf(&b, "\nMachine: %s, %d cores, %d MB RAM, %s, kernel %s; %s; %s; %s. Client and servers on the same machine, loopback.\n",
		m.CPU, m.Cores, m.MemoryMB, m.OS, m.Kernel, m.Go, m.Upstream, m.Date)
	io.WriteString(w, b.String())
}

func (r *Result) anomalies() string {
	var a []string
	if r.Voted < r.Clients && r.Workload != "" {
		a = append(a, fmt.Sprintf("%d of %d voted", r.Voted, r.Clients))
	}
	if len(r.Crashes) > 0 {
		shown := r.Crashes
		if len(shown) > 3 {
			shown = append(shown[:3:3], "...")
		}
		a = append(a, fmt.Sprintf("**crashed %d times** (%s), restarted 100 ms later each time as systemd's Restart=on-abnormal does", len(r.Crashes), strings.Join(shown, "; ")))
	}
	if r.Failures > 0 {
		a = append(a, fmt.Sprintf("%d failed connection attempts", r.Failures))
	}
	if r.Losses > 0 {
		a = append(a, fmt.Sprintf("%d connections lost", r.Losses))
	}
	if r.EchoMissed > 0 {
		a = append(a, fmt.Sprintf("%d echo replies later than one heartbeat", r.EchoMissed))
	}
	if r.BadOutcomes > 0 {
		a = append(a, fmt.Sprintf("%d unexpected decisions", r.BadOutcomes))
	}
	if r.Errors > 0 {
		a = append(a, fmt.Sprintf("%d failed decisions", r.Errors))
	}
	if len(a) > 0 && r.FirstError != "" {
		a = append(a, "first: "+r.FirstError)
	}
	return strings.Join(a, "; ")
}

func (rep *Report) find(name string) *Pair {
	for _, p := range rep.Workloads {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// finish completes every workload's figures and evaluates the goals.
func (rep *Report) finish() {
	for _, pair := range rep.Workloads {
		pair.Finish()
	}
	rep.Evaluate()
}

// Evaluate fills Goals from the workloads measured.
func (rep *Report) Evaluate() {
	rep.Goals = nil
	both := func(p *Pair) bool { return p != nil && p.Upstream != nil && p.Ours != nil }
	if p := rep.find(nameConnect(true)); both(p) && p.Ours.AllVotedS > 0 && p.Upstream.AllVotedS > 0 {
		x := p.Upstream.AllVotedS / p.Ours.AllVotedS
		rep.Goals = append(rep.Goals, Goal{Goal: fmt.Sprintf("%d-client TLS storm >= 5x faster", p.Ours.Clients), Met: x >= 5,
			Measured: fmt.Sprintf("%.1fx: %.2f s vs %.2f s", x, p.Ours.AllVotedS, p.Upstream.AllVotedS)})
		r := p.Ours.MemPerClientKB / p.Upstream.MemPerClientKB
		rep.Goals = append(rep.Goals, Goal{Goal: "TLS memory per client <= 1/2 of upstream and returned after disconnect (2/3 of it back)",
			Met: r <= 0.5 && p.Ours.ReturnedPct >= 200.0/3,
			Measured: fmt.Sprintf("%.2fx: %.1f kB vs %.1f kB; after the clients left ours %s, upstream %s", r, p.Ours.MemPerClientKB, p.Upstream.MemPerClientKB,
				returnedText(p.Ours), returnedText(p.Upstream))})
	}
	if p := rep.find(nameSplits); p != nil && p.Ours != nil {
		r := p.Ours
		m := fmt.Sprintf("p50 %.2f ms, p99 %.2f ms at %d clusters", r.P50Ms, r.P99Ms, r.Clusters)
		if p.Upstream != nil {
			m += fmt.Sprintf(" (upstream p50 %.1f ms, p99 %.1f ms)", p.Upstream.P50Ms, p.Upstream.P99Ms)
		}
		rep.Goals = append(rep.Goals, Goal{Goal: "decision latency p50 <= 2 ms and p99 <= 10 ms", Met: r.Decisions > 0 && r.P50Ms <= 2 && r.P99Ms <= 10, Measured: m})
	}
	if p := rep.find(nameSplits); both(p) && p.Ours.CPUPerDecisionMs > 0 {
		rep.Goals = append(rep.Goals, Goal{Goal: "server CPU per decision <= 0.15 ms (splits at a fixed rate)", Met: p.Ours.CPUPerDecisionMs <= 0.15,
			Measured: fmt.Sprintf("%.3f ms vs %.3f ms, %d and %d decisions at %.0f/s, %d clients; without their heartbeats %.3f ms vs %.3f ms",
				p.Ours.CPUPerDecisionMs, p.Upstream.CPUPerDecisionMs, p.Ours.Decisions, p.Upstream.Decisions, p.Ours.DecisionsPerS, p.Ours.Clients,
				p.Ours.CPUPerDecisionNetMs, p.Upstream.CPUPerDecisionNetMs)})
	}
	if p := rep.find(nameIdle); both(p) && p.Ratio != nil {
		x := p.Ratio["cpu_s"]
		rep.Goals = append(rep.Goals, Goal{Goal: fmt.Sprintf("idle CPU at %d clients <= 1/10 of upstream", p.Ours.Clients), Met: x > 0 && x <= 0.1,
			Measured: fmt.Sprintf("%.3fx: %.2f s vs %.2f s of CPU in %.0f s", x, p.Ours.CPUS, p.Upstream.CPUS, p.Ours.WindowS)})
		m := p.Ours.MemPerClientKB / p.Upstream.MemPerClientKB
		rep.Goals = append(rep.Goals, Goal{Goal: fmt.Sprintf("plain memory per client at %d clients <= upstream's", p.Ours.Clients), Met: m <= 1,
			Measured: fmt.Sprintf("%.2fx: %.2f kB vs %.2f kB", m, p.Ours.MemPerClientKB, p.Upstream.MemPerClientKB)})
		rep.Goals = append(rep.Goals, Goal{Goal: "at least 90 % of the memory the clients added back within 5 s after they left", Met: p.Ours.Returned5sPct >= 90,
			Measured: fmt.Sprintf("ours %.0f %%, upstream %.0f %% of %.1f and %.1f MB; a second storm: ours %.0f %%, upstream %.0f %% of %.1f and %.1f MB",
				p.Ours.Returned5sPct, p.Upstream.Returned5sPct, p.Ours.RSSLoadedMB-p.Ours.RSSIdleMB, p.Upstream.RSSLoadedMB-p.Upstream.RSSIdleMB,
				p.Ours.Again5sPct, p.Upstream.Again5sPct, p.Ours.AgainAddedMB, p.Upstream.AgainAddedMB) +
				fmt.Sprintf("; of the %.1f MB ours kept after the first, %.1f MB are file pages of the binary read for the first time",
					p.Ours.FirstKeptMB, p.Ours.FirstKeptFileMB)})
	}
	if p := rep.find(nameConnect(false)); both(p) {
		rep.Goals = append(rep.Goals, Goal{Goal: "idle RSS <= upstream's", Met: p.Ours.RSSIdleMB <= p.Upstream.RSSIdleMB,
			Measured: fmt.Sprintf("%.1f MB vs %.1f MB", p.Ours.RSSIdleMB, p.Upstream.RSSIdleMB)})
		r := p.Ours.MemPerClientKB / p.Upstream.MemPerClientKB
		rep.Goals = append(rep.Goals, Goal{Goal: "plain memory per client <= 2x upstream", Met: r <= 2,
			Measured: fmt.Sprintf("%.2fx: %.1f kB vs %.1f kB", r, p.Ours.MemPerClientKB, p.Upstream.MemPerClientKB)})
	}
}

func returnedText(r *Result) string {
	s := fmt.Sprintf("returned %.0f %% of the %.0f MB the clients added", r.ReturnedPct, r.RSSLoadedMB-r.RSSIdleMB)
	if r.ReturnedS >= 0 {
		s += fmt.Sprintf(" (after %.0f s)", r.ReturnedS)
	}
	return s
}

func nameConnect(tls bool) string {
	if tls {
		return "connect TLS"
	}
	return "connect plain"
}

const (
	nameRestart = "restart TLS"
	nameIdle    = "idle"
	nameSplits  = "splits"
)
