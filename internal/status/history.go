// Package status answers "does my cluster have the third vote?" wherever
// the user looks: a live status page (JSON, server-sent events, HTML),
// the decision history of the last hour, and Home Assistant entities.
package status

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Event is one line of the decision history.
type Event struct {
	Time    time.Time `json:"time"`
	Cluster string    `json:"cluster"`
	Node    uint32    `json:"node,omitempty"`
	Text    string    `json:"text"`
}

type nodeKey struct {
	cluster string
	node    uint32
}

// Recorder is the engine observer: it keeps the last hour of decisions
// and vote changes and wakes subscribers when something changed.
type Recorder struct {
	now    func() time.Time
	keep   time.Duration
	mu     sync.Mutex
	events []Event
	since  map[nodeKey]sinceVote
	subs   map[chan struct{}]struct{}
}

type sinceVote struct {
	vote wire.Vote
	at   time.Time
}

// NewRecorder keeps keep of history; now is the clock.
func NewRecorder(now func() time.Time, keep time.Duration) *Recorder {
	return &Recorder{now: now, keep: keep, since: map[nodeKey]sinceVote{}, subs: map[chan struct{}]struct{}{}}
}

// VoteSent records a vote that differs from the node's previous one.
func (r *Recorder) VoteSent(cluster string, nodeID uint32, v wire.Vote, reason string) {
	if v != wire.VoteACK && v != wire.VoteNACK {
		return
	}
	k := nodeKey{cluster, nodeID}
	r.mu.Lock()
	prev, ok := r.since[k]
	if !ok || prev.vote != v {
		now := r.now()
		r.since[k] = sinceVote{v, now}
		word := "gets the vote"
		if v == wire.VoteNACK {
			word = "loses the vote"
		}
		r.add(Event{Time: now, Cluster: k.cluster, Node: k.node, Text: fmt.Sprintf("node %d %s (%s)", k.node, word, reason)})
	}
	r.mu.Unlock()
	r.Notify()
}

// Decided records which partition of an ffsplit cluster got the vote.
func (r *Recorder) Decided(cluster string, d engine.Decision) {
	text := "no partition gets the vote: " + d.Reason
	if len(d.Winners) > 0 {
		text = fmt.Sprintf("partition {%s} gets the vote: %s", joinIDs(d.Winners), d.Reason)
	}
	r.mu.Lock()
	// The same decision repeats on every list a node sends; record changes.
	last := ""
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Cluster == cluster && r.events[i].Node == 0 {
			last = r.events[i].Text
			break
		}
	}
	if last != text {
		r.add(Event{Time: r.now(), Cluster: cluster, Text: text})
	}
	r.mu.Unlock()
	r.Notify()
}

func joinIDs(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ",")
}

// add appends and drops what is older than keep. r.mu is held.
func (r *Recorder) add(e Event) {
	r.events = append(r.events, e)
	cut := sort.Search(len(r.events), func(i int) bool { return r.events[i].Time.After(e.Time.Add(-r.keep)) })
	r.events = r.events[cut:]
}

// History returns the events of the last hour, oldest first.
func (r *Recorder) History() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.now().Add(-r.keep)
	out := make([]Event, 0, len(r.events))
	for _, e := range r.events {
		if e.Time.After(cutoff) {
			out = append(out, e)
		}
	}
	return out
}

// VoteSince is when the node's current ACK/NACK started (zero if unknown).
func (r *Recorder) VoteSince(cluster string, node uint32) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.since[nodeKey{cluster, node}].at
}

// Subscribe returns a channel that receives a value (coalesced) whenever
// something changed, and a function to unsubscribe.
func (r *Recorder) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	r.subs[ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		delete(r.subs, ch)
		r.mu.Unlock()
	}
}

// Notify wakes every subscriber without blocking.
func (r *Recorder) Notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
