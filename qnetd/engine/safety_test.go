package engine_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

var (
	safetySequences = flag.Int("safety.sequences", 20000, "random event sequences the safety test plays")
	safetySeed      = flag.Uint64("safety.seed", 1, "first seed of the safety test (sequence i uses seed+i)")
	safetyVerbose   = flag.Bool("safety.trace", false, "print the event trace of a failing sequence")
)

// simNode is one simulated cluster node: a protocol client plus the
// messages in flight in both directions (TCP keeps each direction in order;
// the simulation interleaves everything else at random).
type simNode struct {
	n         *client.Node
	id        engine.ClientID
	connected bool
	toServer  []*wire.Msg
	toNode    []*wire.Msg
	group     int // index of the partition the node is in
}

type sim struct {
	rng     *rand.Rand
	e       *engine.Engine
	algo    wire.Algorithm
	nodes   []*simNode
	byID    map[engine.ClientID]*simNode
	nextID  engine.ClientID
	seq     uint64 // ring sequence
	now     time.Duration
	trace   []string
	tracing bool
}

func (s *sim) log(format string, args ...any) {
	if s.tracing {
		s.trace = append(s.trace, fmt.Sprintf(format, args...))
	}
}

func newSim(seed uint64, algo wire.Algorithm, tracing bool) *sim {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	_ = rng.IntN(1) // reserved draw: keeps the recorded seeds below replaying the same story
	size := []int{2, 4, 6, 8}[rng.IntN(4)]
	if algo == wire.Algo2NodeLMS {
		size = 2
	}
	tb := wire.TieBreaker{Mode: wire.TieBreakerMode(1 + rng.IntN(3))}
	if tb.Mode == wire.TieBreakerNodeID {
		tb.NodeID = uint32(1 + rng.IntN(size))
	}
	cfg := engine.DefaultConfig()
	cfg.TLS = wire.TLSUnsupported
	// The simulation orders messages, it does not time them: its nodes
	// answer at once and send no heartbeats, so dead peer detection (and
	// the NACK deadline, which is the dead-peer interval) would only cut
	// nodes a real network keeps. Time passes only for the lms retries;
	// deadlines have their own tests.
	cfg.DPDEnabled = false
	s := &sim{rng: rng, e: engine.New(cfg, zerolog.Nop()), algo: algo, byID: map[engine.ClientID]*simNode{},
		tracing: tracing, seq: 4}
	kap := rng.IntN(4) != 0
	for i := 1; i <= size; i++ {
		n := client.NewNode(client.Settings{Cluster: "sim", NodeID: uint32(i), Algorithm: algo, TieBreaker: tb,
			Heartbeat: 8000, KAP: kap})
		s.nodes = append(s.nodes, &simNode{n: n})
	}
	s.log("cluster of %d, %s, %s, kap=%v", size, algo, tb, kap)
	return s
}

func (s *sim) groupNodes(g int) []wire.NodeInfo {
	var out []wire.NodeInfo
	for _, x := range s.nodes {
		if x.group == g {
			out = append(out, wire.NodeInfo{NodeID: x.n.NodeID})
		}
	}
	return out
}

func (s *sim) config() []wire.NodeInfo {
	out := make([]wire.NodeInfo, len(s.nodes))
	for i, x := range s.nodes {
		out[i] = wire.NodeInfo{NodeID: x.n.NodeID}
	}
	return out
}

func (s *sim) ringOf(g int) wire.RingID {
	for _, x := range s.nodes {
		if x.group == g {
			return wire.RingID{NodeID: x.n.NodeID, Seq: s.seq}
		}
	}
	panic("empty group")
}

// connect opens a connection and queues the real client's start-up burst
// (it pipelines its first messages, as the captures show).
func (s *sim) connect(x *simNode) {
	s.nextID++
	x.id, x.connected = s.nextID, true
	x.toServer, x.toNode = nil, nil
	s.byID[x.id] = x
	s.apply(s.e.Connect(s.now, x.id, "sim"))
	ring := s.ringOf(x.group)
	mem := s.groupNodes(x.group)
	x.toServer = append(x.toServer, x.n.Preinit(), x.n.Init(ring), x.n.SetOptionKAP(),
		x.n.Config(s.config(), true, nil), x.n.Membership(ring, mem, wire.HeuristicsUndefined),
		x.n.Quorum(true, mem))
	s.log("node %d connects (ring %s)", x.n.NodeID, ring)
}

func (s *sim) disconnect(x *simNode) {
	x.connected = false
	x.toServer, x.toNode = nil, nil
	x.n.Disconnected()
	delete(s.byID, x.id)
	s.apply(s.e.Disconnect(s.now, x.id))
	s.log("node %d disconnects", x.n.NodeID)
}

func (s *sim) apply(b engine.Batch) {
	for _, m := range b.Sends {
		if x := s.byID[m.To]; x != nil && m.Msg != nil {
			x.toNode = append(x.toNode, m.Msg)
		}
	}
	for _, d := range b.Disconnects {
		if x := s.byID[d.Client]; x != nil {
			x.connected = false
			x.toServer, x.toNode = nil, nil
			x.n.Disconnected()
			delete(s.byID, d.Client)
			s.log("server drops node %d", x.n.NodeID)
		}
	}
}

// regroup moves the nodes into new partitions (1 = heal) and makes every
// node report its new membership; the reports travel like any message.
func (s *sim) regroup(groups int) {
	for _, x := range s.nodes {
		x.group = s.rng.IntN(groups)
	}
	s.seq += 4
	var desc []string
	for g := 0; g < groups; g++ {
		if mem := s.groupNodes(g); len(mem) > 0 {
			ids := make([]string, len(mem))
			for i, m := range mem {
				ids[i] = fmt.Sprint(m.NodeID)
			}
			desc = append(desc, strings.Join(ids, ","))
		}
	}
	s.log("partitions %s (seq %d)", strings.Join(desc, " | "), s.seq)
	for _, x := range s.nodes {
		if x.connected {
			ring, mem := s.ringOf(x.group), s.groupNodes(x.group)
			x.toServer = append(x.toServer, x.n.Membership(ring, mem, wire.HeuristicsUndefined), x.n.Quorum(true, mem))
		}
	}
}

// step performs one random event; false when nothing could be done.
func (s *sim) step() bool {
	var ready []func()
	for _, x := range s.nodes {
		x := x
		if x.connected && len(x.toServer) > 0 {
			ready = append(ready, func() {
				m := x.toServer[0]
				x.toServer = x.toServer[1:]
				s.log("server <- %d: %s", x.n.NodeID, m)
				s.apply(s.e.Message(s.now, x.id, m, nil))
			})
		}
		if x.connected && len(x.toNode) > 0 {
			ready = append(ready, func() {
				m := x.toNode[0]
				x.toNode = x.toNode[1:]
				s.log("node %d <- %s", x.n.NodeID, m)
				if r := x.n.Handle(m); r != nil {
					x.toServer = append(x.toServer, r)
				}
			})
		}
	}
	if at, ok := s.e.Next(); ok {
		ready = append(ready, func() {
			s.now = max(s.now, at)
			s.log("time passes to %s", s.now)
			s.apply(s.e.Tick(s.now))
		})
	}
	if len(ready) == 0 {
		return false
	}
	ready[s.rng.IntN(len(ready))]()
	return true
}

// fault injects a topology, connection or heuristics change.
func (s *sim) fault() {
	x := s.nodes[s.rng.IntN(len(s.nodes))]
	switch r := s.rng.IntN(10); {
	case r < 5:
		s.regroup(1 + s.rng.IntN(3))
	case r < 7:
		if x.connected {
			s.disconnect(x)
		} else {
			s.connect(x)
		}
	default:
		if x.connected && s.algo == wire.AlgoFFSplit {
			h := wire.Heuristics(1 + s.rng.IntN(2))
			x.toServer = append(x.toServer, x.n.HeuristicsChange(h))
			s.log("node %d heuristics -> %s", x.n.NodeID, h)
		}
	}
}

// violation reports two nodes of different partitions that both hold an
// ACK votequorum would accept.
func (s *sim) violation() string {
	var holder *simNode
	for _, x := range s.nodes {
		if x.n.EffectiveVote() != client.Ack {
			continue
		}
		if holder != nil && holder.n.Ring() != x.n.Ring() {
			return fmt.Sprintf("node %d (ring %s) and node %d (ring %s) both hold ACK",
				holder.n.NodeID, holder.n.Ring(), x.n.NodeID, x.n.Ring())
		}
		holder = x
	}
	return ""
}

// runSequence plays one random sequence; it returns "" or what went wrong.
func runSequence(seed uint64, algo wire.Algorithm, tracing bool) (string, *sim) {
	s := newSim(seed, algo, tracing)
	for _, x := range s.nodes {
		s.connect(x)
	}
	steps := 20 + s.rng.IntN(80)
	for i := 0; i < steps; i++ {
		if s.rng.IntN(6) == 0 {
			s.fault()
		} else {
			s.step()
		}
		if v := s.violation(); v != "" {
			return "safety: " + v, s
		}
	}
	// The end of every story: everyone reconnects, the network heals, all
	// messages arrive; the whole cluster must end up with the vote.
	for _, x := range s.nodes {
		if !x.connected {
			s.connect(x)
		}
	}
	s.regroup(1)
	for i := 0; i < 100000 && s.step(); i++ {
		if v := s.violation(); v != "" {
			return "safety: " + v, s
		}
		if s.quiet() && s.allAck() {
			return "", s
		}
	}
	var votes []string
	for _, x := range s.nodes {
		votes = append(votes, fmt.Sprintf("%d=%s/%v", x.n.NodeID, x.n.EffectiveVote(), x.connected))
	}
	return "liveness: healed cluster did not end with every node ACKed: " + strings.Join(votes, " "), s
}

// quiet reports whether no message is in flight (timers may still run).
func (s *sim) quiet() bool {
	for _, x := range s.nodes {
		if len(x.toServer) > 0 || len(x.toNode) > 0 {
			return false
		}
	}
	return true
}

func (s *sim) allAck() bool {
	for _, x := range s.nodes {
		if !x.connected || x.n.EffectiveVote() != client.Ack {
			return false
		}
	}
	return true
}

// TestSafetyRandomized plays random sequences of splits, heals,
// disconnects, heuristics changes and reordered deliveries against ffsplit
// clusters of 2 to 8 nodes with every tie-breaker, and checks that no two
// partitions ever hold the vote at once and that a healed cluster always
// ends with every node ACKed. ffsplit is the algorithm with that guarantee
// (NACKs before ACKs); see TestLMSHasNoCrossPartitionGuarantee for lms.
func TestSafetyRandomized(t *testing.T) {
	total := *safetySequences
	if testing.Short() {
		total = min(total, 2000)
	}
	workers := runtime.GOMAXPROCS(0)
	var next atomic.Int64
	var failed atomic.Bool
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				seed := *safetySeed + uint64(i)
				if msg, _ := runSequence(seed, wire.AlgoFFSplit, false); msg != "" {
					_, s := runSequence(seed, wire.AlgoFFSplit, true)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("seed %d: %s", seed, msg))
					if *safetyVerbose {
						failures = append(failures, strings.Join(s.trace, "\n"))
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%s\n(replay: go test ./qnetd/engine -run TestSafetyRandomized -safety.seed=N -safety.sequences=1 -safety.trace)", strings.Join(failures, "\n"))
	}
	t.Logf("%d random sequences, no violation", min(int(next.Load()), total))
}

// TestLMSHasNoCrossPartitionGuarantee documents an upstream property the
// randomized test found: lms (and 2nodelms) decide each node's vote from
// the others' last reports and never revise another partition's vote, so
// with delayed reports and a disconnect two partitions can both hold ACK.
// Upstream behaves the same (the engine follows its lms step by step);
// this test fails if that ever changes, so the documentation stays true.
func TestLMSHasNoCrossPartitionGuarantee(t *testing.T) {
	msg, s := runSequence(7144, wire.AlgoLMS, true)
	require.Contains(t, msg, "safety: node 1 (ring 1.c) and node 3 (ring 3.c) both hold ACK", strings.Join(s.trace, "\n"))
}
