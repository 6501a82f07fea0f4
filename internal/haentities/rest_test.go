package haentities

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/upstreamtest"
)

// supervisor stands in for the Supervisor: /services/mqtt, and its proxy
// to Home Assistant's REST API with a state machine that a restart
// empties, as Home Assistant's does for states set through the API.
type supervisor struct {
	mu     sync.Mutex
	broker *Broker
	states map[string]restState
	posts  map[string]int
	gets   int
	auth   []string
	wake   chan struct{}
}

func newSupervisor(t *testing.T) (*supervisor, *httptest.Server) {
	s := &supervisor{states: map[string]restState{}, posts: map[string]int{}, wake: make(chan struct{}, 1)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *supervisor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}()
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	if r.URL.Path == "/services/mqtt" {
		if s.broker == nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"result":"error","message":"No mqtt service","data":{}}`)
			return
		}
		b := s.broker
		fmt.Fprintf(w, `{"result":"ok","data":{"host":%q,"port":%d,"ssl":false,"protocol":"3.1.1","username":%q,"password":%q,"addon":"core_mosquitto"}}`,
			b.Host, b.Port, b.Username, b.Password)
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/core/api/states/")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.gets++
		st, ok := s.states[id]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"Entity not found."}`)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	case http.MethodPost:
		var st restState
		if json.Unmarshal(body, &st) != nil || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, existed := s.states[id]
		s.states[id] = st
		s.posts[id]++
		if !existed {
			w.WriteHeader(http.StatusCreated)
		}
		_, _ = w.Write(body)
	case http.MethodDelete:
		delete(s.states, id)
	}
}

// restart empties the state machine, as a Home Assistant restart does.
func (s *supervisor) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.states)
}

func (s *supervisor) await(t *testing.T, what string, cond func(states map[string]restState, posts map[string]int) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		s.mu.Lock()
		ok := cond(s.states, s.posts)
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.wake:
		case <-deadline:
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("no %s within 15 s; states: %v", what, s.states)
		}
	}
}

func runEntities(t *testing.T, cfg Config) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, cfg); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestRESTFallbackSurvivesRestart: without a broker the entities go
// through the REST API, with collision-free ids; when Home Assistant
// restarts and forgets them, they are sent again although nothing in the
// engine changed.
func TestRESTFallbackSurvivesRestart(t *testing.T) {
	sup, web := newSupervisor(t)
	srv, ln := startServer(t)
	cfg := testConfig(srv)
	cfg.Token, cfg.SupervisorURL, cfg.CoreAPI = "tok", web.URL, web.URL+"/core/api"
	cfg.ProbeEvery = 100 * time.Millisecond
	runEntities(t, cfg)

	join(t, ln.Addr().String(), "pve", 1, 2)
	join(t, ln.Addr().String(), "pve_", 1)
	a, b := "qnetd_"+Key("pve"), "qnetd_"+Key("pve_")
	all := []string{"sensor." + a + "_state", "binary_sensor." + a + "_vote", "sensor." + a + "_nodes", "sensor." + a + "_decision",
		"binary_sensor." + a + "_node_1_vote", "binary_sensor." + a + "_node_2_vote",
		"sensor." + b + "_state", "binary_sensor." + b + "_vote", "sensor." + b + "_nodes", "sensor." + b + "_decision",
		"binary_sensor." + b + "_node_1_vote", "sensor.qnetd_clusters", "sensor.qnetd_clients"}
	// Every entity's final state: the step that posts them may be
	// seen half done.
	final := map[string]string{"sensor." + a + "_state": "healthy", "binary_sensor." + a + "_vote": "on", "sensor." + a + "_nodes": "2",
		"sensor." + a + "_decision":           "partition {1,2} gets the vote: has a majority: 2 of 2 configured nodes",
		"binary_sensor." + a + "_node_1_vote": "on", "binary_sensor." + a + "_node_2_vote": "on",
		"sensor." + b + "_state": "healthy", "binary_sensor." + b + "_vote": "on", "sensor." + b + "_nodes": "1",
		"sensor." + b + "_decision":           "partition {1} gets the vote: has a majority: 1 of 1 configured nodes",
		"binary_sensor." + b + "_node_1_vote": "on", "sensor.qnetd_clusters": "2", "sensor.qnetd_clients": "3"}
	require.Len(t, final, len(all))
	healthy := func(states map[string]restState, _ map[string]int) bool {
		for id, v := range final {
			if states[id].State != v {
				return false
			}
		}
		return true
	}
	sup.await(t, "both clusters' entities", healthy)
	sup.mu.Lock()
	require.Len(t, sup.states, len(all), "no other entity")
	st := sup.states["sensor."+a+"_state"]
	require.Equal(t, "QNetd pve State", st.Attributes["friendly_name"])
	require.Equal(t, "enum", st.Attributes["device_class"])
	require.Equal(t, "on", sup.states["binary_sensor."+a+"_node_2_vote"].State)
	require.Equal(t, "QNetd pve_ Connected nodes", sup.states["sensor."+b+"_nodes"].Attributes["friendly_name"])
	for _, h := range sup.auth {
		require.Equal(t, "Bearer tok", h)
	}
	base := maps.Clone(sup.posts)
	gets := sup.gets
	sup.mu.Unlock()

	// A probe finds Home Assistant with the states: nothing is sent again.
	sup.await(t, "a probe", func(map[string]restState, map[string]int) bool { return sup.gets > gets+1 })
	sup.mu.Lock()
	require.Equal(t, base, sup.posts, "an unchanged entity is not sent again")
	sup.mu.Unlock()

	sup.restart()
	sup.await(t, "every entity again after the restart", func(states map[string]restState, posts map[string]int) bool {
		for _, id := range all {
			if posts[id] < base[id]+1 {
				return false
			}
		}
		return healthy(states, posts)
	})
	sup.mu.Lock()
	defer sup.mu.Unlock()
	for _, id := range all {
		require.Equal(t, base[id]+1, sup.posts[id], "%s sent once more, after the restart", id)
	}
}

// TestBrokerAppearsLater: the Supervisor offers no broker at first, then
// one (Mosquitto installed); the add-on moves to MQTT discovery and
// removes the states it had set through the REST API, whose ids MQTT
// discovery asks for.
func TestBrokerAppearsLater(t *testing.T) {
	m := upstreamtest.StartMosquitto(t)
	ha := subscribe(t, m, "ha", "homeassistant/#", "qnetd/#")
	sup, web := newSupervisor(t)
	srv, ln := startServer(t)
	cfg := testConfig(srv)
	cfg.Token, cfg.SupervisorURL, cfg.CoreAPI = "tok", web.URL, web.URL+"/core/api"
	cfg.Recheck = 200 * time.Millisecond
	runEntities(t, cfg)
	join(t, ln.Addr().String(), "pve", 1, 2)
	id := "sensor.qnetd_" + Key("pve") + "_state"
	sup.await(t, "REST state", func(states map[string]restState, _ map[string]int) bool {
		return states[id].State == "healthy"
	})

	b := brokerOf(m)
	sup.mu.Lock()
	sup.broker = &b
	sup.mu.Unlock()
	ha.await(t, "MQTT discovery", func(_ []msg, last map[string]string) bool {
		return strings.Contains(last["qnetd/test-qnetd/cluster/"+Key("pve")+"/state"], `"state":"healthy"`) &&
			len(configTopics(last, Key("pve"))) == 7
	})
	sup.await(t, "REST states removed", func(states map[string]restState, _ map[string]int) bool {
		return len(states) == 0
	})
}
