// Package status answers "does my cluster have the third vote?" wherever
// the user looks: a live status page (JSON, server-sent events, HTML),
// the decision history of the last hour, and Home Assistant entities.
package status

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Event is one line of the decision history.
type Event struct {
	Time time.Time `json:"time"`
	// Cluster is the cluster's name as ShortName shows it.
	Cluster string `json:"cluster"`
	Node    uint32 `json:"node,omitempty"`
	Text    string `json:"text"`
}

// The history is bounded three ways: by age (the Recorder's keep), by
// count and by the size of its JSON, which the status page sends whole on
// every change. Clients choose cluster names and how often they come and
// go, so age alone would let them make it as large as they like.
const (
	// MaxHistoryEvents is the most events kept.
	MaxHistoryEvents = 500
	// MaxHistoryBytes is the most the kept events take as JSON.
	MaxHistoryBytes = 256 << 10
	// MaxEventText is the longest text of one event; longer ones are cut.
	MaxEventText = 512
)

type nodeKey struct {
	cluster string
	node    uint32
}

// record is one event and its JSON, made once when it is recorded.
type record struct {
	ev   Event
	json []byte
}

// Recorder is the engine observer: it keeps the recent decisions and vote
// changes and wakes subscribers when something changed.
type Recorder struct {
	now   func() time.Time
	keep  time.Duration
	mu    sync.Mutex
	log   []record // oldest first
	bytes int      // the size of log's JSON array: its events, a comma each, and the brackets
	// version counts changes of log; json is its JSON array as of
	// jsonVersion (nil until asked for).
	version uint64
	json    []byte
	// recorded counts the events recorded since the start (not those
	// loaded from the history file): a HistoryFile saves when it grew.
	recorded    uint64
	jsonVersion uint64
	since       map[nodeKey]sinceVote // connected nodes only: NodeLeft removes them
	subs        map[chan struct{}]struct{}
}

type sinceVote struct {
	vote wire.Vote
	at   time.Time
}

// NewRecorder keeps keep of history; now is the clock.
func NewRecorder(now func() time.Time, keep time.Duration) *Recorder {
	return &Recorder{now: now, keep: keep, bytes: len("[]") - len(","), since: map[nodeKey]sinceVote{},
		subs: map[chan struct{}]struct{}{}}
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
		r.add(Event{Time: now, Cluster: ShortName(cluster), Node: nodeID, Text: fmt.Sprintf("node %d %s (%s)", nodeID, word, reason)})
		r.recorded++
	}
	r.mu.Unlock()
	r.Notify()
}

// NodeLeft forgets when the node's vote started: the node is gone, and a
// map that kept every node ever seen would grow with every new cluster
// name a client makes up.
func (r *Recorder) NodeLeft(cluster string, nodeID uint32) {
	r.mu.Lock()
	delete(r.since, nodeKey{cluster, nodeID})
	r.mu.Unlock()
}

// Decided records which partition of an ffsplit cluster got the vote.
func (r *Recorder) Decided(cluster string, d engine.Decision) {
	text := "no partition gets the vote: " + d.Reason
	if len(d.Winners) > 0 {
		text = fmt.Sprintf("partition {%s} gets the vote: %s", joinIDs(d.Winners), d.Reason)
	}
	text = cutText(text)
	name := ShortName(cluster)
	r.mu.Lock()
	// The same decision repeats on every list a node sends; record changes.
	last := ""
	for i := len(r.log) - 1; i >= 0; i-- {
		if e := &r.log[i].ev; e.Cluster == name && e.Node == 0 {
			last = e.Text
			break
		}
	}
	if last != text {
		r.add(Event{Time: r.now(), Cluster: name, Text: text})
		r.recorded++
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

// cutText shortens an event's text to MaxEventText bytes.
func cutText(s string) string {
	if len(s) <= MaxEventText {
		return s
	}
	cut := MaxEventText - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// add appends e and drops the oldest events beyond the bounds. r.mu is held.
func (r *Recorder) add(e Event) {
	e.Text = cutText(e.Text)
	js, err := json.Marshal(e)
	if err != nil {
		return // an Event always marshals; nothing to record otherwise
	}
	r.log = append(r.log, record{e, js})
	r.bytes += len(js) + len(",")
	r.version++
	n, size := 0, r.bytes
	for n < len(r.log) && (len(r.log)-n > MaxHistoryEvents || size > MaxHistoryBytes) {
		size -= len(r.log[n].json) + len(",")
		n++
	}
	r.drop(n)
	r.expire(e.Time)
}

// expire drops what is older than keep at now. r.mu is held.
func (r *Recorder) expire(now time.Time) {
	cutoff := now.Add(-r.keep)
	r.drop(sort.Search(len(r.log), func(i int) bool { return r.log[i].ev.Time.After(cutoff) }))
}

// drop removes the n oldest events, letting go of their text at once;
// the slots themselves go when append next moves the log. r.mu is held.
func (r *Recorder) drop(n int) {
	if n == 0 {
		return
	}
	for _, rec := range r.log[:n] {
		r.bytes -= len(rec.json) + len(",")
	}
	clear(r.log[:n])
	r.log = r.log[n:]
	r.version++
}

// History returns the events of the last hour, oldest first.
func (r *Recorder) History() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(r.now())
	out := make([]Event, len(r.log))
	for i, rec := range r.log {
		out[i] = rec.ev
	}
	return out
}

// HistoryJSON returns History as a JSON array, and a number that changes
// whenever the history does. Each event is marshalled once, when it is
// recorded; the array is put together again only after a change. The
// caller must not modify the bytes.
func (r *Recorder) HistoryJSON() ([]byte, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(r.now())
	if r.json == nil || r.jsonVersion != r.version {
		b := make([]byte, 0, r.bytes)
		b = append(b, '[')
		for i, rec := range r.log {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, rec.json...)
		}
		r.json, r.jsonVersion = append(b, ']'), r.version
	}
	return r.json, r.version
}

// restore puts events from an earlier run (the history file) before the
// ones recorded since, under the same bounds as recorded ones: names as
// ShortName shows them, texts cut, the newest MaxHistoryEvents within
// MaxHistoryBytes, and only those of the last keep. Events after now are
// dropped too: they were written while the clock was wrong.
func (r *Recorder) restore(events []Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	all := make([]Event, 0, len(events)+len(r.log))
	for _, e := range events {
		if e.Time.After(now) || !e.Time.After(now.Add(-r.keep)) {
			continue
		}
		e.Cluster = ShortName(e.Cluster)
		all = append(all, e)
	}
	for _, rec := range r.log {
		all = append(all, rec.ev)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
	r.drop(len(r.log))
	r.log = nil
	for _, e := range all {
		r.add(e)
	}
	r.expire(now)
	r.version++
}

// recordedCount is how many events were recorded since the start.
func (r *Recorder) recordedCount() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recorded
}

// VoteSince is when the node's current ACK/NACK started (zero if unknown).
func (r *Recorder) VoteSince(cluster string, node uint32) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.since[nodeKey{cluster, node}].at
}

// tracked is the number of nodes whose vote start is kept.
func (r *Recorder) tracked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.since)
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
