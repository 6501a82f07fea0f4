package client

// heuristics IDS pass|fail reports a new heuristics result.
func (r *Runner) heuristics(a args, n *Node) error {
	h, err := parseHeur(a.pos[len(a.pos)-1])
	if err != nil {
		return err
	}
	return r.T.Send(n, n.HeuristicsChange(h))
}
