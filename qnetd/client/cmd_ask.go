package client

// ask IDS asks for the node's vote (ASK_FOR_VOTE).
func (r *Runner) ask(_ args, n *Node) error { return r.T.Send(n, n.AskForVote()) }
