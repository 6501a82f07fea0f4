package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/server/servertest"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestStatusThroughTheServer: Status hands out the engine's copy of a
// live server, and ErrStopped once it is shut down.
func TestStatusThroughTheServer(t *testing.T) {
	srv, ln := servertest.Start(t, nil)
	c, err := client.Dial(ln.Addr().String(), client.NewNode(client.Settings{Cluster: "pve", NodeID: 2, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000}), 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Handshake(wire.RingID{NodeID: 2, Seq: 4}, nil))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := srv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, wire.TLSUnsupported, st.TLS)
	require.Equal(t, 1, st.Clients)
	cl := st.Cluster("pve")
	require.NotNil(t, cl)
	require.Len(t, cl.Nodes, 1)
	require.Equal(t, uint32(2), cl.Nodes[0].NodeID)
	require.Contains(t, cl.Nodes[0].Addr, "127.0.0.1:")

	srv.Shutdown()
	_, err = srv.Status(ctx)
	require.ErrorIs(t, err, server.ErrStopped)
}
