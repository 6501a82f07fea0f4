package client

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TCPTransport runs nodes against a qnetd over TCP (plain text). It works
// with any server, ours or upstream's, and knows nothing of its insides:
// it settles with echo barriers, which rely only on the server answering
// each connection's messages in order.
type TCPTransport struct {
	Addr string
	// Clients, when set, returns the server's number of connected clients;
	// Close then waits until the server has seen the disconnect.
	Clients func() (int, error)
	// Timeout bounds every wait.
	Timeout time.Duration

	mu    sync.Mutex
	cond  *sync.Cond
	nodes map[*Node]*tcpNode
	msgs  uint64 // messages received from the server, all nodes
}

type tcpNode struct {
	n      *Node
	c      *Conn
	closed bool
	stop   chan struct{}
}

// NewTCPTransport creates a transport for the server at addr.
func NewTCPTransport(addr string) *TCPTransport {
	t := &TCPTransport{Addr: addr, Timeout: 5 * time.Second, nodes: map[*Node]*tcpNode{}}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// waitFor waits until cond holds (true) or the deadline passes (false).
// The caller holds t.mu.
func (t *TCPTransport) waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { t.mu.Lock(); t.cond.Broadcast(); t.mu.Unlock() })
	defer timer.Stop()
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		t.cond.Wait()
	}
	return true
}

func (t *TCPTransport) Open(n *Node) error {
	nc, err := net.DialTimeout("tcp", t.Addr, t.Timeout)
	if err != nil {
		return err
	}
	t.mu.Lock()
	tn := &tcpNode{n: n, c: NewConn(nc, n), stop: make(chan struct{})}
	t.nodes[n] = tn
	t.mu.Unlock()
	go t.reader(tn)
	go t.heartbeat(tn)
	return nil
}

func (t *TCPTransport) reader(tn *tcpNode) {
	for {
		m, _, err := tn.c.ReadMsg()
		t.mu.Lock()
		if err != nil {
			tn.closed = true
			close(tn.stop)
			t.cond.Broadcast()
			t.mu.Unlock()
			return
		}
		t.msgs++
		if ans := tn.n.Handle(m); ans != nil {
			_ = tn.c.Write(ans)
		}
		t.cond.Broadcast()
		t.mu.Unlock()
	}
}

// heartbeat keeps dead peer detection happy, as the real client does.
func (t *TCPTransport) heartbeat(tn *tcpNode) {
	iv := time.Duration(tn.n.Heartbeat) * time.Millisecond / 2
	if iv <= 0 {
		iv = time.Second
	}
	tick := time.NewTicker(iv)
	defer tick.Stop()
	for {
		select {
		case <-tn.stop:
			return
		case <-tick.C:
			t.mu.Lock()
			if !tn.closed && tn.n.Ready() {
				_ = tn.c.Write(tn.n.Echo())
			}
			t.mu.Unlock()
		}
	}
}

func (t *TCPTransport) Connected(n *Node) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tn := t.nodes[n]
	return tn != nil && !tn.closed
}

// VoteOf reads n's vote under the lock its reader changes it under.
func (t *TCPTransport) VoteOf(n *Node) (Vote, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tn := t.nodes[n]
	return n.Vote(), tn != nil && !tn.closed
}

func (t *TCPTransport) Close(n *Node) {
	t.mu.Lock()
	tn := t.nodes[n]
	if tn == nil || tn.closed {
		t.mu.Unlock()
		return
	}
	tn.c.Close()
	t.waitFor(t.Timeout, func() bool { return tn.closed })
	t.mu.Unlock()
	if t.Clients != nil {
		want := 0
		t.mu.Lock()
		for _, x := range t.nodes {
			if !x.closed {
				want++
			}
		}
		t.mu.Unlock()
		deadline := time.Now().Add(t.Timeout)
		for time.Now().Before(deadline) {
			if got, err := t.Clients(); err == nil && got == want {
				break
			}
			time.Sleep(5 * time.Millisecond) // polling the server's own count; no event exists for it
		}
	}
	t.barrier()
}

func (t *TCPTransport) SendRaw(n *Node, m *wire.Msg) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	tn := t.nodes[n]
	if tn == nil || tn.closed {
		return nil
	}
	_ = tn.c.Write(m)
	return nil
}

func (t *TCPTransport) Send(n *Node, m *wire.Msg) error {
	t.mu.Lock()
	tn := t.nodes[n]
	if tn == nil || tn.closed {
		t.mu.Unlock()
		return nil
	}
	n.Await(m)
	if err := tn.c.Write(m); err != nil {
		n.Await(nil)
		t.mu.Unlock()
		return nil
	}
	ok := t.waitFor(t.Timeout, func() bool { return n.Answered() || tn.closed })
	n.Await(nil)
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("no reply to %s within %s", m, t.Timeout)
	}
	t.barrier()
	return nil
}

// barrier returns once every VOTE_INFO caused by what was sent so far has
// arrived: rounds of echo round trips over every connection, until a round
// brings no new VOTE_INFO (at least two rounds, so that a reply processed
// on one connection has had its effects delivered on every other).
func (t *TCPTransport) barrier() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for round := 0; round < 50; round++ {
		before := t.voteInfos()
		for _, tn := range t.nodes {
			if tn.closed || !tn.n.Ready() {
				continue
			}
			e := tn.n.Echo()
			if err := tn.c.Write(e); err != nil {
				continue
			}
			t.waitFor(t.Timeout, func() bool { return tn.closed || tn.n.EchoReplied() >= e.Seq })
		}
		if round >= 1 && t.voteInfos() == before {
			return
		}
	}
}

func (t *TCPTransport) voteInfos() int {
	total := 0
	for _, tn := range t.nodes {
		total += tn.n.VoteInfos
	}
	return total
}

// Settle waits for the echo barrier and then, if the votes differ from
// want, for further messages (timer-driven votes) until they match or the
// deadline passes.
func (t *TCPTransport) Settle(want string, render func() string) {
	t.barrier()
	if want == "" {
		return
	}
	deadline := time.Now().Add(3 * time.Second)
	for render() != want && time.Now().Before(deadline) {
		t.mu.Lock()
		seen := t.msgs
		t.waitFor(time.Until(deadline), func() bool { return t.msgs != seen })
		t.mu.Unlock()
		t.barrier()
	}
}

// Wait lets real time pass: the scenario's own stimulus, not a synchronisation.
func (t *TCPTransport) Wait(ms uint32) { time.Sleep(time.Duration(ms) * time.Millisecond) }

// CloseAll disconnects every node.
func (t *TCPTransport) CloseAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tn := range t.nodes {
		tn.c.Close()
	}
}
