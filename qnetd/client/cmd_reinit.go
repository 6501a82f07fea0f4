package client

// reinit ID sends INIT again on the node's open connection.
func (r *Runner) reinit(_ args, n *Node) error { return r.T.Send(n, n.Init(n.Ring())) }
