package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// FleetConfig describes a set of simulated clusters.
type FleetConfig struct {
	// Addr is the server. On IPv4 loopback every node connects from a
	// loopback address of its own, as nodes on different hosts do (qnetd
	// limits the connections one address may hold before INIT).
	Addr     string
	Prefix   string // cluster names are Prefix followed by the index
	Clusters int
	Nodes    int // per cluster (default 2)
	// Heartbeat is the interval sent in INIT and the echo period
	// (corosync-qdevice's default: 8 s).
	Heartbeat time.Duration
	// TLS returns the node side of STARTTLS for a cluster; nil = plain.
	TLS func(cluster string) (*tls.Config, error)
	// ReconnectPause bounds the random pause before a node reconnects after
	// losing its connection or after a failed attempt (the real client
	// pauses a random time below 0.9 x its cast-vote interval). Default 1 s.
	ReconnectPause time.Duration
	// Concurrency bounds simultaneous first connections; 0 = all at once
	// (a storm). Reconnections are never bounded.
	Concurrency int
	// AttemptTimeout bounds one connection attempt (connect, handshake),
	// like corosync-qdevice's connect timeout (8 s by default).
	AttemptTimeout time.Duration
}

// Fleet is a running set of simulated clusters. Every node keeps one
// connection like corosync-qdevice does: handshake, config, membership and
// quorum lists, VOTE_INFO answered, an echo every heartbeat interval (a
// missing echo reply drops the connection), and reconnection when the
// connection is lost.
type Fleet struct {
	Config   FleetConfig
	Clusters []*Cluster

	sem    chan struct{}
	gate   chan struct{}
	closed chan struct{}
	wg     sync.WaitGroup
	begin  time.Time

	mu         sync.Mutex
	cond       *sync.Cond
	total      int
	acked      int
	up         int
	allAckedAt time.Time
	firstErr   string
	badOutcome string

	// Counters, for reports and assertions.
	Attempts     atomic.Int64 // connection attempts
	Failures     atomic.Int64 // attempts that failed (connect, handshake)
	Losses       atomic.Int64 // established connections that ended, other than by Drop or Close
	EchoMissed   atomic.Int64 // echo requests not answered within one heartbeat interval
	ServerErrors atomic.Int64 // SERVER_ERROR messages and refused INITs
	BadOutcomes  atomic.Int64 // decisions that were not the expected ones
	maxRTT       atomic.Int64 // ns, slowest echo reply
}

// Cluster is one simulated cluster.
type Cluster struct {
	F     *Fleet
	Name  string
	Nodes []*SimNode

	mu    sync.Mutex
	cond  *sync.Cond
	seq   uint64
	split bool
	tls   *tls.Config
	busy  bool
}

// SimNode is one simulated corosync-qdevice. Its fields are guarded by the
// cluster's mutex.
type SimNode struct {
	C  *Cluster
	ID uint32

	from    net.Addr // local address; nil: the system's choice
	ring    wire.RingID
	members []wire.NodeInfo

	st        *client.Node // protocol state of the current connection
	conn      *client.Conn // established connection, nil when down
	pending   *client.Conn // connection being set up
	dropped   bool         // Drop closed the connection
	vote      client.Vote  // effective vote (NoVote while down)
	voteAt    time.Time
	ackAt     time.Time // last change to ACK
	listReply uint32    // seq of the latest NODE_LIST_REPLY
	echoOut   bool
	echoSeq   uint32
	echoAt    time.Time
	hb        *time.Timer // next echo
}

// NewFleet prepares the clusters (and their TLS configurations, which may
// take a while for upstream's NSS tools) without connecting.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 2
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 8 * time.Second
	}
	if cfg.ReconnectPause <= 0 {
		cfg.ReconnectPause = time.Second
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 8 * time.Second
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "bench"
	}
	f := &Fleet{Config: cfg, gate: make(chan struct{}), closed: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	if cfg.Concurrency > 0 {
		f.sem = make(chan struct{}, cfg.Concurrency)
	}
	all := make([]wire.NodeInfo, cfg.Nodes)
	for i := range all {
		all[i] = wire.NodeInfo{NodeID: uint32(i + 1)}
	}
	var from func(int) *net.TCPAddr
	if client.OnLoopback(cfg.Addr) {
		from = client.Loopback(cfg.Clusters * cfg.Nodes)
	}
	for ci := 0; ci < cfg.Clusters; ci++ {
		c := &Cluster{F: f, Name: fmt.Sprintf("%s%d", cfg.Prefix, ci), seq: 4}
		c.cond = sync.NewCond(&c.mu)
		if cfg.TLS != nil {
			t, err := cfg.TLS(c.Name)
			if err != nil {
				return nil, fmt.Errorf("TLS for cluster %s: %w", c.Name, err)
			}
			c.tls = t
		}
		for ni := 0; ni < cfg.Nodes; ni++ {
			n := &SimNode{C: c, ID: uint32(ni + 1), ring: wire.RingID{NodeID: 1, Seq: c.seq}, members: all}
			if from != nil {
				n.from = from(ci*cfg.Nodes + ni)
			}
			c.Nodes = append(c.Nodes, n)
		}
		f.Clusters = append(f.Clusters, c)
		f.total += cfg.Nodes
	}
	return f, nil
}

// Total is the number of nodes.
func (f *Fleet) Total() int { return f.total }

// Start connects every node at once (bounded by Concurrency) and returns
// the moment the gate opened.
func (f *Fleet) Start() time.Time {
	for _, c := range f.Clusters {
		for _, n := range c.Nodes {
			f.wg.Add(1)
			go n.run()
		}
	}
	f.begin = time.Now()
	close(f.gate)
	return f.begin
}

// Close disconnects every node and waits for their goroutines.
func (f *Fleet) Close() {
	select {
	case <-f.closed:
		return
	default:
	}
	close(f.closed)
	for _, c := range f.Clusters {
		c.mu.Lock()
		for _, n := range c.Nodes {
			if n.conn != nil {
				n.conn.Close()
			}
			if n.pending != nil {
				n.pending.Close()
			}
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
	f.wg.Wait()
}

func (f *Fleet) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

// MaxEchoRTT is the slowest echo reply seen.
func (f *Fleet) MaxEchoRTT() time.Duration { return time.Duration(f.maxRTT.Load()) }

// FirstError describes the first failed attempt or server error.
func (f *Fleet) FirstError() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.firstErr
}

// BadOutcome describes the first unexpected decision.
func (f *Fleet) BadOutcome() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.badOutcome
}

func (f *Fleet) noteErr(format string, args ...any) {
	f.mu.Lock()
	if f.firstErr == "" {
		f.firstErr = fmt.Sprintf(format, args...)
	}
	f.mu.Unlock()
}

// Acked is the number of nodes holding the vote (ACK for their ring).
func (f *Fleet) Acked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acked
}

// Up is the number of nodes with an established connection.
func (f *Fleet) Up() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.up
}

// waitCond waits on cond (whose lock the caller holds) until pred holds or
// the deadline passes.
func waitCond(cond *sync.Cond, deadline time.Time, pred func() bool) bool {
	if pred() {
		return true
	}
	t := time.AfterFunc(time.Until(deadline), func() {
		cond.L.Lock()
		cond.Broadcast()
		cond.L.Unlock()
	})
	defer t.Stop()
	for !pred() {
		if !time.Now().Before(deadline) {
			return false
		}
		cond.Wait()
	}
	return true
}

// WaitAllAcked waits until every node holds the vote and returns the
// moment the last one got it.
func (f *Fleet) WaitAllAcked(timeout time.Duration) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !waitCond(f.cond, time.Now().Add(timeout), func() bool { return f.acked == f.total }) {
		return time.Time{}, fmt.Errorf("%d of %d nodes hold the vote after %s (first error: %s)", f.acked, f.total, timeout, orNone(f.firstErr))
	}
	return f.allAckedAt, nil
}

// WaitUp waits until exactly n nodes have an established connection.
func (f *Fleet) WaitUp(n int, timeout time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !waitCond(f.cond, time.Now().Add(timeout), func() bool { return f.up == n }) {
		return fmt.Errorf("%d nodes connected after %s, want %d", f.up, timeout, n)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// AckTimes returns, for every node holding the vote, how long after since
// it got it (negative durations are clamped to 0), sorted.
func (f *Fleet) AckTimes(since time.Time) []time.Duration {
	var out []time.Duration
	for _, c := range f.Clusters {
		c.mu.Lock()
		for _, n := range c.Nodes {
			if n.vote == client.Ack {
				out = append(out, max(0, n.ackAt.Sub(since)))
			}
		}
		c.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// HealOffline makes every split cluster whole again in the nodes' own view
// (a new ring with every node) without sending anything: for use while the
// nodes are disconnected, so that they rejoin whole.
func (f *Fleet) HealOffline() {
	for _, c := range f.Clusters {
		c.mu.Lock()
		if c.split {
			c.seq++
			all := make([]wire.NodeInfo, len(c.Nodes))
			for i, n := range c.Nodes {
				all[i] = wire.NodeInfo{NodeID: n.ID}
			}
			for _, n := range c.Nodes {
				n.ring, n.members = wire.RingID{NodeID: c.Nodes[0].ID, Seq: c.seq}, all
			}
			c.split = false
		}
		c.mu.Unlock()
	}
}

func (n *SimNode) settings() client.Settings {
	return client.Settings{Cluster: n.C.Name, NodeID: n.ID, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: uint32(n.C.F.Config.Heartbeat / time.Millisecond), KAP: true}
}

// Drop closes the node's connection, as when its host loses the network
// for a moment; the node reconnects like after any other loss.
func (n *SimNode) Drop() {
	n.C.mu.Lock()
	defer n.C.mu.Unlock()
	if n.conn != nil {
		n.dropped = true
		n.conn.Close()
		// Down from now on (the reader notices a moment later).
		n.conn = nil
		n.updateVote(time.Now())
		n.C.cond.Broadcast()
	}
}

// Vote is the node's effective vote.
func (n *SimNode) Vote() client.Vote {
	n.C.mu.Lock()
	defer n.C.mu.Unlock()
	return n.vote
}

func (n *SimNode) run() {
	f := n.C.F
	defer f.wg.Done()
	<-f.gate
	first := true
	for !f.isClosed() {
		connected, err := n.session(first)
		if connected {
			first = false
		}
		if err != nil && !f.isClosed() {
			f.Failures.Add(1)
			f.noteErr("%s/%d: %v", n.C.Name, n.ID, err)
		}
		pause := rand.N(f.Config.ReconnectPause)
		select {
		case <-f.closed:
			return
		case <-time.After(pause):
		}
	}
}

// session makes one connection attempt and, when it succeeds, serves the
// connection until it ends. connected says whether the handshake worked.
func (n *SimNode) session(first bool) (connected bool, err error) {
	c, f := n.C, n.C.F
	f.Attempts.Add(1)
	c.mu.Lock()
	st := client.NewNode(n.settings())
	ring := n.ring
	c.mu.Unlock()
	if first && f.sem != nil {
		select {
		case f.sem <- struct{}{}:
		case <-f.closed:
			return false, nil
		}
		defer func() {
			if !connected {
				<-f.sem
			}
		}()
	}
	conn, err := client.DialWith(&net.Dialer{Timeout: f.Config.AttemptTimeout, LocalAddr: n.from}, f.Config.Addr, st)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	if f.isClosed() {
		c.mu.Unlock()
		conn.Close()
		return false, nil
	}
	n.pending = conn
	c.mu.Unlock()
	_ = conn.NetConn().SetDeadline(time.Now().Add(f.Config.AttemptTimeout))
	err = conn.Handshake(ring, c.tls)
	c.mu.Lock()
	n.pending = nil
	if err != nil || f.isClosed() {
		c.mu.Unlock()
		conn.Close()
		if errors.Is(err, client.ErrRefused) {
			f.ServerErrors.Add(1)
		}
		if f.isClosed() {
			err = nil
		}
		return false, err
	}
	connected = true
	if first && f.sem != nil {
		<-f.sem
	}
	// From here the real client sends its lists and answers asynchronously.
	_ = conn.NetConn().SetReadDeadline(time.Time{})
	n.st, n.conn, n.dropped, n.echoOut = st, conn, false, false
	f.mu.Lock()
	f.up++
	f.cond.Broadcast()
	f.mu.Unlock()
	quorum := make([]wire.NodeInfo, len(n.members))
	for i, m := range n.members {
		quorum[i] = wire.NodeInfo{NodeID: m.NodeID, State: wire.NodeStateMember}
	}
	var buf []byte
	buf = st.Config(n.allNodes(), true, nil).Append(buf)
	buf = st.Membership(n.ring, n.members, wire.HeuristicsUndefined).Append(buf)
	buf = st.Quorum(true, quorum).Append(buf)
	werr := n.write(buf)
	n.hb = time.AfterFunc(f.Config.Heartbeat, func() { n.heartbeat(conn) })
	c.mu.Unlock()

	var rerr error
	if werr == nil {
		rerr = n.read(conn, st)
	}
	conn.Close()
	now := time.Now()
	c.mu.Lock()
	n.hb.Stop()
	n.conn, n.st, n.hb = nil, nil, nil
	dropped := n.dropped
	n.updateVote(now)
	c.cond.Broadcast()
	c.mu.Unlock()
	f.mu.Lock()
	f.up--
	f.cond.Broadcast()
	f.mu.Unlock()
	if !dropped && !f.isClosed() {
		f.Losses.Add(1)
		if os.Getenv("QNETD_BENCH_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "%s/%d: connection lost: %v\n", c.Name, n.ID, rerr)
		}
	}
	return true, nil
}

func (n *SimNode) allNodes() []wire.NodeInfo {
	all := make([]wire.NodeInfo, len(n.C.Nodes))
	for i, o := range n.C.Nodes {
		all[i] = wire.NodeInfo{NodeID: o.ID}
	}
	return all
}

// write sends b on the current connection; the caller holds the cluster's
// mutex, which orders every write of the node.
func (n *SimNode) write(b []byte) error {
	if n.conn == nil {
		return errors.New("not connected")
	}
	nc := n.conn.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(n.C.F.Config.AttemptTimeout))
	_, err := nc.Write(b)
	if err != nil {
		n.conn.Close()
	}
	return err
}

func (n *SimNode) heartbeat(conn *client.Conn) {
	c, f := n.C, n.C.F
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.conn != conn || n.hb == nil {
		return
	}
	if n.echoOut {
		// corosync-qdevice: "Server didn't send echo reply message on
		// time", and it disconnects.
		f.EchoMissed.Add(1)
		f.noteErr("%s/%d: no echo reply within %s", c.Name, n.ID, f.Config.Heartbeat)
		conn.Close()
		return
	}
	m := n.st.Echo()
	n.echoOut, n.echoSeq, n.echoAt = true, m.Seq, time.Now()
	if n.write(m.Append(nil)) == nil {
		n.hb.Reset(f.Config.Heartbeat)
	}
}

func (n *SimNode) read(conn *client.Conn, st *client.Node) error {
	c, f := n.C, n.C.F
	for {
		m, _, err := conn.ReadMsg()
		if err != nil {
			return err
		}
		now := time.Now()
		c.mu.Lock()
		if m.Type == wire.MsgEchoReply {
			if n.echoOut && m.Seq == n.echoSeq {
				n.echoOut = false
				rtt := int64(now.Sub(n.echoAt))
				for {
					old := f.maxRTT.Load()
					if rtt <= old || f.maxRTT.CompareAndSwap(old, rtt) {
						break
					}
				}
			}
			c.mu.Unlock()
			continue
		}
		ans := st.Handle(m)
		if len(st.Log) > 32 {
			st.Log = st.Log[:0]
		}
		switch m.Type {
		case wire.MsgNodeListReply:
			n.listReply = m.Seq
		case wire.MsgServerError:
			// The real client disconnects on any SERVER_ERROR.
			f.ServerErrors.Add(1)
			f.noteErr("%s/%d: %s", c.Name, n.ID, m)
			c.mu.Unlock()
			return fmt.Errorf("server error: %s", m)
		}
		n.updateVote(now)
		c.cond.Broadcast()
		var werr error
		if ans != nil {
			werr = n.write(ans.Append(nil))
		}
		c.mu.Unlock()
		if werr != nil {
			return werr
		}
	}
}

// updateVote records a change of the node's effective vote; the caller
// holds the cluster's mutex.
func (n *SimNode) updateVote(now time.Time) {
	v := client.NoVote
	if n.conn != nil && n.st != nil {
		v = n.st.EffectiveVote()
	}
	if v == n.vote {
		return
	}
	old := n.vote
	n.vote, n.voteAt = v, now
	if v == client.Ack {
		n.ackAt = now
	}
	if (old == client.Ack) == (v == client.Ack) {
		return
	}
	f := n.C.F
	f.mu.Lock()
	if v == client.Ack {
		f.acked++
		if f.acked == f.total {
			f.allAckedAt = now
		}
	} else {
		f.acked--
	}
	f.cond.Broadcast()
	f.mu.Unlock()
}

// ErrBusy is returned by Flip when a node of the cluster is not connected.
var ErrBusy = errors.New("cluster not ready")

// Flip splits a whole cluster into two halves or heals a split one, the
// way corosync reports it: every node sends its new membership, one after
// the other (each waits for its NODE_LIST_REPLY), and the last one
// completes the view and makes the decision. It returns the decision
// latency: from sending that last list until every node holds its vote
// for its new ring (the winner's ACK comes last in ffsplit).
func (c *Cluster) Flip(timeout time.Duration) (time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(timeout)
	if !c.allConnected() {
		return 0, ErrBusy
	}
	wasSplit := c.nextRings()
	t0, err := c.sendMemberships(deadline, timeout)
	if err != nil {
		return 0, err
	}
	ok := c.waitVotes(deadline)
	t, err := c.tally()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%s: no decision within %s (%d ACK, %d NACK of %d)", c.Name, timeout, t.acks, t.nacks, len(c.Nodes))
	}
	c.checkOutcome(wasSplit, t)
	return max(0, t.last.Sub(t0)), nil
}

// allConnected tells whether every node of the cluster has a connection;
// the caller holds the cluster's mutex.
func (c *Cluster) allConnected() bool {
	for _, n := range c.Nodes {
		if n.conn == nil {
			return false
		}
	}
	return true
}

// nextRings gives every node the ring and membership it reports next: a
// whole cluster splits into two halves (the first half the smaller one),
// a split one heals. It returns whether the cluster was split before; the
// caller holds the cluster's mutex.
func (c *Cluster) nextRings() (wasSplit bool) {
	c.seq++
	k := len(c.Nodes)
	groups := [][]*SimNode{c.Nodes}
	if !c.split && k > 1 {
		groups = [][]*SimNode{c.Nodes[:k/2], c.Nodes[k/2:]}
	}
	for _, g := range groups {
		members := make([]wire.NodeInfo, len(g))
		for i, n := range g {
			members[i] = wire.NodeInfo{NodeID: n.ID}
		}
		for _, n := range g {
			n.ring, n.members = wire.RingID{NodeID: g[0].ID, Seq: c.seq}, members
		}
	}
	wasSplit = c.split
	c.split = len(groups) > 1
	return wasSplit
}

// sendMemberships sends every node's new membership list in turn, each
// but the last after the previous one's NODE_LIST_REPLY, and returns when
// the last list was sent: the start of the decision. The caller holds the
// cluster's mutex.
func (c *Cluster) sendMemberships(deadline time.Time, timeout time.Duration) (time.Time, error) {
	k := len(c.Nodes)
	var t0 time.Time
	for i, n := range c.Nodes {
		m := n.st.Membership(n.ring, n.members, wire.HeuristicsUndefined)
		if i == k-1 {
			t0 = time.Now()
		}
		if err := n.write(m.Append(nil)); err != nil {
			return time.Time{}, fmt.Errorf("%s/%d: %w", c.Name, n.ID, err)
		}
		n.updateVote(time.Now()) // a vote for the old ring no longer counts
		if i < k-1 {
			if err := c.awaitListReply(n, m.Seq, deadline, timeout); err != nil {
				return time.Time{}, err
			}
		}
	}
	return t0, nil
}

// awaitListReply waits for the NODE_LIST_REPLY to the list n sent as seq
// on its current connection; the caller holds the cluster's mutex.
func (c *Cluster) awaitListReply(n *SimNode, seq uint32, deadline time.Time, timeout time.Duration) error {
	conn := n.conn
	if !waitCond(c.cond, deadline, func() bool { return n.conn != conn || n.listReply == seq }) {
		return fmt.Errorf("%s/%d: no reply to the membership list within %s", c.Name, n.ID, timeout)
	}
	if n.conn != conn {
		return fmt.Errorf("%s/%d: connection lost", c.Name, n.ID)
	}
	return nil
}

// waitVotes waits until every node holds a vote or one lost its
// connection; false when the deadline passed first. The caller holds the
// cluster's mutex.
func (c *Cluster) waitVotes(deadline time.Time) bool {
	return waitCond(c.cond, deadline, func() bool {
		for _, n := range c.Nodes {
			if n.conn == nil {
				return true
			}
			if n.vote == client.NoVote {
				return false
			}
		}
		return true
	})
}

// flipTally is what the nodes hold after a Flip: the time of the last
// vote change and how many hold ACK and NACK.
type flipTally struct {
	last        time.Time
	acks, nacks int
}

// tally counts the nodes' votes; an error when a node lost its
// connection. The caller holds the cluster's mutex.
func (c *Cluster) tally() (flipTally, error) {
	var t flipTally
	for _, n := range c.Nodes {
		if n.conn == nil {
			return t, fmt.Errorf("%s/%d: connection lost", c.Name, n.ID)
		}
		if n.voteAt.After(t.last) {
			t.last = n.voteAt
		}
		switch n.vote {
		case client.Ack:
			t.acks++
		case client.Nack:
			t.nacks++
		}
	}
	return t, nil
}

// checkOutcome counts a decision that ffsplit should not have made: after
// a heal every node holds ACK, after a split one half ACK and the other
// NACK. The first one is kept for the report.
func (c *Cluster) checkOutcome(wasSplit bool, t flipTally) {
	k := len(c.Nodes)
	fine := k < 2 || (t.acks > 0 && t.nacks > 0) // split: one half won
	if wasSplit {
		fine = t.acks == k // healed: every node
	}
	if fine {
		return
	}
	f := c.F
	f.BadOutcomes.Add(1)
	f.mu.Lock()
	if f.badOutcome == "" {
		f.badOutcome = fmt.Sprintf("%s: %d ACK, %d NACK after a %s", c.Name, t.acks, t.nacks, map[bool]string{true: "heal", false: "split"}[wasSplit])
	}
	f.mu.Unlock()
}

// TryLock marks the cluster busy for one workload goroutine; false when it
// is already.
func (c *Cluster) TryLock() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy {
		return false
	}
	c.busy = true
	return true
}

// Unlock clears the busy mark.
func (c *Cluster) Unlock() {
	c.mu.Lock()
	c.busy = false
	c.mu.Unlock()
}

// WaitVoted waits until every node of the cluster is connected and holds a
// vote (ACK or NACK) for its current ring.
func (c *Cluster) WaitVoted(timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := waitCond(c.cond, time.Now().Add(timeout), func() bool {
		for _, n := range c.Nodes {
			if n.conn == nil || n.vote == client.NoVote {
				return false
			}
		}
		return true
	})
	if !ok {
		return fmt.Errorf("%s: not every node connected and voted within %s", c.Name, timeout)
	}
	return nil
}
