package client

import "github.com/qnetd-addon/qnetd/qnetd/wire"

// Transport carries the nodes' messages to a server.
type Transport interface {
	// Open connects a node (no message is sent).
	Open(n *Node) error
	// Send sends m from n, waits for its direct reply (or the connection's
	// end) and settles: every VOTE_INFO caused is answered.
	Send(n *Node, m *wire.Msg) error
	// SendRaw sends m without waiting (used for held VOTE_INFO replies).
	SendRaw(n *Node, m *wire.Msg) error
	// Close disconnects n.
	Close(n *Node)
	// Connected reports whether n's connection is open.
	Connected(n *Node) bool
	// VoteOf is n's vote and whether it is connected, read together (a
	// transport's reader may be changing both).
	VoteOf(n *Node) (Vote, bool)
	// Settle lets pending messages and short timers run out. want is the
	// expected rendering of the votes (a hint for black-box transports,
	// which wait for it with a deadline); render renders the current state.
	Settle(want string, render func() string)
	// Wait lets ms milliseconds pass.
	Wait(ms uint32)
}

// StateReporter is a transport that can tell each cluster's state (the
// engine in-process; a black-box server cannot).
type StateReporter interface {
	// States is one line per cluster, in the order they were created:
	// "NAME is STATE: REASON".
	States() []string
}
