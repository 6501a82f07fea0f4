package client

// disconnect IDS closes the node's connection.
func (r *Runner) disconnect(_ args, n *Node) error {
	r.T.Close(n)
	return nil
}
