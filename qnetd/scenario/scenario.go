// Package scenario runs story-style test files against a qnetd: simulated
// corosync-qdevice nodes send what real nodes send, and after each block
// of commands the votes every node holds are printed and compared with the
// expected text. The same files run against the engine in-process (exact
// and instant) and over TCP against any server (our binary, or Debian's
// corosync-qnetd for the differential test).
//
// File format: blocks of commands, a "----" line, the expected output, a
// blank line. Lines starting with '#' are comments. Commands:
//
//	cluster NAME [algorithm=ffsplit|lms|2nodelms|test] [tie_breaker=lowest|highest|ID] [kap=on|off] [heartbeat=MS]
//	connect IDS [ring=N.S] [algorithm=A] [tie_breaker=T] [kap=on|off]
//	                                 PREINIT, INIT, SET_OPTION(KAP) like the real client;
//	                                 the options override the cluster's for these nodes
//	duplicate ID                     a second connection with the same node id (PREINIT+INIT, then closed)
//	reinit ID                        INIT again on the node's open connection
//	join IDS nodes=LIST [ring=N.S]   connect + initial config + membership + quorum
//	config IDS nodes=LIST [changed] [version=V]
//	membership IDS ring=N.S nodes=LIST [heuristics=pass|fail]
//	split LIST|LIST... seq=S [heuristics=pass|fail]   membership per group, ring = lowest id of the group
//	quorum IDS nodes=LIST [quorate=yes|no]
//	heuristics IDS pass|fail
//	ask IDS | disconnect IDS | hold IDS | release IDS
//	wait MS                          let time pass (timers fire)
//	trace                            also print every message the nodes receive in this block
//	state                            also print each cluster's state (in-process only:
//	                                 "c1 is split: split into {1} and {2}; ...")
//
// IDS are node ids of the current cluster separated by spaces or commas.
// Each node's message is sent and settled (replies answered, VOTE_INFO
// acknowledged) before the next node's, so outcomes are deterministic.
//
// Output: one line per error answer ("c1/2: server error 12 (...)"), the
// traced messages, then one line per cluster: "c1: 1=ACK 2=NACK 3=-"
// ("-" = no vote, "off" = disconnected).
//
// A file whose first lines contain "# differential: skip <reason>" runs
// only in-process (it tests a deliberate difference from upstream).
package scenario

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Block is one command block with its expected output.
type Block struct {
	Line     int
	Commands []string
	Want     string
	// Comment holds the '#' lines before the block, kept for rewrites.
	Comment []string
}

// File is a parsed scenario file.
type File struct {
	Path             string
	Blocks           []Block
	Trailer          []string
	SkipDifferential string
}

// Parse reads a scenario file.
func Parse(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &File{Path: path}
	lines := strings.Split(string(data), "\n")
	var cur *Block
	var comment []string
	inWant := false
	var want []string
	for i, raw := range lines {
		line := strings.TrimRight(raw, " \t\r")
		if strings.HasPrefix(line, "# differential: skip") {
			f.SkipDifferential = strings.TrimSpace(strings.TrimPrefix(line, "# differential: skip"))
		}
		switch {
		case inWant:
			if line == "" {
				cur.Want = strings.Join(want, "\n")
				f.Blocks = append(f.Blocks, *cur)
				cur, inWant, want = nil, false, nil
				continue
			}
			want = append(want, line)
		case line == "----":
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: ---- without commands", path, i+1)
			}
			inWant = true
		case strings.HasPrefix(line, "#") || line == "":
			if cur != nil && line != "" {
				cur.Commands = append(cur.Commands, line)
				continue
			}
			if cur != nil && line == "" {
				return nil, fmt.Errorf("%s:%d: blank line inside a command block", path, i+1)
			}
			comment = append(comment, line)
		default:
			if cur == nil {
				cur = &Block{Line: i + 1, Comment: comment}
				comment = nil
			}
			cur.Commands = append(cur.Commands, line)
		}
	}
	if inWant {
		cur.Want = strings.Join(want, "\n")
		f.Blocks = append(f.Blocks, *cur)
	} else if cur != nil {
		return nil, fmt.Errorf("%s:%d: block without ---- and expected output", path, cur.Line)
	}
	f.Trailer = comment
	return f, nil
}

// Format renders the file with the given outputs in place of the expected ones.
func (f *File) Format(got []string) string {
	var b strings.Builder
	for i, bl := range f.Blocks {
		for _, c := range bl.Comment {
			b.WriteString(c + "\n")
		}
		for _, c := range bl.Commands {
			b.WriteString(c + "\n")
		}
		b.WriteString("----\n")
		out := bl.Want
		if i < len(got) {
			out = got[i]
		}
		if out != "" {
			b.WriteString(out + "\n")
		}
		b.WriteString("\n")
	}
	for _, c := range f.Trailer {
		if c != "" {
			b.WriteString(c + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// Transport carries the nodes' messages to a server.
type Transport interface {
	// Open connects a node (no message is sent).
	Open(n *client.Node) error
	// Send sends m from n, waits for its direct reply (or the connection's
	// end) and settles: every VOTE_INFO caused is answered.
	Send(n *client.Node, m *wire.Msg) error
	// SendRaw sends m without waiting (used for held VOTE_INFO replies).
	SendRaw(n *client.Node, m *wire.Msg) error
	// Close disconnects n.
	Close(n *client.Node)
	// Connected reports whether n's connection is open.
	Connected(n *client.Node) bool
	// VoteOf is n's vote and whether it is connected, read together (a
	// transport's reader may be changing both).
	VoteOf(n *client.Node) (client.Vote, bool)
	// Settle lets pending messages and short timers run out. want is the
	// expected rendering of the votes (a hint for black-box transports,
	// which wait for it with a deadline); render renders the current state.
	Settle(want string, render func() string)
	// Wait lets ms milliseconds pass.
	Wait(ms uint32)
}

// StateReporter is a transport that can tell each cluster's state (the
// engine in-process; a black-box server cannot).
type StateReporter interface {
	// States is one line per cluster, in the order they were created:
	// "NAME is STATE: REASON".
	States() []string
}

type clusterDef struct {
	name      string
	algorithm wire.Algorithm
	tb        wire.TieBreaker
	kap       bool
	hb        uint32
	nodes     map[uint32]*client.Node
	ids       []uint32
}

// Runner plays blocks against a transport.
type Runner struct {
	T        Transport
	clusters []*clusterDef
	cur      *clusterDef
	errSeen  map[*client.Node]int
	logSeen  map[*client.Node]int
}

// NewRunner creates a runner.
func NewRunner(t Transport) *Runner {
	return &Runner{T: t, errSeen: map[*client.Node]int{}, logSeen: map[*client.Node]int{}}
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

type args struct {
	pos []string
	kv  map[string]string
}

func parseArgs(fields []string) args {
	a := args{kv: map[string]string{}}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			a.kv[k] = v
		} else {
			a.pos = append(a.pos, f)
		}
	}
	return a
}

func parseIDs(ss []string) ([]uint32, error) {
	var out []uint32
	for _, s := range ss {
		for _, p := range strings.Split(s, ",") {
			if p == "" {
				continue
			}
			v, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("bad node id %q", p)
			}
			out = append(out, uint32(v))
		}
	}
	return out, nil
}

func parseNodes(s string) ([]wire.NodeInfo, error) {
	if s == "" {
		return nil, nil
	}
	ids, err := parseIDs([]string{s})
	if err != nil {
		return nil, err
	}
	out := make([]wire.NodeInfo, len(ids))
	for i, id := range ids {
		out[i] = wire.NodeInfo{NodeID: id}
	}
	return out, nil
}

// ParseRing reads "N.S" (decimal) as a ring id.
func ParseRing(s string) (wire.RingID, error) {
	a, b, ok := strings.Cut(s, ".")
	if !ok {
		return wire.RingID{}, fmt.Errorf("bad ring %q, want NODE.SEQ", s)
	}
	n, err1 := strconv.ParseUint(a, 10, 32)
	q, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return wire.RingID{}, fmt.Errorf("bad ring %q, want NODE.SEQ", s)
	}
	return wire.RingID{NodeID: uint32(n), Seq: q}, nil
}

func parseHeur(s string) (wire.Heuristics, error) {
	switch s {
	case "", "undefined":
		return wire.HeuristicsUndefined, nil
	case "pass":
		return wire.HeuristicsPass, nil
	case "fail":
		return wire.HeuristicsFail, nil
	}
	return 0, fmt.Errorf("bad heuristics %q", s)
}

func (r *Runner) nodes(ids []uint32) ([]*client.Node, error) {
	if r.cur == nil {
		return nil, fmt.Errorf("no cluster declared")
	}
	out := make([]*client.Node, 0, len(ids))
	for _, id := range ids {
		n := r.cur.nodes[id]
		if n == nil {
			n = client.NewNode(client.Settings{Cluster: r.cur.name, NodeID: id, Algorithm: r.cur.algorithm,
				TieBreaker: r.cur.tb, Heartbeat: r.cur.hb, KAP: r.cur.kap})
			r.cur.nodes[id] = n
			r.cur.ids = append(r.cur.ids, id)
			sort.Slice(r.cur.ids, func(i, j int) bool { return r.cur.ids[i] < r.cur.ids[j] })
		}
		out = append(out, n)
	}
	return out, nil
}

func (r *Runner) exec(line string) error {
	fields := strings.Fields(line)
	cmd, a := fields[0], parseArgs(fields[1:])
	switch cmd {
	case "cluster":
		return r.cluster(a)
	case "wait":
		if len(a.pos) != 1 {
			return fmt.Errorf("wait MS")
		}
		ms, err := strconv.ParseUint(a.pos[0], 10, 32)
		if err != nil {
			return err
		}
		r.T.Wait(uint32(ms))
		return nil
	case "split":
		return r.split(line, a)
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
		if err := r.execNode(cmd, a, n); err != nil {
			return fmt.Errorf("node %d: %w", n.NodeID, err)
		}
	}
	return nil
}

func (r *Runner) cluster(a args) error {
	if len(a.pos) != 1 {
		return fmt.Errorf("cluster NAME [options]")
	}
	for _, cd := range r.clusters {
		if cd.name == a.pos[0] {
			r.cur = cd
			if len(a.kv) > 0 {
				return fmt.Errorf("cluster %s already declared", cd.name)
			}
			return nil
		}
	}
	cd := &clusterDef{name: a.pos[0], algorithm: wire.AlgoFFSplit, tb: wire.TieBreaker{Mode: wire.TieBreakerLowest},
		kap: true, hb: 1000, nodes: map[uint32]*client.Node{}}
	if err := cd.settings(a.kv, &cd.algorithm, &cd.tb, &cd.kap, &cd.hb); err != nil {
		return err
	}
	r.clusters = append(r.clusters, cd)
	r.cur = cd
	return nil
}

// settings applies node settings given as key=value; unknown keys are an
// error except the per-command ones listed in skip.
func (cd *clusterDef) settings(kv map[string]string, algorithm *wire.Algorithm, tb *wire.TieBreaker, kap *bool, hb *uint32, skip ...string) error {
next:
	for k, v := range kv {
		for _, s := range skip {
			if k == s {
				continue next
			}
		}
		switch k {
		case "algorithm":
			switch v {
			case "ffsplit":
				*algorithm = wire.AlgoFFSplit
			case "lms":
				*algorithm = wire.AlgoLMS
			case "2nodelms":
				*algorithm = wire.Algo2NodeLMS
			case "test":
				*algorithm = wire.AlgoTest
			default:
				return fmt.Errorf("unknown algorithm %q", v)
			}
		case "tie_breaker":
			switch v {
			case "lowest":
				*tb = wire.TieBreaker{Mode: wire.TieBreakerLowest}
			case "highest":
				*tb = wire.TieBreaker{Mode: wire.TieBreakerHighest}
			default:
				id, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return fmt.Errorf("bad tie_breaker %q", v)
				}
				*tb = wire.TieBreaker{Mode: wire.TieBreakerNodeID, NodeID: uint32(id)}
			}
		case "kap":
			*kap = v == "on"
		case "heartbeat":
			x, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return err
			}
			*hb = uint32(x)
		default:
			return fmt.Errorf("unknown option %q", k)
		}
	}
	return nil
}

// split sends each group its own membership: "split 1,2|3,4 seq=8".
func (r *Runner) split(line string, a args) error {
	spec := strings.Join(a.pos, "")
	seq, err := strconv.ParseUint(a.kv["seq"], 10, 64)
	if err != nil {
		return fmt.Errorf("split needs seq=N")
	}
	for _, g := range strings.Split(spec, "|") {
		ids, err := parseIDs([]string{g})
		if err != nil || len(ids) == 0 {
			return fmt.Errorf("bad group %q", g)
		}
		low := ids[0]
		for _, id := range ids {
			low = min(low, id)
		}
		cmd := fmt.Sprintf("membership %s ring=%d.%d nodes=%s", g, low, seq, g)
		if h := a.kv["heuristics"]; h != "" {
			cmd += " heuristics=" + h
		}
		if err := r.exec(cmd); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) execNode(cmd string, a args, n *client.Node) error {
	t := r.T
	switch cmd {
	case "connect", "join":
		ring, err := ParseRing(orDefault(a.kv["ring"], "1.1"))
		if err != nil {
			return err
		}
		if err := r.cur.settings(a.kv, &n.Algorithm, &n.TieBreaker, &n.KAP, &n.Heartbeat, "ring", "nodes"); err != nil {
			return err
		}
		if t.Connected(n) {
			return fmt.Errorf("already connected")
		}
		if err := t.Open(n); err != nil {
			return err
		}
		if err := t.Send(n, n.Preinit()); err != nil {
			return err
		}
		errs := len(n.Errors)
		if err := t.Send(n, n.Init(ring)); err != nil {
			return err
		}
		if len(n.Errors) > errs {
			// The real client disconnects when INIT is refused.
			t.Close(n)
			return nil
		}
		if n.ServerSupportsKAP() && t.Connected(n) {
			if err := t.Send(n, n.SetOptionKAP()); err != nil {
				return err
			}
		}
		if cmd == "connect" {
			return nil
		}
		nodes, err := parseNodes(a.kv["nodes"])
		if err != nil {
			return err
		}
		if err := t.Send(n, n.Config(nodes, true, nil)); err != nil {
			return err
		}
		if err := t.Send(n, n.Membership(ring, nodes, wire.HeuristicsUndefined)); err != nil {
			return err
		}
		return t.Send(n, n.Quorum(true, stateNodes(nodes)))
	case "config":
		nodes, err := parseNodes(a.kv["nodes"])
		if err != nil {
			return err
		}
		var ver *uint64
		if v, ok := a.kv["version"]; ok {
			x, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return err
			}
			ver = &x
		}
		changed := len(a.pos) > 0 && a.pos[len(a.pos)-1] == "changed"
		return t.Send(n, n.Config(nodes, !changed, ver))
	case "membership":
		ring, err := ParseRing(a.kv["ring"])
		if err != nil {
			return err
		}
		nodes, err := parseNodes(a.kv["nodes"])
		if err != nil {
			return err
		}
		h, err := parseHeur(a.kv["heuristics"])
		if err != nil {
			return err
		}
		return t.Send(n, n.Membership(ring, nodes, h))
	case "quorum":
		nodes, err := parseNodes(a.kv["nodes"])
		if err != nil {
			return err
		}
		return t.Send(n, n.Quorum(orDefault(a.kv["quorate"], "yes") == "yes", stateNodes(nodes)))
	case "heuristics":
		h, err := parseHeur(a.pos[len(a.pos)-1])
		if err != nil {
			return err
		}
		return t.Send(n, n.HeuristicsChange(h))
	case "ask":
		return t.Send(n, n.AskForVote())
	case "reinit":
		return t.Send(n, n.Init(n.Ring()))
	case "duplicate":
		d := client.NewNode(n.Settings)
		if err := t.Open(d); err != nil {
			return err
		}
		defer t.Close(d)
		if err := t.Send(d, d.Preinit()); err != nil {
			return err
		}
		if err := t.Send(d, d.Init(n.Ring())); err != nil {
			return err
		}
		for _, e := range d.Errors {
			n.Errors = append(n.Errors, "second connection: "+e)
		}
		return nil
	case "disconnect":
		t.Close(n)
		return nil
	case "hold":
		n.Hold(true)
		return nil
	case "release":
		for _, m := range n.Hold(false) {
			if err := t.SendRaw(n, m); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func stateNodes(nodes []wire.NodeInfo) []wire.NodeInfo {
	out := make([]wire.NodeInfo, len(nodes))
	for i, n := range nodes {
		out[i] = wire.NodeInfo{NodeID: n.NodeID, State: wire.NodeStateMember}
	}
	return out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// RunFile plays a whole file and returns one output per block.
func RunFile(f *File, t Transport) ([]string, error) {
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
