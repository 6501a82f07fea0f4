package haentities

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/version"
)

// Broker is an MQTT broker and the login the Supervisor handed out.
type Broker struct {
	Host     string
	Port     int
	SSL      bool
	Username string
	Password string
}

// Payloads of the availability topic (Home Assistant's defaults).
const (
	Online  = "online"
	Offline = "offline"
)

// DefaultDiscoveryPrefix is Home Assistant's discovery prefix; its birth
// message goes to <prefix>/status.
const DefaultDiscoveryPrefix = "homeassistant"

// inMsg is something the MQTT client's goroutines hand to the loop.
type inMsg struct {
	kind    int
	payload []byte
	key     string
}

const (
	inConnected = iota
	inLost
	inBirth
	inForget
	inAdopt
)

// MQTTPublisher publishes the entities over MQTT discovery: retained
// configs and states, an availability topic with a last will, configs
// and states again on every connect and on Home Assistant's birth
// message, and a Forget button per cluster device that removes a gone
// cluster's entities.
type MQTTPublisher struct {
	cfg    Config
	broker Broker
	inst   string
	prefix string
	log    zerolog.Logger
	tr     *tracker

	mu    sync.Mutex
	inbox []inMsg
	wake  chan struct{}

	client    mqtt.Client
	connected bool
	force     bool
	// sent is what the broker retains from us, as far as we know;
	// tomb the retained topics to clear.
	sent    map[string]string
	tomb    map[string]bool
	refused map[string]bool
}

// NewMQTT makes a publisher for broker; Run connects it.
func NewMQTT(cfg Config, broker Broker) *MQTTPublisher {
	cfg = cfg.withDefaults()
	p := &MQTTPublisher{cfg: cfg, broker: broker, inst: topicID(cfg.Instance), prefix: cfg.DiscoveryPrefix,
		log: cfg.Log.With().Str("part", "mqtt").Logger(), tr: newTracker(cfg.MaxClusters, cfg.CertExpiry),
		wake: make(chan struct{}, 1), sent: map[string]string{}, tomb: map[string]bool{}, refused: map[string]bool{}}
	return p
}

// topicID keeps what a discovery topic's node id may hold
// ([a-zA-Z0-9_-]); the add-on's host name normally passes unchanged.
func topicID(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "qnetd"
	}
	return b.String()
}

// Topics of this add-on instance.
func (p *MQTTPublisher) base() string         { return "qnetd/" + p.inst }
func (p *MQTTPublisher) availability() string { return p.base() + "/availability" }
func (p *MQTTPublisher) addOnState() string   { return p.base() + "/state" }
func (p *MQTTPublisher) stateTopic(key string) string {
	return p.base() + "/cluster/" + key + "/state"
}
func (p *MQTTPublisher) forgetTopic(key string) string {
	return p.base() + "/cluster/" + key + "/forget"
}
func (p *MQTTPublisher) configTopic(component, node, object string) string {
	return p.prefix + "/" + component + "/" + node + "/" + object + "/config"
}

func (p *MQTTPublisher) push(m inMsg) {
	p.mu.Lock()
	p.inbox = append(p.inbox, m)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Forget removes every entity of the cluster called name, if qnetd does
// not know it any more; the Forget button does the same.
func (p *MQTTPublisher) Forget(name string) { p.push(inMsg{kind: inForget, key: Key(name)}) }

func (p *MQTTPublisher) options() *mqtt.ClientOptions {
	scheme := "tcp"
	if p.broker.SSL {
		scheme = "ssl"
	}
	o := mqtt.NewClientOptions().
		AddBroker(scheme+"://"+net.JoinHostPort(p.broker.Host, strconv.Itoa(p.broker.Port))).
		SetClientID("qnetd-"+p.inst).
		SetUsername(p.broker.Username).SetPassword(p.broker.Password).
		SetCleanSession(true).
		// Handlers only queue for the loop; they must not wait on each
		// other's tokens.
		SetOrderMatters(false).
		SetKeepAlive(30*time.Second).
		SetConnectRetry(true).SetConnectRetryInterval(10*time.Second).
		SetAutoReconnect(true).SetMaxReconnectInterval(time.Minute).
		// The broker publishes this when the add-on dies or loses the
		// connection: every entity goes unavailable.
		SetWill(p.availability(), Offline, 1, true).
		SetOnConnectHandler(p.onConnect).
		SetConnectionNotificationHandler(p.onNotification)
	if p.broker.SSL {
		o.SetTLSConfig(&tls.Config{ServerName: p.broker.Host, MinVersion: tls.VersionTLS12})
	}
	return o
}

func (p *MQTTPublisher) onConnect(c mqtt.Client) {
	c.Publish(p.availability(), 1, true, Online)
	c.Subscribe(p.prefix+"/status", 1, func(_ mqtt.Client, m mqtt.Message) {
		if string(m.Payload()) == Online {
			p.push(inMsg{kind: inBirth})
		}
	})
	c.Subscribe(p.base()+"/cluster/+/forget", 1, func(_ mqtt.Client, m mqtt.Message) {
		if parts := strings.Split(m.Topic(), "/"); len(parts) == 5 {
			p.push(inMsg{kind: inForget, key: parts[3]})
		}
	})
	// Retained states of clusters this add-on published before it
	// restarted. Only retained copies count: the broker clears the
	// retain flag on our own live publishes that come back.
	c.Subscribe(p.base()+"/cluster/+/state", 1, func(_ mqtt.Client, m mqtt.Message) {
		if m.Retained() && len(m.Payload()) > 0 {
			p.push(inMsg{kind: inAdopt, payload: append([]byte(nil), m.Payload()...)})
		}
	})
	p.push(inMsg{kind: inConnected})
}

func (p *MQTTPublisher) onNotification(_ mqtt.Client, n mqtt.ConnectionNotification) {
	switch n := n.(type) {
	case mqtt.ConnectionNotificationLost:
		p.log.Warn().Err(n.Reason).Msg("MQTT connection lost; reconnecting")
		p.push(inMsg{kind: inLost})
	case mqtt.ConnectionNotificationBrokerFailed:
		p.log.Warn().Err(n.Reason).Str("broker", n.Broker.Host).Msg("cannot connect to the MQTT broker; trying again")
	}
}

// Run connects and publishes until ctx ends; then it marks the entities
// unavailable and disconnects.
func (p *MQTTPublisher) Run(ctx context.Context) {
	p.client = mqtt.NewClient(p.options())
	p.log.Info().Str("broker", net.JoinHostPort(p.broker.Host, strconv.Itoa(p.broker.Port))).Bool("ssl", p.broker.SSL).
		Str("availability_topic", p.availability()).Msg("publishing Home Assistant entities over MQTT")
	p.client.Connect() // retries in the background until it connects
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.stop()
			return
		case <-p.wake:
		case <-p.cfg.Wake:
		case <-t.C:
		}
		p.step(ctx)
	}
}

func (p *MQTTPublisher) stop() {
	if p.client.IsConnected() {
		tok := p.client.Publish(p.availability(), 1, true, Offline)
		tok.WaitTimeout(2 * time.Second)
	}
	p.client.Disconnect(500)
	p.log.Info().Msg("MQTT entities marked unavailable; disconnected")
}

// step handles what the client queued, reads the engine's status and
// publishes what changed.
func (p *MQTTPublisher) step(ctx context.Context) {
	p.mu.Lock()
	inbox := p.inbox
	p.inbox = nil
	p.mu.Unlock()
	now := p.cfg.Now()
	for _, m := range inbox {
		switch m.kind {
		case inConnected:
			p.connected, p.force = true, true
			p.log.Info().Msg("connected to the MQTT broker")
		case inLost:
			p.connected = false
		case inBirth:
			p.force = true
			p.log.Info().Msg("Home Assistant started: publishing every entity again")
		case inForget:
			p.forget(m.key)
		case inAdopt:
			var d Doc
			if json.Unmarshal(m.payload, &d) == nil && p.tr.adopt(d, now, p.cfg.AdoptHold) {
				p.log.Info().Str("cluster", d.Cluster).Str("state", d.State).Msg("cluster from an earlier run kept; it can be forgotten once gone")
			}
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := p.cfg.Status(sctx)
	cancel()
	if err != nil {
		return
	}
	evicted, refused := p.tr.update(st, now)
	for _, tr := range evicted {
		p.log.Info().Str("cluster", tr.doc.Cluster).Int("max_clusters", p.tr.max).Msg("entities of the cluster gone longest removed to make room")
		p.bury(tr)
	}
	for _, name := range refused {
		if !p.refused[name] {
			p.refused[name] = true
			p.log.Warn().Str("cluster", name).Int("max_clusters", p.tr.max).Msg("too many clusters: this one gets no entities")
		}
	}
	if len(refused) == 0 {
		clear(p.refused)
	}
	if !p.connected {
		return
	}
	p.sync(st.Clients)
}

func (p *MQTTPublisher) forget(key string) {
	tr, ok := p.tr.forget(key)
	switch {
	case tr == nil:
		return
	case !ok:
		p.log.Warn().Str("cluster", tr.doc.Cluster).Msg("not forgetting a cluster whose nodes are connected")
		return
	}
	p.bury(tr)
	p.log.Info().Str("cluster", tr.doc.Cluster).Msg("cluster forgotten: its entities are removed")
}

// bury marks every retained topic of a cluster that left the tracker
// for clearing; an empty retained config removes an entity from Home
// Assistant.
func (p *MQTTPublisher) bury(tr *tracked) {
	node := "qnetd_" + tr.key
	for topic := range p.sent {
		if strings.HasPrefix(topic, p.prefix+"/") && strings.Contains(topic, "/"+node+"/") {
			p.tomb[topic] = true
		}
	}
	// A cluster adopted from an earlier run has entities this run never
	// sent: its Doc names them.
	for _, e := range clusterEntities(&tr.doc) {
		p.tomb[p.configTopic(e.Component, node, e.Object)] = true
	}
	p.tomb[p.configTopic("button", node, "forget")] = true
	p.tomb[p.stateTopic(tr.key)] = true
}

// desired is every retained topic and payload this add-on should have.
func (p *MQTTPublisher) desired(clients int) map[string]string {
	out := map[string]string{}
	all := p.tr.sorted()
	addOnDev := map[string]any{"ids": []string{"qnetd_" + p.inst}, "name": "QNetd", "mf": "qnetd-addon",
		"mdl": "Corosync QNetd add-on", "sw": version.AddOn + " (core " + version.Core + ")"}
	for _, e := range addOnEntities() {
		cfg := p.common("qnetd_"+p.inst+"_"+e.Object, "sensor.qnetd_"+e.Object, e.Name, p.addOnState(), addOnDev)
		cfg["val_tpl"] = "{{ value_json." + e.Field + " }}"
		cfg["stat_cla"] = "measurement"
		out[p.configTopic("sensor", "qnetd_"+p.inst, e.Object)] = marshal(cfg)
	}
	out[p.addOnState()] = marshal(AddOnDoc{Clusters: len(all), Clients: clients})
	for _, tr := range all {
		node := "qnetd_" + tr.key
		dev := map[string]any{"ids": []string{node}, "name": "QNetd " + displayName(tr.doc.Cluster), "mf": "qnetd-addon",
			"mdl": "Corosync cluster", "via_device": "qnetd_" + p.inst}
		state := p.stateTopic(tr.key)
		for _, e := range clusterEntities(&tr.doc) {
			cfg := p.common(node+"_"+e.Object, e.Component+"."+node+"_"+e.Object, e.Name, state, dev)
			cfg["val_tpl"] = e.Template
			if e.Template == "" {
				cfg["val_tpl"] = "{{ value_json." + e.Field + " }}"
			}
			if e.Object == "state" {
				cfg["json_attr_t"] = state
			}
			for k, v := range e.Config {
				cfg[k] = v
			}
			out[p.configTopic(e.Component, node, e.Object)] = marshal(cfg)
		}
		btn := p.common(node+"_forget", "button."+node+"_forget", "Forget", "", dev)
		btn["cmd_t"] = p.forgetTopic(tr.key)
		btn["ent_cat"] = "config"
		btn["ic"] = "mdi:delete"
		out[p.configTopic("button", node, "forget")] = marshal(btn)
		out[state] = marshal(tr.doc)
	}
	return out
}

// common is the part of every discovery config that names the entity,
// its device and the availability topic.
func (p *MQTTPublisher) common(uniqueID, entityID, name, stateTopic string, dev map[string]any) map[string]any {
	cfg := map[string]any{
		"name": name, "uniq_id": uniqueID,
		// Home Assistant 2025.10 and later set the entity id from it.
		"default_entity_id": entityID,
		"avty_t":            p.availability(),
		"dev":               dev,
		"o":                 map[string]any{"name": "qnetd", "sw": version.AddOn, "url": "https://github.com/qnetd-addon/qnetd"},
	}
	if stateTopic != "" {
		cfg["stat_t"] = stateTopic
	}
	return cfg
}

func marshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Maps of strings and numbers always marshal.
		panic(err)
	}
	return string(b)
}

// sync publishes what changed since the last successful publish (all of
// it when forced) and clears what should be gone.
func (p *MQTTPublisher) sync(clients int) {
	want := p.desired(clients)
	for topic := range p.sent {
		if _, ok := want[topic]; !ok {
			p.tomb[topic] = true
		}
	}
	type pub struct {
		topic, payload string
		tok            mqtt.Token
	}
	var pubs []pub
	for topic, payload := range want {
		if !p.force && p.sent[topic] == payload {
			continue
		}
		delete(p.tomb, topic)
		pubs = append(pubs, pub{topic, payload, p.client.Publish(topic, 1, true, payload)})
	}
	for topic := range p.tomb {
		pubs = append(pubs, pub{topic, "", p.client.Publish(topic, 1, true, "")})
	}
	deadline := time.Now().Add(10 * time.Second)
	failed := 0
	var firstErr error
	for _, pb := range pubs {
		if !pb.tok.WaitTimeout(time.Until(deadline)) || pb.tok.Error() != nil {
			failed++
			if firstErr == nil {
				firstErr = pb.tok.Error()
				if firstErr == nil {
					firstErr = errors.New("no acknowledgement from the broker")
				}
			}
			continue
		}
		if pb.payload == "" {
			delete(p.tomb, pb.topic)
			delete(p.sent, pb.topic)
		} else {
			p.sent[pb.topic] = pb.payload
		}
	}
	if failed > 0 {
		p.log.Warn().Err(firstErr).Int("failed", failed).Msg("MQTT publish failed; trying again")
		return
	}
	p.force = false
}
