package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/haentities"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// coreAPI is a stand-in for the Supervisor's proxy to Home Assistant's
// REST API: it records the events fired at it, with the token checked.
type coreAPI struct {
	mu     sync.Mutex
	events []haentities.EventData
	bad    int
	wake   chan struct{}
}

func (c *coreAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		c.bad++
		http.Error(w, "401", http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/core/api/events/"+haentities.EventType {
		var d haentities.EventData
		if json.Unmarshal(body, &d) == nil {
			c.events = append(c.events, d)
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		_, _ = w.Write([]byte(`{"message":"Event fired."}`))
		return
	}
	// states, the MQTT service: not what this test looks at
	http.NotFound(w, r)
}

func (c *coreAPI) await(t *testing.T, what string, ok func([]haentities.EventData) bool) []haentities.EventData {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.mu.Lock()
		ev := append([]haentities.EventData(nil), c.events...)
		c.mu.Unlock()
		if ok(ev) {
			return ev
		}
		select {
		case <-c.wake:
		case <-deadline:
			t.Fatalf("no %s; events: %+v", what, ev)
		}
	}
}

// TestStateChangesLogAndFire: a cluster that comes and goes is an info
// line per state change and, with the Supervisor's token, a
// qnetd_cluster_state_changed event per settled change (hold time 0).
func TestStateChangesLogAndFire(t *testing.T) {
	api := &coreAPI{wake: make(chan struct{}, 1)}
	hs := httptest.NewServer(api)
	t.Cleanup(hs.Close)
	cfg := testConfig(t)
	var logs syncBuf
	cfg.Log = zerolog.New(&logs).Level(zerolog.InfoLevel)
	cfg.Entities = &haentities.Config{Token: "tok", CoreAPI: hs.URL + "/core/api", SupervisorURL: hs.URL, Instance: "test"}
	cfg.StateHold = 0
	d := serve(t, cfg)

	n := client.NewNode(client.Settings{Cluster: "pve", NodeID: 1, Algorithm: wire.AlgoTest,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000})
	c, err := client.Dial(d.Addr().String(), n, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil))
	one := []wire.NodeInfo{{NodeID: 1}}
	_, err = c.Call(n.Config(one, true, nil))
	require.NoError(t, err)
	_, err = c.Call(n.Membership(wire.RingID{NodeID: 1, Seq: 4}, one, wire.HeuristicsUndefined))
	require.NoError(t, err)

	ev := api.await(t, "event for healthy", func(ev []haentities.EventData) bool {
		return len(ev) > 0 && ev[len(ev)-1].NewState == "healthy"
	})
	last := ev[len(ev)-1]
	require.Equal(t, "pve", last.Cluster)
	require.Equal(t, haentities.Key("pve"), last.ClusterID)
	require.Equal(t, []uint32{1}, last.VoteHolders)
	require.Equal(t, 1, last.Nodes)
	require.Equal(t, "gone", ev[0].OldState, "a cluster seen first comes from gone")
	require.NotEmpty(t, last.Reason)

	c.Close()
	ev = api.await(t, "event for gone", func(ev []haentities.EventData) bool {
		return ev[len(ev)-1].NewState == "gone"
	})
	require.Equal(t, "healthy", ev[len(ev)-1].OldState)
	require.Empty(t, ev[len(ev)-1].VoteHolders)

	var lines []map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		m := map[string]any{}
		if json.Unmarshal([]byte(l), &m) == nil && m["message"] == "cluster state changed" {
			lines = append(lines, m)
		}
	}
	require.NotEmpty(t, lines)
	require.Equal(t, "pve", lines[len(lines)-1]["cluster"])
	require.Equal(t, "gone", lines[len(lines)-1]["new_state"])
	require.Equal(t, "info", lines[len(lines)-1]["level"])
	api.mu.Lock()
	require.Zero(t, api.bad, "every request carries the token")
	api.mu.Unlock()
}
