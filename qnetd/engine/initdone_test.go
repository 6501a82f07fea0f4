package engine_test

import (
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func initDones(acts []engine.Action) []engine.ClientID {
	var ids []engine.ClientID
	for _, a := range acts {
		if a.Kind == engine.ActInitDone {
			ids = append(ids, a.To)
		}
	}
	return ids
}

// TestInitDoneOnlyForASuccessfulInit: the server lifts a connection's INIT
// deadline on ActInitDone, so it must come exactly once, for a successful
// INIT, and never for a refused or repeated one.
func TestInitDoneOnlyForASuccessfulInit(t *testing.T) {
	e := engine.New(scenarioConfig(), zerolog.Nop())
	ring := wire.RingID{NodeID: 1, Seq: 4}
	node := func(id uint32, hb uint32) *client.Node {
		return client.NewNode(client.Settings{Cluster: "c", NodeID: id, Algorithm: wire.AlgoFFSplit,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: hb})
	}
	send := func(id engine.ClientID, m *wire.Msg) []engine.Action { return e.Message(0, id, m, m.Append(nil)) }

	require.Empty(t, initDones(e.Connect(0, 1, "a")))
	n1 := node(1, 8000)
	require.Empty(t, initDones(send(1, n1.Init(ring))), "INIT before PREINIT is refused")
	require.Empty(t, initDones(send(1, n1.Preinit())))
	bad := node(1, 10) // heartbeat out of range
	require.Empty(t, initDones(send(1, bad.Init(ring))))
	require.Equal(t, []engine.ClientID{1}, initDones(send(1, n1.Init(ring))))
	require.Empty(t, initDones(send(1, n1.Init(ring))), "a second INIT collides with itself")

	// Another connection with the same node id is refused (duplicate).
	require.Empty(t, initDones(e.Connect(0, 2, "b")))
	dup := node(1, 8000)
	require.Empty(t, initDones(send(2, dup.Preinit())))
	require.Empty(t, initDones(send(2, dup.Init(ring))))
	other := node(2, 8000)
	require.Empty(t, initDones(send(2, other.Preinit())))
	require.Equal(t, []engine.ClientID{2}, initDones(send(2, other.Init(ring))))
}
