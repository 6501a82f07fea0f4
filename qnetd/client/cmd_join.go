package client

import "github.com/qnetd-addon/qnetd/qnetd/wire"

// join IDS nodes=LIST [ring=N.S] is connect, then the initial config,
// the membership (ring and nodes alike) and a quorate quorum list.
func (r *Runner) join(a args, n *Node) error {
	ok, err := r.handshake(a, n)
	if err != nil || !ok {
		return err
	}
	nodes, err := parseNodes(a.kv["nodes"])
	if err != nil {
		return err
	}
	if err := r.T.Send(n, n.Config(nodes, true, nil)); err != nil {
		return err
	}
	if err := r.T.Send(n, n.Membership(n.Ring(), nodes, wire.HeuristicsUndefined)); err != nil {
		return err
	}
	return r.T.Send(n, n.Quorum(true, stateNodes(nodes)))
}
