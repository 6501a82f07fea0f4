package haentities

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/upstreamtest"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/server/servertest"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// msg is one message a subscriber received.
type msg struct {
	Topic    string
	Payload  string
	Retained bool
}

// subscriber is a second MQTT client, like Home Assistant: it records
// every message on its subscriptions.
type subscriber struct {
	c    mqtt.Client
	mu   sync.Mutex
	msgs []msg
	// last is the latest payload per topic (what the broker retains).
	last map[string]string
	wake chan struct{}
}

func brokerOf(m *upstreamtest.Mosquitto) Broker {
	return Broker{Host: m.Host, Port: m.Port, Username: m.User, Password: m.Password}
}

func subscribe(t *testing.T, m *upstreamtest.Mosquitto, id string, filters ...string) *subscriber {
	t.Helper()
	s := &subscriber{last: map[string]string{}, wake: make(chan struct{}, 1)}
	o := mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://%s:%d", m.Host, m.Port)).
		SetClientID(id).SetUsername(m.User).SetPassword(m.Password).SetAutoReconnect(false).SetOrderMatters(true)
	s.c = mqtt.NewClient(o)
	tok := s.c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second), "subscriber connect")
	require.NoError(t, tok.Error())
	t.Cleanup(func() { s.c.Disconnect(100) })
	for _, f := range filters {
		tok := s.c.Subscribe(f, 1, func(_ mqtt.Client, mm mqtt.Message) {
			s.mu.Lock()
			s.msgs = append(s.msgs, msg{mm.Topic(), string(mm.Payload()), mm.Retained()})
			s.last[mm.Topic()] = string(mm.Payload())
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		})
		require.True(t, tok.WaitTimeout(10*time.Second), "subscribe %s", f)
		require.NoError(t, tok.Error())
	}
	return s
}

// await waits until cond holds for the messages so far, or fails.
func (s *subscriber) await(t *testing.T, what string, cond func(msgs []msg, last map[string]string) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		s.mu.Lock()
		ok := cond(s.msgs, s.last)
		n := len(s.msgs)
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.wake:
		case <-deadline:
			s.mu.Lock()
			defer s.mu.Unlock()
			var b strings.Builder
			for _, m := range s.msgs[max(0, n-40):] {
				fmt.Fprintf(&b, "%s retained=%v %q\n", m.Topic, m.Retained, m.Payload)
			}
			t.Fatalf("no %s within 15 s; last messages:\n%s", what, b.String())
		}
	}
}

// snapshot is a copy of the latest payload per topic.
func (s *subscriber) snapshot() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.last))
	for k, v := range s.last {
		out[k] = v
	}
	return out
}

// mark is the number of messages so far: await conditions look past it.
func (s *subscriber) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

func (s *subscriber) publish(t *testing.T, topic, payload string, retained bool) {
	t.Helper()
	tok := s.c.Publish(topic, 1, retained, payload)
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
}

// retainedTopics lists what a fresh subscriber gets for filter: what the
// broker retains.
func retainedTopics(t *testing.T, m *upstreamtest.Mosquitto, filter string, settle string) map[string]string {
	t.Helper()
	s := subscribe(t, m, "probe-"+fmt.Sprint(time.Now().UnixNano()), filter)
	// The broker sends retained messages in reply to SUBSCRIBE, before
	// anything later; a message published afterwards on settle marks the
	// end of them.
	s.publish(t, settle, "x", false)
	s.await(t, "end of retained messages", func(msgs []msg, _ map[string]string) bool {
		for _, m := range msgs {
			if m.Topic == settle {
				return true
			}
		}
		return false
	})
	out := map[string]string{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if m.Retained {
			out[m.Topic] = m.Payload
		}
	}
	return out
}

// cluster is a cluster of protocol-level corosync-qdevice nodes.
type cluster struct {
	t     *testing.T
	conns map[uint32]*client.Conn
	name  string
	ids   []uint32
}

func startServer(t *testing.T) (*server.Server, net.Listener) {
	return servertest.Start(t, nil)
}

// join connects nodes ids of cluster name, all in one membership.
func join(t *testing.T, addr, name string, ids ...uint32) *cluster {
	t.Helper()
	c := &cluster{t: t, conns: map[uint32]*client.Conn{}, name: name, ids: ids}
	var cfgNodes []wire.NodeInfo
	for _, id := range ids {
		cfgNodes = append(cfgNodes, wire.NodeInfo{NodeID: id})
	}
	for _, id := range ids {
		n := client.NewNode(client.Settings{Cluster: name, NodeID: id, Algorithm: wire.AlgoFFSplit,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 60000, KAP: true})
		conn, err := client.Dial(addr, n, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		require.NoError(t, conn.Handshake(wire.RingID{NodeID: ids[0], Seq: 4}, nil))
		_, err = conn.Call(conn.Node.Config(cfgNodes, true, nil))
		require.NoError(t, err)
		c.conns[id] = conn
	}
	c.membership(4, ids...)
	return c
}

// membership reports one partition made of ids (the others each alone).
func (c *cluster) membership(seq uint64, ids ...uint32) {
	c.t.Helper()
	in := map[uint32]bool{}
	var part []wire.NodeInfo
	for _, id := range ids {
		in[id] = true
		part = append(part, wire.NodeInfo{NodeID: id})
	}
	for _, id := range c.ids {
		conn := c.conns[id]
		if conn == nil {
			continue
		}
		ring, nodes := wire.RingID{NodeID: ids[0], Seq: seq}, part
		if !in[id] {
			ring, nodes = wire.RingID{NodeID: id, Seq: seq}, []wire.NodeInfo{{NodeID: id}}
		}
		_, err := conn.Call(conn.Node.Membership(ring, nodes, wire.HeuristicsUndefined))
		require.NoError(c.t, err)
	}
}

func (c *cluster) leave() {
	for id, conn := range c.conns {
		conn.Close()
		delete(c.conns, id)
	}
}

func testConfig(srv *server.Server) Config {
	return Config{Status: srv.Status, Interval: 50 * time.Millisecond, Instance: "test-qnetd", Log: zerolog.Nop()}
}

// runMQTT runs a publisher until the test ends.
func runMQTT(t *testing.T, cfg Config, b Broker) *MQTTPublisher {
	p := NewMQTT(cfg, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}
