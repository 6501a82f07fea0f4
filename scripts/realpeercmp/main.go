// Command realpeercmp compares two real-peer result files (scenarios.sh
// --results TSV): upstream's and ours. It prints both summaries and the
// per-scenario times side by side, and fails when a scenario that passed
// with upstream did not pass with ours.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

type result struct {
	verdict, stable, recover string
}

func load(path string) (map[string]result, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	res := map[string]result{}
	var order []string
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		if first {
			continue
		}
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 5 {
			continue
		}
		key := c[0] + " " + c[1]
		if _, seen := res[key]; !seen {
			order = append(order, key)
		}
		res[key] = result{c[2], c[3], c[4]}
	}
	return res, order, sc.Err()
}

func summary(r map[string]result) (pass, fail int) {
	for _, x := range r {
		if x.verdict == "PASS" {
			pass++
		} else if x.verdict == "FAIL" {
			fail++
		}
	}
	return
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: realpeercmp UPSTREAM.tsv OURS.tsv")
		os.Exit(2)
	}
	up, order, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "realpeercmp:", err)
		os.Exit(2)
	}
	ours, _, err := load(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "realpeercmp:", err)
		os.Exit(2)
	}
	fmt.Printf("%-18s %-6s %-16s %-6s %-16s\n", "tls scenario", "up", "stable/recover", "ours", "stable/recover")
	regressions := 0
	for _, k := range order {
		u, o := up[k], ours[k]
		mark := ""
		if u.verdict == "PASS" && o.verdict != "PASS" {
			mark = "  <- regression"
			regressions++
		}
		fmt.Printf("%-18s %-6s %-16s %-6s %-16s%s\n", k, u.verdict, u.stable+"/"+u.recover, o.verdict, o.stable+"/"+o.recover, mark)
	}
	up1, up2 := summary(up)
	o1, o2 := summary(ours)
	fmt.Printf("upstream corosync-qnetd: %d passed, %d failed\n", up1, up2)
	fmt.Printf("ours: %d passed, %d failed\n", o1, o2)
	if up1 == 0 && o1 == 0 {
		fmt.Println("no scenario ran")
		os.Exit(1)
	}
	if regressions > 0 {
		fmt.Printf("%d scenario(s) pass with upstream but not with ours\n", regressions)
		os.Exit(1)
	}
}
