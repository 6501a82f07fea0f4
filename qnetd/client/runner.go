package client

import (
	"fmt"
	"sort"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

type clusterDef struct {
	name      string
	algorithm wire.Algorithm
	tb        wire.TieBreaker
	kap       bool
	hb        uint32
	nodes     map[uint32]*Node
	ids       []uint32
}

// Runner plays blocks against a transport.
type Runner struct {
	T        Transport
	clusters []*clusterDef
	cur      *clusterDef
	errSeen  map[*Node]int
	logSeen  map[*Node]int
}

// NewRunner creates a runner.
func NewRunner(t Transport) *Runner {
	return &Runner{T: t, errSeen: map[*Node]int{}, logSeen: map[*Node]int{}}
}

// Run executes one block and returns its output.
func (r *Runner) Run(b Block) (string, error) {
	trace, state := false, false
	for _, cmd := range b.Commands {
		if strings.HasPrefix(cmd, "#") {
			continue
		}
		switch strings.TrimSpace(cmd) {
		case "trace":
			trace = true
			continue
		case "state":
			state = true
			continue
		}
		if err := r.exec(cmd); err != nil {
			return "", fmt.Errorf("line %q: %w", cmd, err)
		}
	}
	r.T.Settle(voteLines(b.Want), r.renderVotes)
	out := r.render(trace)
	if state {
		sr, ok := r.T.(StateReporter)
		if !ok {
			return "", fmt.Errorf("state: this transport cannot report cluster states")
		}
		out = strings.Join(append([]string{out}, sr.States()...), "\n")
	}
	return out, nil
}

// voteLines keeps only the vote lines of an expected output.
func voteLines(want string) string {
	var out []string
	for _, l := range strings.Split(want, "\n") {
		if !strings.Contains(l, "/") && strings.Contains(l, ": ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (r *Runner) render(trace bool) string {
	var lines []string
	for _, cd := range r.clusters {
		for _, id := range cd.ids {
			n := cd.nodes[id]
			for _, e := range n.Errors[r.errSeen[n]:] {
				lines = append(lines, fmt.Sprintf("%s/%d: %s", cd.name, id, e))
			}
			r.errSeen[n] = len(n.Errors)
		}
	}
	if trace {
		for _, cd := range r.clusters {
			for _, id := range cd.ids {
				n := cd.nodes[id]
				for _, m := range n.Log[r.logSeen[n]:] {
					lines = append(lines, fmt.Sprintf("%s/%d <- %s", cd.name, id, m))
				}
			}
		}
	}
	for _, cd := range r.clusters {
		for _, id := range cd.ids {
			r.logSeen[cd.nodes[id]] = len(cd.nodes[id].Log)
		}
	}
	if v := r.renderVotes(); v != "" {
		lines = append(lines, v)
	}
	return strings.Join(lines, "\n")
}

func (r *Runner) renderVotes() string {
	var lines []string
	for _, cd := range r.clusters {
		if len(cd.ids) == 0 {
			continue
		}
		parts := make([]string, 0, len(cd.ids))
		for _, id := range cd.ids {
			vote, connected := r.T.VoteOf(cd.nodes[id])
			v := vote.String()
			if !connected {
				v = "off"
			}
			parts = append(parts, fmt.Sprintf("%d=%s", id, v))
		}
		lines = append(lines, cd.name+": "+strings.Join(parts, " "))
	}
	return strings.Join(lines, "\n")
}

func (r *Runner) nodes(ids []uint32) ([]*Node, error) {
	if r.cur == nil {
		return nil, fmt.Errorf("no cluster declared")
	}
	out := make([]*Node, 0, len(ids))
	for _, id := range ids {
		n := r.cur.nodes[id]
		if n == nil {
			n = NewNode(Settings{Cluster: r.cur.name, NodeID: id, Algorithm: r.cur.algorithm,
				TieBreaker: r.cur.tb, Heartbeat: r.cur.hb, KAP: r.cur.kap})
			r.cur.nodes[id] = n
			r.cur.ids = append(r.cur.ids, id)
			sort.Slice(r.cur.ids, func(i, j int) bool { return r.cur.ids[i] < r.cur.ids[j] })
		}
		out = append(out, n)
	}
	return out, nil
}

// nodeCommands are the commands that act on each node they list, in
// order; each has its file (cmd_NAME.go).
var nodeCommands = map[string]func(r *Runner, a args, n *Node) error{
	"connect":    (*Runner).connect,
	"join":       (*Runner).join,
	"duplicate":  (*Runner).duplicate,
	"reinit":     (*Runner).reinit,
	"config":     (*Runner).config,
	"membership": (*Runner).membership,
	"quorum":     (*Runner).quorum,
	"heuristics": (*Runner).heuristics,
	"ask":        (*Runner).ask,
	"disconnect": (*Runner).disconnect,
	"hold":       (*Runner).hold,
	"release":    (*Runner).release,
}

// exec runs one command line: a cluster-wide command, or a node command
// once for each node it lists.
func (r *Runner) exec(line string) error {
	fields := strings.Fields(line)
	cmd, a := fields[0], parseArgs(fields[1:])
	switch cmd {
	case "cluster":
		return r.cluster(a)
	case "wait":
		return r.wait(a)
	case "split":
		return r.split(a)
	}
	run := nodeCommands[cmd]
	if run == nil {
		return fmt.Errorf("unknown command %q", cmd)
	}
	pos := a.pos
	if n := len(pos); n > 0 && (cmd == "heuristics" || (cmd == "config" && pos[n-1] == "changed")) {
		pos = pos[:n-1] // a trailing word that is not a node id
	}
	ids, err := parseIDs(pos)
	if err != nil {
		return err
	}
	ns, err := r.nodes(ids)
	if err != nil {
		return err
	}
	for _, n := range ns {
		if err := run(r, a, n); err != nil {
			return fmt.Errorf("node %d: %w", n.NodeID, err)
		}
	}
	return nil
}

// RunStory plays a whole story and returns one output per block.
func RunStory(f *Story, t Transport) ([]string, error) {
	r := NewRunner(t)
	out := make([]string, 0, len(f.Blocks))
	for _, b := range f.Blocks {
		got, err := r.Run(b)
		if err != nil {
			return out, fmt.Errorf("%s:%d: %w", f.Path, b.Line, err)
		}
		out = append(out, got)
	}
	return out, nil
}
