package client

// hold IDS stops the node answering VOTE_INFO; release sends the held
// answers.
func (r *Runner) hold(_ args, n *Node) error {
	n.Hold(true)
	return nil
}

// release IDS sends the VOTE_INFO answers held since hold, in order, and
// answers again from now on.
func (r *Runner) release(_ args, n *Node) error {
	for _, m := range n.Hold(false) {
		if err := r.T.SendRaw(n, m); err != nil {
			return err
		}
	}
	return nil
}
