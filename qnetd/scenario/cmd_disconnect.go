package scenario

import "github.com/qnetd-addon/qnetd/qnetd/client"

// disconnect IDS closes the node's connection.
func (r *Runner) disconnect(_ args, n *client.Node) error {
	r.T.Close(n)
	return nil
}
