package client

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// settleHorizon is how far Settle lets virtual time run for the engine's
// deadlines (lms retries) after the messages ran out.
const settleHorizon = time.Second

// EngineTransport runs nodes against an in-process engine with a virtual
// clock. Every message goes through the wire codec both ways. Initialised
// nodes send a heartbeat (ECHO_REQUEST) every half heartbeat interval of
// virtual time, as the real client does, so dead peer detection holds
// only for nodes that are gone.
type EngineTransport struct {
	E      *engine.Engine
	now    time.Duration // virtual
	nextID engine.ClientID
	ids    map[*Node]engine.ClientID
	nodes  map[engine.ClientID]*Node
	beats  map[engine.ClientID]time.Duration // the next heartbeat of each initialised node
}

// NewEngineTransport creates an engine with cfg and a transport for it.
func NewEngineTransport(cfg engine.Config) *EngineTransport {
	return NewEngineTransportLog(cfg, zerolog.Nop())
}

// NewEngineTransportLog is NewEngineTransport with the engine's log going
// to log.
func NewEngineTransportLog(cfg engine.Config, log zerolog.Logger) *EngineTransport {
	return &EngineTransport{
		E:     engine.New(cfg, log),
		ids:   map[*Node]engine.ClientID{},
		nodes: map[engine.ClientID]*Node{},
		beats: map[engine.ClientID]time.Duration{},
	}
}

func (t *EngineTransport) Open(n *Node) error {
	return t.OpenFrom(n, fmt.Sprintf("sim:%s/%d", n.Cluster, n.NodeID))
}

// OpenFrom is Open from the address addr (as the engine shows it).
func (t *EngineTransport) OpenFrom(n *Node, addr string) error {
	if t.Connected(n) {
		return fmt.Errorf("already connected")
	}
	t.nextID++
	id := t.nextID
	t.ids[n], t.nodes[id] = id, n
	n.opened()
	t.apply(t.E.Connect(t.now, id, addr), id)
	return nil
}

// VoteOf is n's vote; the engine runs in the caller's goroutine.
func (t *EngineTransport) VoteOf(n *Node) (Vote, bool) { return n.Vote(), t.Connected(n) }

func (t *EngineTransport) Connected(n *Node) bool {
	id, ok := t.ids[n]
	return ok && t.nodes[id] == n
}

func (t *EngineTransport) Close(n *Node) {
	id, ok := t.ids[n]
	if !ok || t.nodes[id] != n {
		return
	}
	delete(t.nodes, id)
	delete(t.beats, id)
	t.apply(t.E.Disconnect(t.now, id), id)
}

func (t *EngineTransport) Send(n *Node, m *wire.Msg) error {
	return t.SendRaw(n, m)
}

func (t *EngineTransport) SendRaw(n *Node, m *wire.Msg) error {
	id, ok := t.ids[n]
	if !ok || t.nodes[id] != n {
		return nil // like writing to a closed socket: the message is lost
	}
	raw := m.Append(nil)
	dm, err := wire.Decode(raw)
	if err != nil {
		var de *wire.DecodeError
		if e, ok := err.(*wire.DecodeError); ok {
			de = e
		}
		t.apply(t.E.DecodeError(t.now, id, de), id)
		return nil
	}
	t.apply(t.E.Message(t.now, id, dm, raw), id)
	return nil
}

// apply performs the engine's batch for an event of client from (0:
// none); node replies are fed back at once (depth first), which is the
// order a single-threaded server sees them in when each node answers
// before the next event. A STARTTLS the engine accepts completes at once,
// with a client certificate named after the node's cluster, as a paired
// node's is.
func (t *EngineTransport) apply(b engine.Batch, from engine.ClientID) {
	type reply struct {
		n *Node
		m *wire.Msg
	}
	var replies []reply
	for _, s := range b.Sends {
		n := t.nodes[s.To]
		if n == nil {
			continue
		}
		raw := s.Raw
		if raw == nil {
			raw = s.Msg.Append(nil)
		}
		m, err := wire.Decode(raw)
		if err != nil {
			panic(fmt.Sprintf("engine sent an undecodable message: %v", err))
		}
		ready := n.Ready()
		if r := n.Handle(m); r != nil {
			replies = append(replies, reply{n, r})
		}
		if !ready && n.Ready() {
			t.beats[s.To] = t.now + beatInterval(n)
		}
	}
	for _, d := range b.Disconnects {
		delete(t.nodes, d.Client)
		delete(t.beats, d.Client)
	}
	if n := t.nodes[from]; b.StartTLS && n != nil {
		t.apply(t.E.TLSStarted(t.now, from, &engine.PeerCert{CommonName: n.Cluster}), from)
	}
	for _, r := range replies {
		_ = t.SendRaw(r.n, r.m)
	}
}

func beatInterval(n *Node) time.Duration {
	if iv := time.Duration(n.Heartbeat) * time.Millisecond / 2; iv > 0 {
		return iv
	}
	return time.Second
}

// beatUntil sends every heartbeat due at or before limit, in time order
// (ties by connection), moving the clock to each.
func (t *EngineTransport) beatUntil(limit time.Duration) {
	for {
		var id engine.ClientID
		var at time.Duration
		for x, due := range t.beats {
			if due <= limit && (id == 0 || due < at || (due == at && x < id)) {
				id, at = x, due
			}
		}
		if id == 0 {
			return
		}
		n := t.nodes[id]
		t.beats[id] = at + beatInterval(n)
		t.now = max(t.now, at)
		_ = t.SendRaw(n, n.Echo())
	}
}

// fireDue lets time run to the engine's next deadline if it is at or
// before limit, heartbeats first; false if there is none.
func (t *EngineTransport) fireDue(limit time.Duration) bool {
	at, ok := t.E.Next()
	if !ok || at > limit {
		return false
	}
	t.beatUntil(at)
	t.now = max(t.now, at)
	t.apply(t.E.Tick(t.now), 0)
	return true
}

// Settle runs the engine's deadlines due within the horizon. The clock
// stops at the last one, not at the horizon, so a story's deadlines come
// only with its waits.
func (t *EngineTransport) Settle(string, func() string) {
	limit := t.now + settleHorizon
	for i := 0; i < 10000 && t.fireDue(limit); i++ {
	}
}

// Wait advances virtual time by ms, with every deadline and heartbeat on
// the way.
func (t *EngineTransport) Wait(ms uint32) {
	limit := t.now + time.Duration(ms)*time.Millisecond
	for i := 0; i < 100000 && t.fireDue(limit); i++ {
	}
	t.beatUntil(limit)
	t.now = limit
}

// States reports each cluster's state from the engine's status copy.
func (t *EngineTransport) States() []string {
	st := t.E.Status()
	out := make([]string, 0, len(st.Clusters))
	for _, cl := range st.Clusters {
		out = append(out, fmt.Sprintf("%s is %s: %s", cl.Name, cl.State, cl.StateReason))
	}
	return out
}
