package client

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// split LIST|LIST... seq=S [heuristics=pass|fail] sends each group its own
// membership: "split 1,2|3,4 seq=8"; a group's ring is its lowest node id
// with seq S.
func (r *Runner) split(a args) error {
	spec := strings.Join(a.pos, "")
	seq, err := strconv.ParseUint(a.kv["seq"], 10, 64)
	if err != nil {
		return fmt.Errorf("split needs seq=N")
	}
	for _, g := range strings.Split(spec, "|") {
		ids, err := parseIDs([]string{g})
		if err != nil || len(ids) == 0 {
			return fmt.Errorf("bad group %q", g)
		}
		cmd := fmt.Sprintf("membership %s ring=%d.%d nodes=%s", g, slices.Min(ids), seq, g)
		if h := a.kv["heuristics"]; h != "" {
			cmd += " heuristics=" + h
		}
		if err := r.exec(cmd); err != nil {
			return err
		}
	}
	return nil
}
