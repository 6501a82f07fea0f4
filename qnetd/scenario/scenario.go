// Package scenario runs story-style test files against a qnetd: simulated
// corosync-qdevice nodes send what real nodes send, and after each block
// of commands the votes every node holds are printed and compared with the
// expected text. The same files run against the engine in-process (exact
// and instant) and over TCP against any server (our binary, or Debian's
// corosync-qnetd for the differential test).
//
// File format: blocks of commands, a "----" line, the expected output, a
// blank line. Lines starting with '#' are comments. Commands:
//
//	cluster NAME [algorithm=ffsplit|lms|2nodelms|test] [tie_breaker=lowest|highest|ID] [kap=on|off] [heartbeat=MS]
//	connect IDS [ring=N.S] [algorithm=A] [tie_breaker=T] [kap=on|off]
//	                                 PREINIT, INIT, SET_OPTION(KAP) like the real client;
//	                                 the options override the cluster's for these nodes
//	duplicate ID                     a second connection with the same node id (PREINIT+INIT, then closed)
//	reinit ID                        INIT again on the node's open connection
//	join IDS nodes=LIST [ring=N.S]   connect + initial config + membership + quorum
//	config IDS nodes=LIST [changed] [version=V]
//	membership IDS ring=N.S nodes=LIST [heuristics=pass|fail]
//	split LIST|LIST... seq=S [heuristics=pass|fail]   membership per group, ring = lowest id of the group
//	quorum IDS nodes=LIST [quorate=yes|no]
//	heuristics IDS pass|fail
//	ask IDS | disconnect IDS | hold IDS | release IDS
//	wait MS                          let time pass (timers fire)
//	trace                            also print every message the nodes receive in this block
//	state                            also print each cluster's state (in-process only:
//	                                 "c1 is split: split into {1} and {2}; ...")
//
// Each command is in its own file, cmd_NAME.go.
//
// IDS are node ids of the current cluster separated by spaces or commas.
// Each node's message is sent and settled (replies answered, VOTE_INFO
// acknowledged) before the next node's, so outcomes are deterministic.
//
// Output: one line per error answer ("c1/2: server error 12 (...)"), the
// traced messages, then one line per cluster: "c1: 1=ACK 2=NACK 3=-"
// ("-" = no vote, "off" = disconnected).
//
// A file whose first lines contain "# differential: skip <reason>" runs
// only in-process (it tests a deliberate difference from upstream).
package scenario

import (
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Transport carries the nodes' messages to a server.
type Transport interface {
	// Open connects a node (no message is sent).
	Open(n *client.Node) error
	// Send sends m from n, waits for its direct reply (or the connection's
	// end) and settles: every VOTE_INFO caused is answered.
	Send(n *client.Node, m *wire.Msg) error
	// SendRaw sends m without waiting (used for held VOTE_INFO replies).
	SendRaw(n *client.Node, m *wire.Msg) error
	// Close disconnects n.
	Close(n *client.Node)
	// Connected reports whether n's connection is open.
	Connected(n *client.Node) bool
	// VoteOf is n's vote and whether it is connected, read together (a
	// transport's reader may be changing both).
	VoteOf(n *client.Node) (client.Vote, bool)
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
