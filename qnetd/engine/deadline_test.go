package engine_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

const ms = time.Millisecond

// clockRig drives one engine with explicit times.
type clockRig struct {
	t *testing.T
	e *engine.Engine
}

func (r clockRig) send(now time.Duration, id engine.ClientID, m *wire.Msg) engine.Batch {
	return r.e.Message(now, id, m, m.Append(nil))
}

// join connects client id at now and completes PREINIT and INIT with
// heartbeat hb (ms).
func (r clockRig) join(now time.Duration, id engine.ClientID, hb uint32) *client.Node {
	r.t.Helper()
	n := client.NewNode(client.Settings{Cluster: "c", NodeID: uint32(id), Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: hb})
	r.e.Connect(now, id, "192.0.2.1:5000")
	r.send(now, id, n.Preinit())
	require.True(r.t, r.send(now, id, n.Init(wire.RingID{NodeID: 1, Seq: 4})).InitDone)
	return n
}

func next(t *testing.T, e *engine.Engine) time.Duration {
	t.Helper()
	at, ok := e.Next()
	require.True(t, ok, "the engine has no deadline")
	return at
}

func disconnects(b engine.Batch) map[engine.ClientID]engine.DisconnectReason {
	out := map[engine.ClientID]engine.DisconnectReason{}
	for _, d := range b.Disconnects {
		out[d.Client] = d.Reason
	}
	return out
}

// TestDeadPeerDeadlineFollowsMessages: a client is dropped exactly its
// dead-peer interval (1.5 heartbeats) after its last complete message,
// never before; a message moves the deadline, and Next says when.
func TestDeadPeerDeadlineFollowsMessages(t *testing.T) {
	r := clockRig{t, engine.New(scenarioConfig(), zerolog.Nop())}
	_, ok := r.e.Next()
	require.False(t, ok, "no client, no deadline")
	n := r.join(10*ms, 1, 1000)
	require.Equal(t, 1510*ms, next(t, r.e))
	require.Equal(t, 1510*ms, r.e.Tick(0).Next, "the batch says the same")

	echo := n.Echo()
	r.send(1000*ms, 1, echo)
	require.Equal(t, 2500*ms, next(t, r.e), "Next is exact: the echo moved the deadline at once")
	require.Empty(t, disconnects(r.e.Tick(1509*ms)))
	require.Empty(t, disconnects(r.e.Tick(1510*ms)), "the echo at 1000 ms moved the deadline to 2500 ms")
	require.Equal(t, 2500*ms, next(t, r.e))
	require.Empty(t, disconnects(r.e.Tick(2499*ms)), "one millisecond early")
	require.Equal(t, map[engine.ClientID]engine.DisconnectReason{1: engine.ReasonDeadPeer}, disconnects(r.e.Tick(2500*ms)))
	_, ok = r.e.Next()
	require.False(t, ok, "the dropped client has no deadline left")
	require.Equal(t, uint64(1), r.e.Status().Stats.DeadPeers)
	require.Zero(t, r.e.Status().Clients)
}

// TestSkippedMessageIsNoSignOfLife: a message the server skipped without
// decoding (FrameError) does not move the dead-peer deadline; one that
// failed to decode does.
func TestSkippedMessageIsNoSignOfLife(t *testing.T) {
	r := clockRig{t, engine.New(scenarioConfig(), zerolog.Nop())}
	r.join(0, 1, 1000)
	r.join(0, 2, 1000)
	r.e.FrameError(1000*ms, 1, wire.ErrMessageTooLong)
	r.e.DecodeError(1000*ms, 2, &wire.DecodeError{})
	require.Equal(t, map[engine.ClientID]engine.DisconnectReason{1: engine.ReasonDeadPeer}, disconnects(r.e.Tick(1500*ms)))
	require.Equal(t, map[engine.ClientID]engine.DisconnectReason{2: engine.ReasonDeadPeer}, disconnects(r.e.Tick(2500*ms)))
}

// TestInitTimeout: a connection without a successful INIT is closed
// InitTimeout after it connected; INIT lifts the deadline, and without
// InitTimeout only the pre-INIT dead-peer interval (180 s) applies.
func TestInitTimeout(t *testing.T) {
	cfg := scenarioConfig()
	cfg.InitTimeout = 20 * time.Second
	r := clockRig{t, engine.New(cfg, zerolog.Nop())}
	r.e.Connect(0, 1, "192.0.2.1:1")
	r.join(0, 2, 20000)
	require.Equal(t, 20*time.Second, next(t, r.e))
	require.Empty(t, disconnects(r.e.Tick(20*time.Second-1)))
	require.Equal(t, map[engine.ClientID]engine.DisconnectReason{1: engine.ReasonInitTimeout}, disconnects(r.e.Tick(20*time.Second)))
	require.Equal(t, 30*time.Second, next(t, r.e), "client 2 is left with its dead-peer deadline only")

	r = clockRig{t, engine.New(scenarioConfig(), zerolog.Nop())}
	r.e.Connect(0, 1, "192.0.2.1:1")
	require.Equal(t, 180*time.Second, next(t, r.e))
	require.Empty(t, disconnects(r.e.Tick(180*time.Second-1)))
	require.Equal(t, map[engine.ClientID]engine.DisconnectReason{1: engine.ReasonDeadPeer}, disconnects(r.e.Tick(180*time.Second)))
}

// TestClockNeverGoesBack: the engine takes the latest reading it saw; an
// event with an older one (a slow path, a reordered event) neither
// un-expires a deadline nor moves one earlier.
func TestClockNeverGoesBack(t *testing.T) {
	r := clockRig{t, engine.New(scenarioConfig(), zerolog.Nop())}
	n := r.join(0, 1, 1000)
	r.e.Tick(1000 * ms)
	echo := n.Echo()
	r.send(0, 1, echo) // read as 1000 ms
	require.Empty(t, disconnects(r.e.Tick(2000*ms)))
	require.Equal(t, map[engine.ClientID]engine.DisconnectReason{1: engine.ReasonDeadPeer}, disconnects(r.e.Tick(2500*ms)))
}

// TestSimultaneousDeadlinesFireInClientOrder: deadlines at the same time
// fire by client id, so a run is the same every time.
func TestSimultaneousDeadlinesFireInClientOrder(t *testing.T) {
	r := clockRig{t, engine.New(scenarioConfig(), zerolog.Nop())}
	for _, id := range []engine.ClientID{5, 3, 9, 1} {
		r.e.Connect(0, id, "192.0.2.1:1")
	}
	var order []engine.ClientID
	for _, d := range r.e.Tick(time.Hour).Disconnects {
		order = append(order, d.Client)
	}
	require.Equal(t, []engine.ClientID{1, 3, 5, 9}, order)
}

// TestNextIsTheEarliestRealDeadline: clients that keep sending move the
// engine's next deadline with them, so a server's timer is not woken for
// deadlines that have moved.
func TestNextIsTheEarliestRealDeadline(t *testing.T) {
	r := clockRig{t, engine.New(scenarioConfig(), zerolog.Nop())}
	var nodes []*client.Node
	for id := engine.ClientID(1); id <= 50; id++ {
		nodes = append(nodes, r.join(time.Duration(id)*ms, id, 1000))
	}
	require.Equal(t, 1501*ms, next(t, r.e))
	for round := 1; round <= 5; round++ {
		base := time.Duration(round) * 1000 * ms
		for i, n := range nodes {
			r.send(base+time.Duration(i+1)*ms, engine.ClientID(i+1), n.Echo())
		}
		require.Equal(t, base+1501*ms, next(t, r.e), "round %d", round)
	}
	// The first node falls silent: its deadline is the next one, exactly.
	for i, n := range nodes[1:] {
		r.send(6000*ms+time.Duration(i+2)*ms, engine.ClientID(i+2), n.Echo())
	}
	require.Equal(t, 6501*ms, next(t, r.e))
	require.Equal(t, map[engine.ClientID]engine.DisconnectReason{1: engine.ReasonDeadPeer}, disconnects(r.e.Tick(6501*ms)))
	require.Equal(t, 7502*ms, next(t, r.e))
}
