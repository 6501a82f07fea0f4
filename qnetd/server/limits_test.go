package server_test

import (
	"bufio"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// dialFrom connects to srv from the local address from.
func dialFrom(t *testing.T, srv *server.Server, from *net.TCPAddr) *rawClient {
	t.Helper()
	d := net.Dialer{LocalAddr: from, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", srv.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// served checks that the server reads and answers c (a PREINIT).
func (c *rawClient) served() {
	c.t.Helper()
	c.send(client.NewNode(client.Settings{Cluster: "c"}).Preinit())
	m, _ := c.read()
	require.Equal(c.t, wire.MsgPreinitReply, m.Type)
}

// echoes checks that an initialised client is still served.
func (c *rawClient) echoes(n *client.Node) {
	c.t.Helper()
	c.send(n.Echo())
	m, _ := c.read()
	require.Equal(c.t, wire.MsgEchoReply, m.Type)
}

func waitConns(t *testing.T, srv *server.Server, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return srv.NumConnections() == n }, 5*time.Second, time.Millisecond,
		"want %d connections, have %d", n, srv.NumConnections())
}

// TestInitTimeout: a connection that sends nothing, or only PREINIT, is
// closed InitTimeout after it was accepted instead of after the 180 s
// pre-INIT dead-peer interval; one that completed INIT before is kept.
func TestInitTimeout(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		srv := start(t, func(c *server.Config) { c.InitTimeout = timeout })
		// First, so that its own deadline is past when the others close.
		good := dial(t, srv)
		n := good.initNode("c", 1, 8000)
		begin := time.Now()
		silent := dial(t, srv)
		preinitOnly := dial(t, srv)
		preinitOnly.served()
		silent.expectClosed()
		preinitOnly.expectClosed()
		took := time.Since(begin)
		require.GreaterOrEqual(t, took, timeout)
		require.Less(t, took, 5*time.Second)
		good.echoes(n)
		waitConns(t, srv, 1)
	})
}

// hugeHeader announces a PREINIT of 2^31-1 bytes: longer than the server
// takes, so it is skipped, and skipping it takes until 2 GB arrived.
func hugeHeader() []byte { return mustHex("0000" + "7fffffff" + "0000000400000001") }

// TestHugeMessageDoesNotHoldTheConnection: a client that announces a
// ~2 GB message is read and skipped as upstream does, and skipping is no
// sign of life: before INIT the INIT timeout closes it, after INIT its
// dead-peer interval (upstream: 180 s before INIT).
func TestHugeMessageDoesNotHoldTheConnection(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		srv := start(t, func(c *server.Config) {
			c.InitTimeout = timeout
			c.Engine.HeartbeatMin = 100
		})
		after := dial(t, srv)
		after.initNode("c", 1, 200)
		begin := time.Now()
		before := dial(t, srv)
		for _, c := range []*rawClient{before, after} {
			c.write(hugeHeader())
			c.write(make([]byte, 64<<10))
		}
		before.expectClosed()
		require.GreaterOrEqual(t, time.Since(begin), timeout)
		after.expectClosed() // 1.5 x 200 ms after INIT
		require.Less(t, time.Since(begin), 5*time.Second)
	})
}

// TestNewcomersPerSource: one address holds at most
// MaxNewcomersPerSource connections before INIT; more are closed at once,
// other addresses are still served, and INIT or a close frees a place.
func TestNewcomersPerSource(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		srv := start(t, func(c *server.Config) { c.MaxNewcomersPerSource, c.InitTimeout = 3, 0 })
		a := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
		var held []*rawClient
		for i := 0; i < 3; i++ {
			c := dialFrom(t, srv, a)
			c.served()
			held = append(held, c)
		}
		dialFrom(t, srv, a).expectClosed()
		dialFrom(t, srv, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}).served()

		// INIT done: no longer counted.
		held[0].initNode("c", 1, 8000)
		dialFrom(t, srv, a).served()
		dialFrom(t, srv, a).expectClosed()
		// Closed: no longer counted either.
		held[1].nc.Close()
		waitConns(t, srv, 4)
		dialFrom(t, srv, a).served()
		dialFrom(t, srv, a).expectClosed()
	})
}

// TestNewcomersInAll: when MaxNewcomers connections wait for INIT, a
// connection from an address holding fewer of them takes the place of the
// oldest of the address holding the most; when no address holds two more
// than the new connection's, the new one is closed at once.
func TestNewcomersInAll(t *testing.T) {
	ip := func(last byte) *net.TCPAddr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, last)} }
	inBothModes(t, func(t *testing.T) {
		srv := start(t, func(c *server.Config) { c.MaxNewcomers, c.MaxNewcomersPerSource, c.InitTimeout = 4, 0, 0 })
		var flood []*rawClient
		for i := 0; i < 4; i++ {
			c := dialFrom(t, srv, ip(10))
			c.served()
			flood = append(flood, c)
		}
		// Another address gets in; the flood's oldest goes.
		b1 := dialFrom(t, srv, ip(20))
		b1.served()
		flood[0].expectClosed()
		// Again: 3 against 1.
		b2 := dialFrom(t, srv, ip(20))
		b2.served()
		flood[1].expectClosed()
		// 2 against 2: no one makes room.
		dialFrom(t, srv, ip(20)).expectClosed()
		waitConns(t, srv, 4)
		for _, c := range append(flood[2:], b1, b2) {
			c.served()
		}
		// INIT frees a place without closing anyone.
		b1.initNode("c", 1, 8000)
		c := dialFrom(t, srv, ip(30))
		c.served()
		waitConns(t, srv, 5)
		for _, c := range append(flood[2:], b2) {
			c.served()
		}
	})
	t.Run("one each", func(t *testing.T) {
		srv := start(t, func(c *server.Config) { c.MaxNewcomers, c.MaxNewcomersPerSource, c.InitTimeout = 4, 0, 0 })
		for i := 0; i < 4; i++ {
			dialFrom(t, srv, ip(byte(40+i))).served()
		}
		dialFrom(t, srv, ip(50)).expectClosed()
		waitConns(t, srv, 4)
	})
}

// TestDescriptorReserve: connections stop FDReserve descriptors below the
// open-file limit, and connections before INIT take at most half of what
// is left, so that nodes that completed INIT keep room.
func TestDescriptorReserve(t *testing.T) {
	defer server.SetOpenFileLimit(100 + 10)()
	logs := &syncBuffer{}
	srv := start(t, func(c *server.Config) {
		c.FDReserve = 100 // 10 connections, 5 before INIT
		c.MaxNewcomersPerSource, c.InitTimeout = 0, 0
		c.Log = zerolog.New(logs)
	})
	from := client.Loopback(20)
	var idle []*rawClient
	for i := 0; i < 5; i++ {
		c := dialFrom(t, srv, from(i))
		c.served()
		idle = append(idle, c)
	}
	dialFrom(t, srv, from(5)).expectClosed()
	requireLogged(t, logs, "too many connections before INIT", 1)
	for _, c := range idle {
		c.nc.Close()
	}
	waitConns(t, srv, 0)

	var nodes []*client.Node
	var inited []*rawClient
	for i := 0; i < 6; i++ {
		c := dial(t, srv)
		nodes = append(nodes, c.initNode("c", uint32(i+1), 8000))
		inited = append(inited, c)
	}
	for i := 0; i < 4; i++ {
		dialFrom(t, srv, from(6+i)).served()
	}
	// 10 connections, 4 of them before INIT: the limit is all of them.
	dialFrom(t, srv, from(10)).expectClosed()
	requireLogged(t, logs, "open file limit less the reserve reached", 1)
	for i, c := range inited {
		c.echoes(nodes[i])
	}
	waitConns(t, srv, 10)
}

// logLine is one "connections closed by a limit" line.
type logLine struct {
	Addr        string `json:"addr"`
	Reason      string `json:"reason"`
	Connections int    `json:"connections"`
	Message     string `json:"message"`
}

func limitLines(logs *syncBuffer, reason string) []logLine {
	var out []logLine
	for _, l := range strings.Split(logs.String(), "\n") {
		var x logLine
		if json.Unmarshal([]byte(l), &x) == nil && x.Message == "connections closed by a limit" && x.Reason == reason {
			out = append(out, x)
		}
	}
	return out
}

func requireLogged(t *testing.T, logs *syncBuffer, reason string, connections int) {
	t.Helper()
	require.Eventually(t, func() bool {
		ls := limitLines(logs, reason)
		return len(ls) > 0 && ls[len(ls)-1].Connections == connections
	}, 5*time.Second, time.Millisecond, "no line for %d connections closed: %s\n%s", connections, reason, logs.String())
}

// TestRefusalsAreLoggedSparingly: a flood of refused connections costs
// one line at once and then one line per interval with their number, the
// address in a field.
func TestRefusalsAreLoggedSparingly(t *testing.T) {
	const every = time.Second
	defer server.SetRefusalLogEvery(every)()
	logs := &syncBuffer{}
	srv := start(t, func(c *server.Config) {
		c.MaxNewcomersPerSource = 1
		c.Log = zerolog.New(logs).Level(zerolog.WarnLevel)
	})
	const reason = "too many connections from this address before INIT"
	dial(t, srv).served()
	const flood = 30
	begin := time.Now()
	for i := 0; i < flood; i++ {
		dial(t, srv).expectClosed()
	}
	took := time.Since(begin)
	require.Eventually(t, func() bool {
		sum := 0
		for _, l := range limitLines(logs, reason) {
			sum += l.Connections
		}
		return sum == flood
	}, 5*time.Second, time.Millisecond, logs.String())
	// The first at once, then one per interval the flood lasted (one,
	// unless this machine is very slow).
	lines := limitLines(logs, reason)
	require.Equal(t, 1, lines[0].Connections)
	require.GreaterOrEqual(t, len(lines), 2)
	require.LessOrEqual(t, len(lines), 2+int(took/every), logs.String())
	for _, l := range lines {
		host, _, err := net.SplitHostPort(l.Addr)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1", host)
	}
	require.Equal(t, len(lines), strings.Count(logs.String(), "\n"), "nothing else logged:\n%s", logs.String())
}
