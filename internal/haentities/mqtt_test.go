package haentities

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/upstreamtest"
)

// configTopics are the discovery topics of a cluster's entities, by
// component/object.
func configTopics(last map[string]string, key string) map[string]string {
	out := map[string]string{}
	for topic, payload := range last {
		parts := strings.Split(topic, "/")
		if len(parts) == 5 && parts[0] == "homeassistant" && parts[2] == "qnetd_"+key && parts[4] == "config" && payload != "" {
			out[parts[1]+"/"+parts[3]] = payload
		}
	}
	return out
}

func docOf(t *testing.T, last map[string]string, topic string) Doc {
	t.Helper()
	var d Doc
	require.NoError(t, json.Unmarshal([]byte(last[topic]), &d), "state on %s: %q", topic, last[topic])
	return d
}

// TestDiscoveryStatesBirthAndForget runs a 2-node ffsplit cluster through
// join, split, Home Assistant's birth message, a second cluster whose
// name reads alike, leave and forget, against Debian's mosquitto, and
// checks what a subscriber (Home Assistant's place) gets at each step.
func TestDiscoveryStatesBirthAndForget(t *testing.T) {
	m := upstreamtest.StartMosquitto(t)
	srv, ln := startServer(t)
	ha := subscribe(t, m, "ha", "homeassistant/#", "qnetd/#")
	expiry := time.Date(2126, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := testConfig(srv)
	cfg.CertExpiry = func(name string) (time.Time, bool) { return expiry, name == "pve" }
	p := runMQTT(t, cfg, brokerOf(m))
	key := Key("pve")
	state := "qnetd/test-qnetd/cluster/" + key + "/state"

	// The add-on device comes first, online, with no cluster.
	ha.await(t, "add-on online with its entities", func(_ []msg, last map[string]string) bool {
		return last["qnetd/test-qnetd/availability"] == Online && last["qnetd/test-qnetd/state"] == `{"clusters":0,"clients":0}` &&
			last["homeassistant/sensor/qnetd_test-qnetd/clusters/config"] != ""
	})

	// Both nodes join: healthy, both hold the vote.
	pve := join(t, ln.Addr().String(), "pve", 1, 2)
	ha.await(t, "healthy state", func(_ []msg, last map[string]string) bool {
		return strings.Contains(last[state], `"state":"healthy"`) && len(configTopics(last, key)) == 8
	})
	d := docOf(t, ha.snapshot(), state)
	require.Equal(t, "ON", d.Vote)
	require.Equal(t, map[string]string{"1": "ON", "2": "ON"}, d.Votes)
	require.Equal(t, 2, d.NodesConnected)
	require.Equal(t, "2126-01-02T03:04:05+00:00", d.CertExpiry)
	require.Equal(t, "Fifty-Fifty split", d.Algorithm)

	// What Home Assistant finds retained when it subscribes.
	retained := retainedTopics(t, m, "homeassistant/#", "homeassistant/settle")
	got := configTopics(retained, key)
	var names []string
	for k := range got {
		names = append(names, k)
	}
	sort.Strings(names)
	require.Equal(t, []string{"binary_sensor/node_1_vote", "binary_sensor/node_2_vote", "binary_sensor/vote", "button/forget",
		"sensor/cert_expiry", "sensor/decision", "sensor/nodes", "sensor/state"}, names)
	for _, n := range names {
		t.Logf("homeassistant/%s/qnetd_%s/%s/config\n%s", strings.Split(n, "/")[0], key, strings.Split(n, "/")[1], got[n])
	}
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(got["sensor/state"]), &st))
	require.Equal(t, "qnetd_"+key+"_state", st["uniq_id"])
	require.Equal(t, "sensor.qnetd_"+key+"_state", st["default_entity_id"])
	require.Equal(t, state, st["stat_t"])
	require.Equal(t, "qnetd/test-qnetd/availability", st["avty_t"])
	require.Equal(t, "QNetd pve", st["dev"].(map[string]any)["name"])

	// The link between the nodes breaks: node 1 (lowest id) keeps the vote.
	pve.membership(8, 1)
	ha.await(t, "split state", func(_ []msg, last map[string]string) bool {
		return strings.Contains(last[state], `"state":"split"`)
	})
	d = docOf(t, ha.snapshot(), state)
	require.Equal(t, map[string]string{"1": "ON", "2": "OFF"}, d.Votes)
	require.Equal(t, "ON", d.Vote, "a partition still holds the vote")
	require.Equal(t, "partition {1} gets the vote: 50:50 split, equal scores; it holds the tie-breaker node 1 (node with lowest node id)", d.Decision)

	// Home Assistant restarts: its birth message brings every config and
	// state again.
	mark := ha.mark()
	ha.publish(t, "homeassistant/status", Online, false)
	ha.await(t, "every config and state again", func(msgs []msg, _ map[string]string) bool {
		again := map[string]bool{}
		for _, m := range msgs[mark:] {
			if m.Payload != "" {
				again[m.Topic] = true
			}
		}
		for n := range got {
			parts := strings.Split(n, "/")
			if !again["homeassistant/"+parts[0]+"/qnetd_"+key+"/"+parts[1]+"/config"] {
				return false
			}
		}
		return again[state] && again["homeassistant/sensor/qnetd_test-qnetd/clusters/config"]
	})

	// A cluster whose name reads alike gets entities of its own.
	other := Key("pve_")
	require.NotEqual(t, key, other)
	join(t, ln.Addr().String(), "pve_", 1)
	otherState := "qnetd/test-qnetd/cluster/" + other + "/state"
	ha.await(t, "second cluster", func(_ []msg, last map[string]string) bool {
		return strings.Contains(last[otherState], `"cluster":"pve_"`) && len(configTopics(last, other)) == 6 &&
			last["qnetd/test-qnetd/state"] == `{"clusters":2,"clients":3}`
	})
	require.Len(t, configTopics(ha.snapshot(), key), 8, "the first cluster keeps its entities")

	// Forgetting a cluster whose node is connected changes nothing; the
	// birth message after it shows every entity still there.
	mark = ha.mark()
	p.Forget("pve_")
	ha.publish(t, "homeassistant/status", Online, false)
	ha.await(t, "configs again after a refused forget", func(msgs []msg, _ map[string]string) bool {
		for _, m := range msgs[mark:] {
			require.NotEmpty(t, m.Payload, "nothing removed: %s", m.Topic)
		}
		n := 0
		for _, m := range msgs[mark:] {
			if strings.Contains(m.Topic, "/qnetd_"+other+"/") {
				n++
			}
		}
		return n == 6
	})

	// Everybody of pve leaves: gone, no vote, entities kept.
	pve.leave()
	ha.await(t, "gone state", func(_ []msg, last map[string]string) bool {
		return strings.Contains(last[state], `"state":"gone"`)
	})
	d = docOf(t, ha.snapshot(), state)
	require.Equal(t, "OFF", d.Vote)
	require.Equal(t, map[string]string{"1": "OFF", "2": "OFF"}, d.Votes)
	require.Equal(t, 0, d.NodesConnected)
	require.Contains(t, d.Decision, "partition {1} gets the vote", "the last decision stays")
	require.Len(t, configTopics(ha.snapshot(), key), 8)

	// The admin presses Forget: every retained topic of pve is cleared.
	ha.publish(t, "qnetd/test-qnetd/cluster/"+key+"/forget", "PRESS", false)
	ha.await(t, "entities removed", func(_ []msg, last map[string]string) bool {
		return len(configTopics(last, key)) == 0 && last[state] == "" &&
			last["qnetd/test-qnetd/state"] == `{"clusters":1,"clients":1}`
	})
	retained = retainedTopics(t, m, "#", "settle")
	for topic := range retained {
		require.NotContains(t, topic, key, "nothing of the forgotten cluster is retained")
	}
	require.Len(t, configTopics(retained, other), 6, "the other cluster keeps its entities")
}

// TestRestartAdoptsAndCleanStop stops a publisher cleanly (its entities go
// unavailable), starts another with no cluster connected, which takes the
// cluster from the broker's retained state, marks it gone after the
// hold, and can forget it.
func TestRestartAdoptsAndCleanStop(t *testing.T) {
	m := upstreamtest.StartMosquitto(t)
	ha := subscribe(t, m, "ha", "homeassistant/#", "qnetd/#")
	key := Key("lab")
	state := "qnetd/test-qnetd/cluster/" + key + "/state"

	srv, ln := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { NewMQTT(testConfig(srv), brokerOf(m)).Run(ctx); close(done) }()
	join(t, ln.Addr().String(), "lab", 1, 2)
	ha.await(t, "healthy lab", func(_ []msg, last map[string]string) bool {
		return strings.Contains(last[state], `"state":"healthy"`)
	})
	cancel()
	<-done
	ha.await(t, "offline after a clean stop", func(_ []msg, last map[string]string) bool {
		return last["qnetd/test-qnetd/availability"] == Offline
	})

	srv2, _ := startServer(t)
	cfg := testConfig(srv2)
	cfg.AdoptHold = 300 * time.Millisecond
	runMQTT(t, cfg, brokerOf(m))
	ha.await(t, "online again, lab adopted then gone", func(_ []msg, last map[string]string) bool {
		return last["qnetd/test-qnetd/availability"] == Online && strings.Contains(last[state], `"state":"gone"`) &&
			last["qnetd/test-qnetd/state"] == `{"clusters":1,"clients":0}`
	})
	require.Equal(t, map[string]string{"1": "OFF", "2": "OFF"}, docOf(t, ha.snapshot(), state).Votes)
	ha.publish(t, "qnetd/test-qnetd/cluster/"+key+"/forget", "PRESS", false)
	ha.await(t, "adopted cluster forgotten", func(_ []msg, last map[string]string) bool {
		return len(configTopics(last, key)) == 0 && last[state] == ""
	})
}

// TestHelperPublisher is the publisher process that TestKillMarksOffline
// kills; it does nothing in a normal run.
func TestHelperPublisher(t *testing.T) {
	port := os.Getenv("HAENTITIES_HELPER_PORT")
	if port == "" {
		t.Skip("helper process only")
	}
	n, _ := strconv.Atoi(port)
	srv, _ := startServer(t)
	b := Broker{Host: "127.0.0.1", Port: n, Username: os.Getenv("HAENTITIES_HELPER_USER"), Password: os.Getenv("HAENTITIES_HELPER_PASSWORD")}
	NewMQTT(testConfig(srv), b).Run(context.Background())
}

// TestKillMarksOffline kills the publisher's process with SIGKILL: the
// broker publishes its last will and every entity goes unavailable.
func TestKillMarksOffline(t *testing.T) {
	m := upstreamtest.StartMosquitto(t)
	ha := subscribe(t, m, "ha", "qnetd/#", "homeassistant/#")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPublisher$")
	cmd.Env = append(os.Environ(), "HAENTITIES_HELPER_PORT="+strconv.Itoa(m.Port),
		"HAENTITIES_HELPER_USER="+m.User, "HAENTITIES_HELPER_PASSWORD="+m.Password)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	ha.await(t, "helper online with its entities", func(_ []msg, last map[string]string) bool {
		return last["qnetd/test-qnetd/availability"] == Online && last["homeassistant/sensor/qnetd_test-qnetd/clients/config"] != ""
	})
	require.NoError(t, cmd.Process.Kill())
	ha.await(t, "last will", func(_ []msg, last map[string]string) bool {
		return last["qnetd/test-qnetd/availability"] == Offline
	})
	require.Equal(t, Offline, retainedTopics(t, m, "qnetd/#", "qnetd/settle")["qnetd/test-qnetd/availability"],
		"Home Assistant finds the add-on offline when it subscribes later")
}
