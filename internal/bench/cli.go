package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Main runs "qnetd bench WORKLOAD [flags]" and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "storm" {
		fmt.Fprintln(stderr, "usage: qnetd bench storm [-n 500,2000] [-tls] [-json] [-timeout 120s]")
		return 2
	}
	fs := flag.NewFlagSet("bench storm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizes := fs.String("n", "500,2000", "client counts, comma separated")
	tlsOn := fs.Bool("tls", true, "STARTTLS with client certificates")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	timeout := fs.Duration("timeout", 120*time.Second, "per storm")
	bin := fs.String("bin", "", "our binary (default: this one)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		*bin = exe
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
