package client

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// cluster NAME [algorithm=A] [tie_breaker=T] [kap=on|off] [heartbeat=MS]
// declares a cluster and makes it the current one; with only its name it
// returns to a cluster declared before.
func (r *Runner) cluster(a args) error {
	if len(a.pos) != 1 {
		return fmt.Errorf("cluster NAME [options]")
	}
	for _, cd := range r.clusters {
		if cd.name == a.pos[0] {
			r.cur = cd
			if len(a.kv) > 0 {
				return fmt.Errorf("cluster %s already declared", cd.name)
			}
			return nil
		}
	}
	cd := &clusterDef{name: a.pos[0], algorithm: wire.AlgoFFSplit, tb: wire.TieBreaker{Mode: wire.TieBreakerLowest},
		kap: true, hb: 1000, nodes: map[uint32]*Node{}}
	if err := cd.settings(a.kv, &cd.algorithm, &cd.tb, &cd.kap, &cd.hb); err != nil {
		return err
	}
	r.clusters = append(r.clusters, cd)
	r.cur = cd
	return nil
}

// settings applies node settings given as key=value; unknown keys are an
// error except the per-command ones listed in skip.
func (cd *clusterDef) settings(kv map[string]string, algorithm *wire.Algorithm, tb *wire.TieBreaker, kap *bool, hb *uint32, skip ...string) error {
	for k, v := range kv {
		if slices.Contains(skip, k) {
			continue
		}
		var err error
		switch k {
		case "algorithm":
			*algorithm, err = parseAlgorithm(v)
		case "tie_breaker":
			*tb, err = parseTieBreaker(v)
		case "kap":
			*kap = v == "on"
		case "heartbeat":
			var x uint64
			x, err = strconv.ParseUint(v, 10, 32)
			*hb = uint32(x)
		default:
			err = fmt.Errorf("unknown option %q", k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseAlgorithm(v string) (wire.Algorithm, error) {
	switch v {
	case "ffsplit":
		return wire.AlgoFFSplit, nil
	case "lms":
		return wire.AlgoLMS, nil
	case "2nodelms":
		return wire.Algo2NodeLMS, nil
	case "test":
		return wire.AlgoTest, nil
	}
	return 0, fmt.Errorf("unknown algorithm %q", v)
}

func parseTieBreaker(v string) (wire.TieBreaker, error) {
	switch v {
	case "lowest":
		return wire.TieBreaker{Mode: wire.TieBreakerLowest}, nil
	case "highest":
		return wire.TieBreaker{Mode: wire.TieBreakerHighest}, nil
	}
	id, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return wire.TieBreaker{}, fmt.Errorf("bad tie_breaker %q", v)
	}
	return wire.TieBreaker{Mode: wire.TieBreakerNodeID, NodeID: uint32(id)}, nil
}
