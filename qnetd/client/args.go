package client

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// The arguments of a command: positional words and key=value options.
type args struct {
	pos []string
	kv  map[string]string
}

func parseArgs(fields []string) args {
	a := args{kv: map[string]string{}}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			a.kv[k] = v
		} else {
			a.pos = append(a.pos, f)
		}
	}
	return a
}

func parseIDs(ss []string) ([]uint32, error) {
	var out []uint32
	for _, s := range ss {
		for _, p := range strings.Split(s, ",") {
			if p == "" {
				continue
			}
			v, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("bad node id %q", p)
			}
			out = append(out, uint32(v))
		}
	}
	return out, nil
}

func parseNodes(s string) ([]wire.NodeInfo, error) {
	if s == "" {
		return nil, nil
	}
	ids, err := parseIDs([]string{s})
	if err != nil {
		return nil, err
	}
	out := make([]wire.NodeInfo, len(ids))
	for i, id := range ids {
		out[i] = wire.NodeInfo{NodeID: id}
	}
	return out, nil
}

// ParseRing reads "N.S" (decimal) as a ring id.
func ParseRing(s string) (wire.RingID, error) {
	a, b, ok := strings.Cut(s, ".")
	if !ok {
		return wire.RingID{}, fmt.Errorf("bad ring %q, want NODE.SEQ", s)
	}
	n, err1 := strconv.ParseUint(a, 10, 32)
	q, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return wire.RingID{}, fmt.Errorf("bad ring %q, want NODE.SEQ", s)
	}
	return wire.RingID{NodeID: uint32(n), Seq: q}, nil
}

func parseHeur(s string) (wire.Heuristics, error) {
	switch s {
	case "", "undefined":
		return wire.HeuristicsUndefined, nil
	case "pass":
		return wire.HeuristicsPass, nil
	case "fail":
		return wire.HeuristicsFail, nil
	}
	return 0, fmt.Errorf("bad heuristics %q", s)
}

func stateNodes(nodes []wire.NodeInfo) []wire.NodeInfo {
	out := make([]wire.NodeInfo, len(nodes))
	for i, n := range nodes {
		out[i] = wire.NodeInfo{NodeID: n.NodeID, State: wire.NodeStateMember}
	}
	return out
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
