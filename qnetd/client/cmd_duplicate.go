package client

// duplicate ID opens a second connection with the node's id (PREINIT and
// INIT with its ring), then closes it; the answers' errors are the node's.
func (r *Runner) duplicate(_ args, n *Node) error {
	t := r.T
	d := NewNode(n.Settings)
	if err := t.Open(d); err != nil {
		return err
	}
	defer t.Close(d)
	if err := t.Send(d, d.Preinit()); err != nil {
		return err
	}
	if err := t.Send(d, d.Init(n.Ring())); err != nil {
		return err
	}
	for _, e := range d.Errors {
		n.Errors = append(n.Errors, "second connection: "+e)
	}
	return nil
}
