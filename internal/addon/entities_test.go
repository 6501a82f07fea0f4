package addon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/haentities"
	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/internal/upstreamtest"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestEntitiesOverTheSupervisorsBroker runs the add-on as the Supervisor
// starts it (a token, the Supervisor's MQTT service pointing at Debian's
// mosquitto), lets a paired TLS node join and checks that the cluster's
// state and its certificate's expiry arrive over MQTT, and that a stop
// marks the entities unavailable.
func TestEntitiesOverTheSupervisorsBroker(t *testing.T) {
	m := upstreamtest.StartMosquitto(t)
	var supMu sync.Mutex
	var supAuth []string
	sup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		supMu.Lock()
		supAuth = append(supAuth, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		supMu.Unlock()
		if r.URL.Path != "/services/mqtt" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, `{"result":"ok","data":{"host":%q,"port":%d,"ssl":false,"protocol":"3.1.1","username":%q,"password":%q,"addon":"core_mosquitto"}}`,
			m.Host, m.Port, m.User, m.Password)
	}))
	t.Cleanup(sup.Close)

	// Home Assistant's place: every state and availability message.
	var mu sync.Mutex
	last := map[string]string{}
	wake := make(chan struct{}, 1)
	o := mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://%s:%d", m.Host, m.Port)).SetClientID("ha").
		SetUsername(m.User).SetPassword(m.Password).SetAutoReconnect(false)
	ha := mqtt.NewClient(o)
	tok := ha.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { ha.Disconnect(100) })
	tok = ha.Subscribe("qnetd/#", 1, func(_ mqtt.Client, mm mqtt.Message) {
		mu.Lock()
		last[mm.Topic()] = string(mm.Payload())
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	await := func(what string, cond func(map[string]string) bool) map[string]string {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			mu.Lock()
			snap := map[string]string{}
			for k, v := range last {
				snap[k] = v
			}
			mu.Unlock()
			if cond(snap) {
				return snap
			}
			select {
			case <-wake:
			case <-deadline:
				t.Fatalf("no %s within 15 s; have %v", what, snap)
			}
		}
	}
	find := func(snap map[string]string, suffix, contains string) string {
		for topic, payload := range snap {
			if strings.HasSuffix(topic, suffix) && strings.Contains(payload, contains) {
				return topic
			}
		}
		return ""
	}

	opts := Defaults()
	opts.PairingEnabled = false
	p, d, stop := startAddon(t, opts, func(p *Paths) {
		p.SupervisorToken, p.Supervisor, p.SupervisorAPI = "tok", sup.URL, sup.URL+"/core/api"
	})
	require.NotNil(t, DaemonConfig(p, opts, zerolog.Nop()).Entities)

	// A paired node of cluster "pve" joins over TLS.
	c, err := client.Dial(d.Addr().String(), client.NewNode(client.Settings{Cluster: "pve", NodeID: 1, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 60000, KAP: true}), 5*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, signedClientTLS(t, p, "pve")))
	nodes := []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}
	_, err = c.Call(c.Node.Config(nodes, true, nil))
	require.NoError(t, err)
	_, err = c.Call(c.Node.Membership(wire.RingID{NodeID: 1, Seq: 4}, []wire.NodeInfo{{NodeID: 1}}, wire.HeuristicsUndefined))
	require.NoError(t, err)

	snap := await("the cluster's state", func(s map[string]string) bool {
		return find(s, "/cluster/"+haentities.Key("pve")+"/state", `"state":"degraded"`) != ""
	})
	var doc haentities.Doc
	require.NoError(t, json.Unmarshal([]byte(snap[find(snap, "/cluster/"+haentities.Key("pve")+"/state", "")]), &doc))
	require.Equal(t, "node 2 not connected", doc.Reason)
	notAfter, err := pki.ClientCertNotAfter(p.PKIDir(), "pve")
	require.NoError(t, err)
	require.Equal(t, notAfter.UTC().Format("2006-01-02T15:04:05+00:00"), doc.CertExpiry, "the certificate pairing stored")
	availability := find(snap, "/availability", haentities.Online)
	require.NotEmpty(t, availability)

	require.NoError(t, stop())
	await("offline after the add-on stopped", func(s map[string]string) bool { return s[availability] == haentities.Offline })
	supMu.Lock()
	defer supMu.Unlock()
	require.Equal(t, []string{"GET /services/mqtt Bearer tok"}, supAuth, "the broker came from the Supervisor")
}

// TestNoTokenNoEntities: outside the Supervisor nothing is published.
func TestNoTokenNoEntities(t *testing.T) {
	require.Nil(t, DaemonConfig(Paths{}, Defaults(), zerolog.Nop()).Entities)
}
