package scenario

import "github.com/qnetd-addon/qnetd/qnetd/client"

// reinit ID sends INIT again on the node's open connection.
func (r *Runner) reinit(_ args, n *client.Node) error { return r.T.Send(n, n.Init(n.Ring())) }
