package scenario

import (
	"fmt"
	"sort"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// settleHorizonMs is how far Settle lets virtual time run for timers
// (lms retries) after the messages ran out.
const settleHorizonMs = 1000

// EngineTransport runs nodes against an in-process engine with a virtual
// clock. Every message goes through the wire codec both ways.
type EngineTransport struct {
	E      *engine.Engine
	now    uint64 // virtual ms
	nextID engine.ClientID
	ids    map[*client.Node]engine.ClientID
	nodes  map[engine.ClientID]*client.Node
	timers map[timerKey]timerVal
}

type timerKey struct {
	id engine.ClientID
	k  engine.TimerKind
}

type timerVal struct {
	due uint64
	gen uint64
}

// NewEngineTransport creates an engine with cfg and a transport for it.
func NewEngineTransport(cfg engine.Config) *EngineTransport {
	return NewEngineTransportLog(cfg, zerolog.Nop())
}

// NewEngineTransportLog is NewEngineTransport with the engine's log going
// to log.
func NewEngineTransportLog(cfg engine.Config, log zerolog.Logger) *EngineTransport {
	return &EngineTransport{
		E:      engine.New(cfg, log),
		ids:    map[*client.Node]engine.ClientID{},
		nodes:  map[engine.ClientID]*client.Node{},
		timers: map[timerKey]timerVal{},
	}
}

func (t *EngineTransport) Open(n *client.Node) error {
	if t.Connected(n) {
		return fmt.Errorf("already connected")
	}
	t.nextID++
	id := t.nextID
	t.ids[n], t.nodes[id] = id, n
	t.apply(t.E.Connect(id, fmt.Sprintf("sim:%s/%d", n.Cluster, n.NodeID)))
	return nil
}

// VoteOf is n's vote; the engine runs in the caller's goroutine.
func (t *EngineTransport) VoteOf(n *client.Node) (client.Vote, bool) { return n.Vote(), t.Connected(n) }

func (t *EngineTransport) Connected(n *client.Node) bool {
	id, ok := t.ids[n]
	return ok && t.nodes[id] == n
}

func (t *EngineTransport) Close(n *client.Node) {
	id, ok := t.ids[n]
	if !ok || t.nodes[id] != n {
		return
	}
	delete(t.nodes, id)
	t.apply(t.E.Disconnect(id))
}

func (t *EngineTransport) Send(n *client.Node, m *wire.Msg) error {
	return t.SendRaw(n, m)
}

func (t *EngineTransport) SendRaw(n *client.Node, m *wire.Msg) error {
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
		t.apply(t.E.DecodeError(id, de))
		return nil
	}
	t.apply(t.E.Message(id, dm, raw))
	return nil
}

// apply performs actions; node replies are fed back at once (depth first),
// which is the order a single-threaded server sees them in when each node
// answers before the next event.
func (t *EngineTransport) apply(acts []engine.Action) {
	var replies []struct {
		n *client.Node
		m *wire.Msg
	}
	for _, a := range acts {
		switch a.Kind {
		case engine.ActSend:
			n := t.nodes[a.To]
			if n == nil {
				continue
			}
			raw := a.Raw
			if raw == nil {
				raw = a.Msg.Append(nil)
			}
			m, err := wire.Decode(raw)
			if err != nil {
				panic(fmt.Sprintf("engine sent an undecodable message: %v", err))
			}
			if r := n.Handle(m); r != nil {
				replies = append(replies, struct {
					n *client.Node
					m *wire.Msg
				}{n, r})
			}
		case engine.ActDisconnect:
			delete(t.nodes, a.To)
		case engine.ActArmTimer:
			t.timers[timerKey{a.To, a.Timer}] = timerVal{due: t.now + uint64(a.Ms), gen: a.Gen}
		case engine.ActStopTimer:
			delete(t.timers, timerKey{a.To, a.Timer})
		}
	}
	for _, r := range replies {
		_ = t.SendRaw(r.n, r.m)
	}
}

// fireDue fires the earliest timer due at or before limit; false if none.
func (t *EngineTransport) fireDue(limit uint64) bool {
	keys := make([]timerKey, 0, len(t.timers))
	for k, v := range t.timers {
		if v.due <= limit {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return false
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := t.timers[keys[i]], t.timers[keys[j]]
		if a.due != b.due {
			return a.due < b.due
		}
		if keys[i].id != keys[j].id {
			return keys[i].id < keys[j].id
		}
		return keys[i].k < keys[j].k
	})
	k := keys[0]
	v := t.timers[k]
	delete(t.timers, k)
	if v.due > t.now {
		t.now = v.due
	}
	t.apply(t.E.Timer(k.id, k.k, v.gen))
	return true
}

// Settle runs timers due within the horizon.
func (t *EngineTransport) Settle(string, func() string) {
	limit := t.now + settleHorizonMs
	for i := 0; i < 10000 && t.fireDue(limit); i++ {
	}
}

// Wait advances virtual time by ms, firing timers on the way.
func (t *EngineTransport) Wait(ms uint32) {
	limit := t.now + uint64(ms)
	for i := 0; i < 100000 && t.fireDue(limit); i++ {
	}
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
