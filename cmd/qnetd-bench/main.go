// Command qnetd-bench runs Debian's corosync-qnetd and ours on loopback
// under the same workloads and compares them. It is not part of the
// add-on image: the shipped qnetd binary stays free of the load
// generator, and the bench starts that binary as "ours" (by default the
// qnetd next to this executable, as "make bench" builds them).
package main

import (
	"os"

	"github.com/qnetd-addon/qnetd/internal/bench"
)

func main() {
	os.Exit(bench.Main(os.Args[1:], os.Stdout, os.Stderr))
}
