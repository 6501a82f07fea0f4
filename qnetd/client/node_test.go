package client

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func reply(t wire.MsgType, seq uint32) *wire.Msg {
	m := &wire.Msg{Type: t, Seq: seq}
	return m.Set(wire.OptSeq)
}

// TestHandleTracksTheConnection: Handle alone says when the awaited reply
// came (the direct reply or an error with its seq, not another message),
// when INIT was accepted and which echo was answered; a new connection
// starts over.
func TestHandleTracksTheConnection(t *testing.T) {
	n := NewNode(Settings{Cluster: "c1", NodeID: 1})
	n.opened()
	req := n.Init(wire.RingID{NodeID: 1, Seq: 1})
	n.Await(req)
	require.Nil(t, n.Handle(reply(wire.MsgNodeListReply, req.Seq)))
	require.False(t, n.Answered(), "a reply of another type")
	require.Nil(t, n.Handle(reply(wire.MsgInitReply, req.Seq+1)))
	require.False(t, n.Answered(), "a reply to another seq")
	n.opened()
	n.Await(req)
	refused := reply(wire.MsgInitReply, req.Seq)
	refused.ReplyErrorCode = wire.ErrDuplicateNodeID
	n.Handle(refused.Set(wire.OptReplyErrorCode))
	require.True(t, n.Answered())
	require.False(t, n.Ready())
	require.Equal(t, []string{"init refused 17 (duplicate node id)"}, n.Errors)

	n.opened()
	n.Await(req)
	n.Handle(reply(wire.MsgInitReply, req.Seq))
	require.True(t, n.Answered())
	require.True(t, n.Ready())

	ask := n.AskForVote()
	n.Await(ask)
	n.Handle(reply(wire.MsgServerError, ask.Seq))
	require.True(t, n.Answered(), "an error carrying the request's seq answers it")

	n.Handle(reply(wire.MsgEchoReply, 7))
	require.Equal(t, uint32(7), n.EchoReplied())

	n.opened()
	require.False(t, n.Ready(), "a new connection needs its own INIT")
	require.False(t, n.Answered())
}
