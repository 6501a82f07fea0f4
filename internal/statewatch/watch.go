// Package statewatch follows each cluster's state (engine.State, or Gone
// once no node is connected) over time. Every change is reported at once,
// for the log; a change that lasts the hold time is reported again as
// settled, for Home Assistant events, so that a qdevice restart or a
// reconnect shorter than the hold time fires nothing.
//
// Like the engine it is pure: status copies and the time come in as
// arguments, changes go out as values.
package statewatch

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// Gone is the state of a cluster none of whose nodes is connected (the
// same word as the Home Assistant state entity's).
const Gone = "gone"

// Defaults.
const (
	DefaultHold = 10 * time.Second
	// DefaultMaxClusters bounds the clusters followed at once: every
	// cluster name comes from a client, so the map must not grow with
	// every name ever sent.
	DefaultMaxClusters = 256
)

// Change is a cluster's move from one state to another.
type Change struct {
	// Cluster is the raw cluster name (any bytes: log it as a field).
	Cluster string
	// Old and New are engine.State values or Gone.
	Old, New string
	// Reason says why, in the words of engine.ClusterStatus.StateReason.
	Reason string
	// Voters are the node ids that hold the qdevice vote, sorted.
	Voters []uint32
	// Nodes is how many nodes are connected.
	Nodes int
	// Since is when New began.
	Since time.Time
}

type watched struct {
	state  string
	reason string
	voters []uint32
	nodes  int
	since  time.Time
	// settled is the state last reported as settled; a cluster seen for
	// the first time comes from Gone.
	settled string
}

// Watcher follows clusters. It is not safe for concurrent use.
type Watcher struct {
	hold time.Duration
	max  int
	by   map[string]*watched
	// Refused counts clusters not followed because max were followed.
	Refused uint64
}

// New makes a Watcher; hold <= 0 settles every change at once, max <= 0
// is DefaultMaxClusters.
func New(hold time.Duration, max int) *Watcher {
	if max <= 0 {
		max = DefaultMaxClusters
	}
	return &Watcher{hold: max0(hold), max: max, by: map[string]*watched{}}
}

func max0(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// Observe applies a status copy taken at now and returns the changes it
// shows, in the status's cluster order, then clusters that left.
func (w *Watcher) Observe(st *engine.Status, now time.Time) []Change {
	var out []Change
	seen := make(map[string]bool, len(st.Clusters))
	for i := range st.Clusters {
		cs := &st.Clusters[i]
		seen[cs.Name] = true
		wt := w.by[cs.Name]
		if wt == nil {
			if len(w.by) >= w.max {
				w.Refused++
				continue
			}
			wt = &watched{state: Gone, settled: Gone, since: now}
			w.by[cs.Name] = wt
		}
		var voters []uint32
		for j := range cs.Nodes {
			if cs.Nodes[j].HoldsVote() {
				voters = append(voters, cs.Nodes[j].NodeID)
			}
		}
		slices.Sort(voters)
		if c, ok := wt.move(cs.Name, string(cs.State), cs.StateReason, voters, len(cs.Nodes), now); ok {
			out = append(out, c)
		}
	}
	var left []string
	for name, wt := range w.by {
		if !seen[name] && wt.state != Gone {
			left = append(left, name)
		}
	}
	slices.Sort(left)
	for _, name := range left {
		if c, ok := w.by[name].move(name, Gone, "no node is connected", nil, 0, now); ok {
			out = append(out, c)
		}
	}
	return out
}

func (wt *watched) move(name, state, reason string, voters []uint32, nodes int, now time.Time) (Change, bool) {
	wt.reason, wt.voters, wt.nodes = reason, voters, nodes
	if state == wt.state {
		return Change{}, false
	}
	c := Change{Cluster: name, Old: wt.state, New: state, Reason: reason, Voters: voters, Nodes: nodes, Since: now}
	wt.state, wt.since = state, now
	return c, true
}

// Settle returns the changes that have lasted the hold time by now: from
// the state last settled to the current one, skipping states that came
// and went in between. A cluster whose state comes back to the settled
// one within the hold time reports nothing. Clusters settled as Gone are
// forgotten.
func (w *Watcher) Settle(now time.Time) []Change {
	var out []Change
	for name, wt := range w.by {
		if wt.state == wt.settled {
			if wt.state == Gone {
				delete(w.by, name)
			}
			continue
		}
		if now.Sub(wt.since) < w.hold {
			continue
		}
		out = append(out, Change{Cluster: name, Old: wt.settled, New: wt.state, Reason: wt.reason,
			Voters: append([]uint32(nil), wt.voters...), Nodes: wt.nodes, Since: wt.since})
		wt.settled = wt.state
		if wt.state == Gone {
			delete(w.by, name)
		}
	}
	slices.SortFunc(out, func(a, b Change) int {
		return cmp.Or(a.Since.Compare(b.Since), strings.Compare(a.Cluster, b.Cluster))
	})
	return out
}

// Next is when Settle will next have a change to report; false when
// none is pending.
func (w *Watcher) Next() (time.Time, bool) {
	var next time.Time
	for _, wt := range w.by {
		if wt.state == wt.settled {
			continue
		}
		at := wt.since.Add(w.hold)
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, !next.IsZero()
}

// Len is how many clusters are followed.
func (w *Watcher) Len() int { return len(w.by) }
