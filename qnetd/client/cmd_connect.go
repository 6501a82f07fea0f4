package client

import "fmt"

// connect IDS [ring=N.S] [algorithm=A] [tie_breaker=T] [kap=on|off] opens
// each node's connection and sends PREINIT, INIT and SET_OPTION(KAP) like
// the real client; the options override the cluster's for these nodes.
func (r *Runner) connect(a args, n *Node) error {
	_, err := r.handshake(a, n)
	return err
}

// handshake connects n as the real client does, announcing the ring
// given (n.Ring() afterwards); ok is false when the server refused INIT,
// and the connection is closed then, as the real client closes it.
func (r *Runner) handshake(a args, n *Node) (ok bool, err error) {
	t := r.T
	ring, err := ParseRing(orDefault(a.kv["ring"], "1.1"))
	if err != nil {
		return false, err
	}
	if err := r.cur.settings(a.kv, &n.Algorithm, &n.TieBreaker, &n.KAP, &n.Heartbeat, "ring", "nodes"); err != nil {
		return false, err
	}
	if t.Connected(n) {
		return false, fmt.Errorf("already connected")
	}
	if err := t.Open(n); err != nil {
		return false, err
	}
	if err := t.Send(n, n.Preinit()); err != nil {
		return false, err
	}
	errs := len(n.Errors)
	if err := t.Send(n, n.Init(ring)); err != nil {
		return false, err
	}
	if len(n.Errors) > errs {
		t.Close(n)
		return false, nil
	}
	if n.ServerSupportsKAP() && t.Connected(n) {
		if err := t.Send(n, n.SetOptionKAP()); err != nil {
			return false, err
		}
	}
	return true, nil
}
