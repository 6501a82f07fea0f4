package haentities

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/statewatch"
)

// TestEventData: what an automation reads, with an untrusted name made
// fit for display and the id of its entities.
func TestEventData(t *testing.T) {
	c := statewatch.Change{Cluster: "pve\x1b[2J", Old: "healthy", New: "split", Reason: "split into {1} and {2}; {1} holds the vote",
		Voters: []uint32{1}, Nodes: 2, Since: time.Date(2026, 12, 5, 10, 0, 0, 0, time.FixedZone("x", 3600))}
	b, err := json.Marshal(NewEventData(c, "qnetd"))
	require.NoError(t, err)
	require.JSONEq(t, `{"cluster":"pve?[2J","cluster_id":"`+Key("pve\x1b[2J")+`","old_state":"healthy","new_state":"split",
		"reason":"split into {1} and {2}; {1} holds the vote","vote_holders":[1],"nodes_connected":2,
		"since":"2026-12-05T09:00:00Z","instance":"qnetd"}`, string(b))
	b, err = json.Marshal(NewEventData(statewatch.Change{Cluster: "a", Old: "split", New: "gone"}, "qnetd"))
	require.NoError(t, err)
	require.Contains(t, string(b), `"vote_holders":[]`, "a list, never null")
}

// TestEventQueueBounded: events Home Assistant does not take wait in a
// bounded queue; the rest are counted, and logged once.
func TestEventQueueBounded(t *testing.T) {
	var logs syncLog
	e := NewEvents(Config{Token: "t", CoreAPI: "http://127.0.0.1:1/core/api", Log: zerolog.New(&logs)})
	require.NotNil(t, e)
	for i := 0; i < 1000; i++ {
		e.Fire(statewatch.Change{Cluster: "c", Old: "healthy", New: "split"})
	}
	require.EqualValues(t, 1000-eventQueue, e.Dropped.Load())
	require.Equal(t, 1, logs.count("state change events are dropped"))
	require.Nil(t, NewEvents(Config{CoreAPI: "http://x"}), "no token: no events")
}

// syncLog is a log writer tests may read while the code logs.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}
