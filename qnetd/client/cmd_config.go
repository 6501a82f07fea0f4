package client

import "strconv"

// config IDS nodes=LIST [changed] [version=V] sends the configuration node
// list: the initial one, or a changed one.
func (r *Runner) config(a args, n *Node) error {
	nodes, err := parseNodes(a.kv["nodes"])
	if err != nil {
		return err
	}
	var ver *uint64
	if v, ok := a.kv["version"]; ok {
		x, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return err
		}
		ver = &x
	}
	changed := len(a.pos) > 0 && a.pos[len(a.pos)-1] == "changed"
	return r.T.Send(n, n.Config(nodes, !changed, ver))
}
