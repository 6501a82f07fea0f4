package status

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// What a client that comes and goes under new cluster names can make the
// status side keep is bounded.

// clock is a settable clock for the Recorder.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)} }

// historyJSON is the history as the page sends it, checked against History.
func historyJSON(t *testing.T, r *Recorder) []byte {
	t.Helper()
	js, _ := r.HistoryJSON()
	want, err := json.Marshal(r.History())
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(js))
	return js
}

// TestHistoryKeepsAtMostMaxEvents: 2,000 vote changes within a minute
// leave the newest MaxHistoryEvents, oldest first.
func TestHistoryKeepsAtMostMaxEvents(t *testing.T) {
	c := newClock()
	r := NewRecorder(c.now, time.Hour)
	for i := range 2000 {
		c.add(10 * time.Millisecond)
		r.VoteSent(fmt.Sprintf("c%d", i), 1, wire.VoteACK, "test")
	}
	h := r.History()
	require.Len(t, h, MaxHistoryEvents)
	require.Equal(t, fmt.Sprintf("c%d", 2000-MaxHistoryEvents), h[0].Cluster, "the oldest go first")
	require.Equal(t, "c1999", h[len(h)-1].Cluster)
	historyJSON(t, r)
}

// TestHistoryKeepsAtMostMaxBytes: events with names and reasons as long as
// a client can make them are cut, and the history's JSON stays within
// MaxHistoryBytes, with the newest events kept.
func TestHistoryKeepsAtMostMaxBytes(t *testing.T) {
	c := newClock()
	r := NewRecorder(c.now, time.Hour)
	long := strings.Repeat("<", 65000) // each '<' is 6 bytes in JSON
	// 600 events: more than MaxHistoryEvents.
	for i := range 300 {
		c.add(10 * time.Millisecond)
		r.VoteSent(fmt.Sprintf("%d%s", i, long), 1, wire.VoteACK, long)
		r.Decided(fmt.Sprintf("%d%s", i, long), engine.Decision{Made: true, Winners: []uint32{1}, Reason: long})
	}
	h := r.History()
	js := historyJSON(t, r)
	require.LessOrEqual(t, len(js), MaxHistoryBytes)
	require.Less(t, len(h), MaxHistoryEvents, "the size, not the count, is the bound here")
	require.Greater(t, len(js), MaxHistoryBytes*3/4, "the size bound is used, not some smaller one")
	for _, e := range h {
		require.LessOrEqual(t, len(e.Cluster), MaxNameBytes)
		require.LessOrEqual(t, len(e.Text), MaxEventText)
	}
	require.True(t, strings.HasPrefix(h[len(h)-1].Cluster, "299<"), h[len(h)-1].Cluster)
	require.True(t, strings.HasPrefix(h[len(h)-1].Text, "partition {1} gets the vote: <<<"))
}

// TestHistoryKeepsAnHour: what is older than keep is gone, whether or not
// anything happened since.
func TestHistoryKeepsAnHour(t *testing.T) {
	c := newClock()
	r := NewRecorder(c.now, time.Hour)
	r.VoteSent("old", 1, wire.VoteACK, "test")
	c.add(40 * time.Minute)
	r.VoteSent("new", 1, wire.VoteACK, "test")
	require.Len(t, r.History(), 2)
	js1, v1 := r.HistoryJSON()
	c.add(30 * time.Minute)
	h := r.History()
	require.Len(t, h, 1)
	require.Equal(t, "new", h[0].Cluster)
	js2, v2 := r.HistoryJSON()
	require.NotEqual(t, v1, v2, "expiry is a change")
	require.NotEqual(t, string(js1), string(js2))
	c.add(time.Hour)
	require.Empty(t, r.History())
	require.Equal(t, "[]", string(historyJSON(t, r)))
}

// TestVoteSinceForgottenWhenNodesLeave: 200 clusters under new names get a
// vote and leave through a real server; the Recorder keeps no vote start
// for any of them.
func TestVoteSinceForgottenWhenNodesLeave(t *testing.T) {
	rec := NewRecorder(time.Now, time.Hour)
	srv, ln := startServer(t, rec)
	nodes := []wire.NodeInfo{{NodeID: 1}}
	ring := wire.RingID{NodeID: 1, Seq: 4}
	for i := range 200 {
		c, err := client.Dial(ln.Addr().String(), node(fmt.Sprintf("churn-%d", i), 1), 5*time.Second)
		require.NoError(t, err)
		require.NoError(t, c.Handshake(ring, nil))
		_, err = c.Call(c.Node.Config(nodes, true, nil))
		require.NoError(t, err)
		_, err = c.Call(c.Node.Membership(ring, nodes, wire.HeuristicsUndefined))
		require.NoError(t, err)
		// The engine told the Recorder before it sent the vote.
		require.Equal(t, client.Ack, c.Node.Vote())
		require.False(t, rec.VoteSince(c.Node.Cluster, 1).IsZero())
		c.Close()
	}
	require.Eventually(t, func() bool {
		st, err := srv.Status(context.Background())
		return err == nil && st.Clients == 0
	}, 10*time.Second, 10*time.Millisecond)
	// The engine tells the Recorder before its status shows the node gone.
	require.Zero(t, rec.tracked())
	// Three events each (decided, gets the vote, decided as it leaves):
	// the newest MaxHistoryEvents of 600.
	require.Equal(t, MaxHistoryEvents, len(rec.History()))
}

// unchangedRefreshAllocs is what one Refresh that finds nothing new
// allocates, with n events in the history.
func unchangedRefreshAllocs(t *testing.T, n int) float64 {
	c := newClock()
	rec := NewRecorder(c.now, time.Hour)
	for i := range n {
		rec.VoteSent(fmt.Sprintf("c%d", i), 1, wire.VoteACK, "test")
	}
	st := &engine.Status{Clusters: []engine.ClusterStatus{{Name: "pve", Nodes: []engine.NodeStatus{{NodeID: 1}}}}}
	p := New(Config{Status: func(context.Context) (*engine.Status, error) { return st, nil }, Recorder: rec, Now: c.now})
	require.NoError(t, p.Refresh(context.Background()))
	return testing.AllocsPerRun(20, func() { _ = p.Refresh(context.Background()) })
}

// TestRefreshDoesNotMarshalTheHistory: a refresh that finds nothing new
// costs the same with a full history as with an empty one: the history is
// not marshalled again to find out that it did not change.
func TestRefreshDoesNotMarshalTheHistory(t *testing.T) {
	empty := unchangedRefreshAllocs(t, 0)
	full := unchangedRefreshAllocs(t, MaxHistoryEvents)
	// A margin of a few allocations: under the race detector sync.Pool
	// drops items at random, so the encoder's buffers vary from run to
	// run. Marshalling the history would cost over a thousand.
	require.LessOrEqual(t, full, empty+10, "allocations per unchanged refresh: %v with %d events, %v without", full, MaxHistoryEvents, empty)
}

// TestPageJSONIsTheView: the JSON the page puts together from its parts
// reads back as the view BuildView makes, history included, and a new
// event is pushed.
func TestPageJSONIsTheView(t *testing.T) {
	c := newClock()
	rec := NewRecorder(c.now, time.Hour)
	rec.VoteSent("pve", 1, wire.VoteACK, "test")
	st := &engine.Status{Clients: 1, Clusters: []engine.ClusterStatus{{Name: "pve\x00" + strings.Repeat("x", 100),
		Nodes: []engine.NodeStatus{{NodeID: 1, LastSentVote: wire.VoteACK, LastSentAckNack: wire.VoteACK}}}}}
	p := New(Config{Status: func(context.Context) (*engine.Status, error) { return st, nil }, Recorder: rec, Now: c.now,
		Address: "127.0.0.1:5403"})
	check := func() {
		t.Helper()
		require.NoError(t, p.Refresh(context.Background()))
		var got View
		require.NoError(t, json.Unmarshal(p.current(context.Background()), &got))
		want := BuildView(st, "127.0.0.1:5403", rec, Pairing{}, c.now())
		wantJS, _ := json.Marshal(want)
		gotJS, _ := json.Marshal(got)
		require.JSONEq(t, string(wantJS), string(gotJS))
	}
	check()
	c.add(time.Second)
	rec.Decided("pve", engine.Decision{Made: true, Winners: []uint32{1}, Reason: "test"})
	check()
	var v View
	require.NoError(t, json.Unmarshal(p.current(context.Background()), &v))
	require.Len(t, v.History, 2)
	require.LessOrEqual(t, len(v.Clusters[0].Name), MaxNameBytes)
	require.True(t, strings.HasPrefix(v.Clusters[0].Name, "pve\uFFFDxxx"), v.Clusters[0].Name)
}

func TestShortName(t *testing.T) {
	for _, name := range []string{"pve", "", "My Cluster", "ünïcode", strings.Repeat("a", MaxNameBytes)} {
		require.Equal(t, name, ShortName(name), "a name that fits is shown as it is")
	}
	seen := map[string]string{}
	for _, name := range []string{
		strings.Repeat("a", MaxNameBytes+1), strings.Repeat("a", 65000), strings.Repeat("a", 65000) + "b",
		strings.Repeat("ü", 40), "bad\xffbyte", "bad\xfebyte", "ctl\x1bchar", "\xff", strings.Repeat("\xff", 100),
		strings.Repeat("€", 22), // 66 bytes: cut within a character
	} {
		s := ShortName(name)
		require.LessOrEqual(t, len(s), MaxNameBytes, "%q", s)
		require.True(t, utf8.ValidString(s), "%q", s)
		require.Equal(t, -1, strings.IndexFunc(s, isControl), "%q", s)
		require.Contains(t, s, "…#", "an altered name says so")
		require.Equal(t, s, ShortName(name), "stable")
		require.NotContains(t, seen, s, "%q and %q look alike", name, seen[s])
		seen[s] = name
	}
	require.True(t, strings.HasPrefix(ShortName(strings.Repeat("a", 65000)), strings.Repeat("a", 40)))
}
