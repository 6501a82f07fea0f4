package client

// membership IDS ring=N.S nodes=LIST [heuristics=pass|fail] sends a new
// membership node list.
func (r *Runner) membership(a args, n *Node) error {
	ring, err := ParseRing(a.kv["ring"])
	if err != nil {
		return err
	}
	nodes, err := parseNodes(a.kv["nodes"])
	if err != nil {
		return err
	}
	h, err := parseHeur(a.kv["heuristics"])
	if err != nil {
		return err
	}
	return r.T.Send(n, n.Membership(ring, nodes, h))
}
