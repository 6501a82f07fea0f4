// Command qnetd is one static binary with several names: run as
// corosync-qnetd (or "qnetd corosync-qnetd ...") it is the arbitrator
// daemon with upstream's command line.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qnetd-addon/qnetd/internal/addon"
	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/certutilcmd"
	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/qnetdcmd"
	"github.com/qnetd-addon/qnetd/internal/version"
)

func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// tools maps the names the binary answers to onto their entry points.
var tools = map[string]func(args []string) int{
	"corosync-qnetd": func(args []string) int { return qnetdcmd.Main(args, environ(), os.Stdout, os.Stderr) },
	"addon":          func(args []string) int { return addon.Main(args, environ(), os.Stdout, os.Stderr) },
	"corosync-qnetd-certutil": func(args []string) int {
		return certutilcmd.Main(args, environ(), os.Stdout, os.Stderr, time.Now)
	},
	"corosync-qnetd-tool": func(args []string) int { return adminipc.ToolMain(args, os.Stdout, os.Stderr) },
	"pairing":             func(args []string) int { return pairing.Main(args, os.Stderr) },
}

const usage = `usage: qnetd TOOL [ARGS]

tools (also answered to by their names, e.g. a corosync-qnetd symlink):
  corosync-qnetd            the arbitrator daemon (upstream's flags)
  corosync-qnetd-tool       status over the local socket (upstream's flags)
  corosync-qnetd-certutil   the certificate authority (upstream's flags)
  pairing                   the SSH pairing endpoint for pvecm qdevice setup, on its own
  addon init|run|healthcheck   the Home Assistant add-on
  version                   print the versions

"qnetd TOOL -h" prints a tool's usage.
`

func isHelp(args []string) bool {
	return len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help")
}

func main() {
	os.Exit(run(filepath.Base(os.Args[0]), os.Args[1:]))
}

func run(name string, args []string) int {
	if tool, ok := tools[name]; ok {
		// Called by an upstream name: upstream's behaviour, exit status
		// of -h included (corosync-qnetd and its tool exit 1 there).
		return tool(args)
	}
	if len(args) > 0 {
		if tool, ok := tools[args[0]]; ok {
			code := tool(args[1:])
			if isHelp(args[1:]) {
				// "qnetd TOOL -h" asked for help and got it.
				return 0
			}
			return code
		}
	}
	switch {
	case len(args) == 1 && (args[0] == "version" || args[0] == "--version"):
		fmt.Printf("qnetd %s (core %s)\n", version.AddOn, version.Core)
		return 0
	case isHelp(args):
		fmt.Print(usage)
		return 0
	case len(args) == 0:
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	// Anything else: the daemon with these flags.
	return tools["corosync-qnetd"](args)
}
