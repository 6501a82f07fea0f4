package engine_test

import (
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestInitDoneOnlyForASuccessfulInit: the server lifts a connection's INIT
// deadline on Batch.InitDone, so it must come exactly once, for a successful
// INIT, and never for a refused or repeated one.
func TestInitDoneOnlyForASuccessfulInit(t *testing.T) {
	e := engine.New(scenarioConfig(), zerolog.Nop())
	ring := wire.RingID{NodeID: 1, Seq: 4}
	node := func(id uint32, hb uint32) *client.Node {
		return client.NewNode(client.Settings{Cluster: "c", NodeID: id, Algorithm: wire.AlgoFFSplit,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: hb})
	}
	send := func(id engine.ClientID, m *wire.Msg) engine.Batch { return e.Message(0, id, m, m.Append(nil)) }

	require.False(t, e.Connect(0, 1, "a").InitDone)
	n1 := node(1, 8000)
	require.False(t, send(1, n1.Init(ring)).InitDone, "INIT before PREINIT is refused")
	require.False(t, send(1, n1.Preinit()).InitDone)
	bad := node(1, 10) // heartbeat out of range
	require.False(t, send(1, bad.Init(ring)).InitDone)
	require.True(t, send(1, n1.Init(ring)).InitDone)
	require.False(t, send(1, n1.Init(ring)).InitDone, "a second INIT collides with itself")

	// Another connection with the same node id is refused (duplicate).
	require.False(t, e.Connect(0, 2, "b").InitDone)
	dup := node(1, 8000)
	require.False(t, send(2, dup.Preinit()).InitDone)
	require.False(t, send(2, dup.Init(ring)).InitDone)
	other := node(2, 8000)
	require.False(t, send(2, other.Preinit()).InitDone)
	require.True(t, send(2, other.Init(ring)).InitDone)
}
