package client

// quorum IDS nodes=LIST [quorate=yes|no] sends the quorum node list, every
// node in it a member.
func (r *Runner) quorum(a args, n *Node) error {
	nodes, err := parseNodes(a.kv["nodes"])
	if err != nil {
		return err
	}
	return r.T.Send(n, n.Quorum(orDefault(a.kv["quorate"], "yes") == "yes", stateNodes(nodes)))
}
