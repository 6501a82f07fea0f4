package server_test

import (
	"bufio"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/logbatch"
	"github.com/qnetd-addon/qnetd/qnetd/server/servertest"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

func start(t *testing.T, mutate func(*server.Config)) *server.Server {
	t.Helper()
	srv, _ := servertest.Start(t, func(c *server.Config) {
		c.NoEpoll = strings.HasSuffix(t.Name(), "/goroutines")
		if mutate != nil {
			mutate(c)
		}
	})
	return srv
}

// inBothModes runs f against a server that reads plaintext connections in
// its epoll loop and against one that gives every connection a goroutine
// (what systems without epoll get, and what TLS connections always get).
func inBothModes(t *testing.T, f func(t *testing.T)) {
	t.Run("epoll", f)
	t.Run("goroutines", f)
}

type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, srv *server.Server) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", srv.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	_, err := c.nc.Write(b)
	require.NoError(c.t, err)
}

func (c *rawClient) send(m *wire.Msg) { c.write(m.Append(nil)) }

func (c *rawClient) read() (*wire.Msg, []byte) {
	c.t.Helper()
	m, raw, err := client.ReadMsg(c.br)
	require.NoError(c.t, err)
	return m, raw
}

func (c *rawClient) expectError(code wire.ErrorCode, seq *uint32) {
	c.t.Helper()
	m, _ := c.read()
	require.Equal(c.t, wire.MsgServerError, m.Type, "got %s", m)
	require.Equal(c.t, code, m.ReplyErrorCode)
	if seq == nil {
		require.False(c.t, m.Has.Has(wire.OptSeq), "error must not carry a seq")
	} else {
		require.True(c.t, m.Has.Has(wire.OptSeq))
		require.Equal(c.t, *seq, m.Seq)
	}
}

func (c *rawClient) expectClosed() {
	c.t.Helper()
	_, _, err := client.ReadMsg(c.br)
	require.Error(c.t, err)
	require.False(c.t, isTimeout(err), "connection still open: %v", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func u32(x uint32) *uint32 { return &x }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// initNode runs PREINIT + INIT for a simulated node over c.
func (c *rawClient) initNode(cluster string, id, hb uint32) *client.Node {
	c.t.Helper()
	n := client.NewNode(client.Settings{Cluster: cluster, NodeID: id, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: hb, KAP: true})
	c.send(n.Preinit())
	m, _ := c.read()
	require.Equal(c.t, wire.MsgPreinitReply, m.Type)
	c.send(n.Init(wire.RingID{NodeID: id, Seq: 4}))
	m, _ = c.read()
	require.Equal(c.t, wire.MsgInitReply, m.Type)
	require.Equal(c.t, wire.ErrNoError, m.ReplyErrorCode)
	return n
}

func TestPreinitExampleBytes(t *testing.T) {
	srv := start(t, func(c *server.Config) { c.Engine.TLS = wire.TLSSupportedOn })
	c := dial(t, srv)
	c.write(mustHex("0000" + "0000000e" + "0000000400000001" + "000100026331"))
	_, raw := c.read()
	require.Equal(t, "0001"+"00000012"+"0000000400000001"+"0002000101"+"0003000101", hex.EncodeToString(raw))
}

func TestCertRequiredAdvertisedEvenWithTLSOff(t *testing.T) {
	// Protocol notes, fact 12.
	c := dial(t, start(t, nil))
	n := client.NewNode(client.Settings{Cluster: "c"})
	c.send(n.Preinit())
	m, _ := c.read()
	require.Equal(t, wire.TLSUnsupported, m.TLSSupported)
	require.Equal(t, uint8(1), m.TLSClientCertRequired)
}

func TestFramingErrorsKeepTheConnection(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		c := dial(t, start(t, nil))
		// Unknown type with a body: skipped, SERVER_ERROR 4 without seq.
		c.write(mustHex("0063" + "00000008" + "0000000400000007"))
		c.expectError(wire.ErrUnsupportedMessage, nil)
		// Unknown type with no body: upstream answers code 0 (fact 7).
		c.write(mustHex("0063" + "00000000"))
		c.expectError(wire.ErrNoError, nil)
		// Longer than 32768 with header: read to its end, then SERVER_ERROR 5.
		long := (&wire.Msg{Type: wire.MsgPreinit, ClusterName: make([]byte, 65535)}).Set(wire.OptClusterName)
		c.send(long)
		c.expectError(wire.ErrMessageTooLong, nil)
		// No option at all: decode error 9.
		c.write(mustHex("0000" + "00000000"))
		c.expectError(wire.ErrErrorDecodingMsg, nil)
		// Stray bytes after a valid seq: 9 with the seq.
		c.write(mustHex("0000" + "0000000a" + "0000000400000005" + "0102"))
		c.expectError(wire.ErrErrorDecodingMsg, u32(5))
		// A server-only type: 8 with the seq.
		c.write(mustHex("000e" + "00000008" + "0000000400000006"))
		c.expectError(wire.ErrUnexpectedMessage, u32(6))
		// The connection still works.
		n := client.NewNode(client.Settings{Cluster: "c"})
		c.send(n.Preinit())
		m, _ := c.read()
		require.Equal(t, wire.MsgPreinitReply, m.Type)
	})
}

func TestExactly32768BytesIsAccepted(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		c := dial(t, start(t, nil))
		name := make([]byte, 32768-wire.HeaderSize-8-4)
		m := (&wire.Msg{Type: wire.MsgPreinit, Seq: 1, ClusterName: name}).Set(wire.OptSeq).Set(wire.OptClusterName)
		require.Equal(t, 32768, m.Len())
		c.send(m)
		r, _ := c.read()
		require.Equal(t, wire.MsgPreinitReply, r.Type)
	})
}

func TestSessionOrderErrors(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		c := dial(t, start(t, nil))
		n := client.NewNode(client.Settings{Cluster: "c", NodeID: 1, Algorithm: wire.AlgoFFSplit,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000})
		// INIT before PREINIT: INIT_REPLY 6.
		c.send(n.Init(wire.RingID{NodeID: 1, Seq: 1}))
		m, _ := c.read()
		require.Equal(t, wire.MsgInitReply, m.Type)
		require.Equal(t, wire.ErrPreinitRequired, m.ReplyErrorCode)
		// Heartbeat out of range overwrites "preinit required" (fact 13).
		n.Heartbeat = 10
		c.send(n.Init(wire.RingID{NodeID: 1, Seq: 1}))
		m, _ = c.read()
		require.Equal(t, wire.ErrInvalidHeartbeatInterval, m.ReplyErrorCode)
		// STARTTLS before PREINIT: SERVER_ERROR 6.
		st := n.StartTLS()
		c.send(st)
		c.expectError(wire.ErrPreinitRequired, &st.Seq)
		// ECHO before INIT: 11.
		e := n.Echo()
		c.send(e)
		c.expectError(wire.ErrInitRequired, &e.Seq)
	})
}

func TestStartTLSWithTLSOffDisconnects(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		c := dial(t, start(t, nil))
		n := client.NewNode(client.Settings{Cluster: "c"})
		c.send(n.Preinit())
		c.read()
		c.send(n.StartTLS())
		c.expectClosed()
	})
}

func TestTLSRequiredGatesMessages(t *testing.T) {
	// Fact 14: without TLS every gated message gets SERVER_ERROR 3 and the
	// connection stays.
	c := dial(t, start(t, func(c *server.Config) { c.Engine.TLS = wire.TLSRequired }))
	n := client.NewNode(client.Settings{Cluster: "c", NodeID: 1, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000})
	c.send(n.Preinit())
	m, _ := c.read()
	require.Equal(t, wire.TLSRequired, m.TLSSupported)
	in := n.Init(wire.RingID{NodeID: 1, Seq: 1})
	c.send(in)
	c.expectError(wire.ErrTLSRequired, &in.Seq)
	e := n.Echo()
	c.send(e)
	c.expectError(wire.ErrTLSRequired, &e.Seq)
}

func TestEchoIsAByteCopy(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		c := dial(t, start(t, nil))
		c.initNode("c", 1, 8000)
		// An echo request padded with 5000 unknown empty options (fact 9).
		body := mustHex("0000000400000007")
		for i := 0; i < 5000; i++ {
			body = append(body, 0x03, 0xe7, 0, 0)
		}
		req := append(mustHex("0008"), 0, 0, 0, 0)
		req[2], req[3], req[4], req[5] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
		req = append(req, body...)
		c.write(req)
		_, raw := c.read()
		require.Len(t, raw, 20014)
		require.Equal(t, byte(wire.MsgEchoReply), raw[1])
		require.Equal(t, req[2:], raw[2:])
	})
}

func TestSecondInitCollidesWithItself(t *testing.T) {
	c := dial(t, start(t, nil))
	n := c.initNode("c", 1, 8000)
	c.send(n.Init(wire.RingID{NodeID: 1, Seq: 4}))
	m, _ := c.read()
	require.Equal(t, wire.ErrDuplicateNodeID, m.ReplyErrorCode)
}

func TestDeadPeerDetection(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		srv := start(t, func(c *server.Config) { c.Engine.HeartbeatMin = 100 })
		c := dial(t, srv)
		c.initNode("c", 1, 200)
		begin := time.Now()
		// Skipped messages are no sign of life: they must not delay DPD.
		c.write(mustHex("0063" + "00000000"))
		c.expectError(wire.ErrNoError, nil)
		c.expectClosed()
		// 1.5 x 200 ms after the last complete message.
		require.GreaterOrEqual(t, time.Since(begin), 300*time.Millisecond)
	})
}

func TestMaxClients(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		srv := start(t, func(c *server.Config) { c.MaxClients = 2 })
		a, b := dial(t, srv), dial(t, srv)
		n := client.NewNode(client.Settings{Cluster: "c"})
		for _, c := range []*rawClient{a, b} {
			c.send(n.Preinit())
			c.read()
		}
		third := dial(t, srv)
		third.expectClosed()
		// A slot frees up when a client leaves.
		a.nc.Close()
		require.Eventually(t, func() bool { return srv.NumConnections() == 1 }, 5*time.Second, 5*time.Millisecond)
		d := dial(t, srv)
		d.send(n.Preinit())
		m, _ := d.read()
		require.Equal(t, wire.MsgPreinitReply, m.Type)
	})
}

func TestClientThatNeverReadsIsDropped(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		srv := start(t, nil)
		c := dial(t, srv)
		c.initNode("c", 1, 8000)
		// 32 KB echo requests, never reading the replies: once the kernel
		// buffers and the 32-message queue are full the server drops us.
		body := mustHex("0000000400000001")
		pad := make([]byte, 32768-wire.HeaderSize-len(body)-4)
		body = append(body, 0x03, 0xe7, byte(len(pad)>>8), byte(len(pad)))
		body = append(body, pad...)
		req := append([]byte{0, 8, 0, 0, byte(len(body) >> 8), byte(len(body))}, body...)
		_ = c.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
		var err error
		for i := 0; i < 20000 && err == nil; i++ {
			_, err = c.nc.Write(req)
		}
		require.Error(t, err, "server kept a client that never reads")
		require.False(t, isTimeout(err), "write blocked instead of the server closing: %v", err)
		// Other clients are still served.
		d := dial(t, srv)
		d.initNode("c2", 1, 8000)
	})
}

func TestHalfCloseAfterPreinit(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		srv := start(t, nil)
		c := dial(t, srv)
		n := client.NewNode(client.Settings{Cluster: "c"})
		c.send(n.Preinit())
		require.NoError(t, c.nc.(*net.TCPConn).CloseWrite())
		// Whatever was queued, the connection ends and the server forgets it.
		_, _ = io.Copy(io.Discard, c.br)
		require.Eventually(t, func() bool { return srv.NumConnections() == 0 }, 5*time.Second, 5*time.Millisecond)
	})
}

func TestShutdownClosesClientsAndLeaksNoGoroutines(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		before := runtime.NumGoroutine()
		cfg := server.DefaultConfig()
		cfg.Host, cfg.Port, cfg.Log = "127.0.0.1", 0, zerolog.Nop()
		cfg.Engine.TLS = wire.TLSUnsupported
		cfg.NoEpoll = strings.HasSuffix(t.Name(), "/goroutines")
		srv := server.New(cfg)
		ln, err := srv.Listen()
		require.NoError(t, err)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		var conns []*rawClient
		for i := 0; i < 20; i++ {
			c := dial(t, srv)
			c.initNode("c", uint32(i+1), 8000)
			conns = append(conns, c)
		}
		srv.Shutdown()
		require.NoError(t, <-served)
		for _, c := range conns {
			c.expectClosed()
		}
		// Not require.Eventually: it runs its condition in a goroutine of its own.
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			runtime.Gosched()
			time.Sleep(time.Millisecond) // goroutines end on their own schedule; there is nothing to wait on
		}
		if runtime.NumGoroutine() > before {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: before %d, now %d\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
	})
}

func TestBusyServerCollectsMoreOftenAndReturnsMemoryWhenClientsLeave(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		defer debug.SetGCPercent(debug.SetGCPercent(100))
		logs := &syncBuffer{}
		srv := start(t, func(c *server.Config) {
			c.Log = zerolog.New(logs).Level(zerolog.DebugLevel)
			c.BusyGCPercent = 40
		})
		var conns []net.Conn
		// From many addresses, as from many nodes: one address may hold
		// only a few connections before INIT.
		from := client.Loopback(server.BusyClients)
		for i := 0; i < server.BusyClients; i++ {
			d := net.Dialer{LocalAddr: from(i)}
			nc, err := d.Dial("tcp", srv.Addr().String())
			require.NoError(t, err)
			conns = append(conns, nc)
		}
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), "garbage collection keeps less garbage") }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, 40, debug.SetGCPercent(100), "the busy server's GC percent")
		require.NotContains(t, logs.String(), "memory returned")
		for _, nc := range conns {
			nc.Close()
		}
		require.Eventually(t, func() bool {
			return strings.Contains(logs.String(), "many clients left; memory returned to the system")
		}, 10*time.Second, 5*time.Millisecond)
		if !strings.HasSuffix(t.Name(), "/goroutines") {
			// The epoll loop's descriptor table shrank with them.
			assert.Less(t, srv.FDTableLen(), server.BusyClients/2)
		}
	})
}

// A client that reads its replies late still gets every one, whole and in
// order: what its socket did not take waits in the server (the epoll loop
// watches the socket for room, the goroutine mode has a writer) as long
// as fewer than SendBuffers messages wait.
func TestSlowReaderGetsEveryReply(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		// More replies than the kernel's socket buffers hold (up to 4 MB
		// on the sending side), fewer than the queue holds.
		const n = 240
		srv := start(t, func(c *server.Config) { c.SendBuffers = n + 1 })
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			// A small receive window, so that the server's writes stop
			// short long before its queue is full.
			return rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		nc, err := d.Dial("tcp", srv.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
		c.initNode("c", 1, 8000)
		var sent [][]byte
		for i := 0; i < n; i++ {
			body := mustHex("00000004")
			body = append(body, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
			pad := make([]byte, 32000)
			for j := range pad {
				pad[j] = byte(i + j)
			}
			body = append(body, 0x03, 0xe7, byte(len(pad)>>8), byte(len(pad)))
			body = append(body, pad...)
			req := append([]byte{0, 8, 0, 0, byte(len(body) >> 8), byte(len(body))}, body...)
			c.write(req)
			sent = append(sent, req)
		}
		for i := 0; i < n; i++ {
			_, raw := c.read()
			require.Equal(t, byte(wire.MsgEchoReply), raw[1])
			require.Equal(t, sent[i][2:], raw[2:], "reply %d", i)
		}
		// Still served afterwards.
		c.send(client.NewNode(client.Settings{Cluster: "c", NodeID: 1}).Echo())
		m, _ := c.read()
		require.Equal(t, wire.MsgEchoReply, m.Type)
	})
}

// lineRecorder keeps each write it gets.
type lineRecorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *lineRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *lineRecorder) find(s string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.writes {
		if strings.Contains(w, s) {
			return w, true
		}
	}
	return "", false
}

// What the engine logs for one decision reaches the log's output in one
// write when the log has a batching writer: the decision and the node's
// new vote together.
func TestADecisionIsLoggedInOneWrite(t *testing.T) {
	inBothModes(t, func(t *testing.T) {
		rec := &lineRecorder{}
		batch := logbatch.New(rec)
		srv := start(t, func(c *server.Config) {
			c.Log = zerolog.New(batch).Level(zerolog.InfoLevel)
			c.LogBatch = batch
		})
		c := dial(t, srv)
		n := c.initNode("c", 1, 8000)
		nodes := []wire.NodeInfo{{NodeID: 1, State: wire.NodeStateMember}, {NodeID: 2, State: wire.NodeStateMember}}
		c.send(n.Config(nodes, true, nil))
		m, _ := c.read()
		require.Equal(t, wire.MsgNodeListReply, m.Type)
		c.send(n.Membership(wire.RingID{NodeID: 1, Seq: 8}, nodes[:1], wire.HeuristicsUndefined))
		for n.Vote() != client.Ack {
			m, _ = c.read()
			n.Handle(m)
		}
		// The lines go out when the server is done with the event, after
		// it sent the vote: an echo's answer comes after that.
		c.send(n.Echo())
		for m.Type != wire.MsgEchoReply {
			m, _ = c.read()
		}
		w, ok := rec.find("ffsplit decision")
		require.True(t, ok, "the decision is logged")
		assert.Contains(t, w, "node gets the qdevice vote", "the vote is in the decision's write")
		assert.Equal(t, 2, strings.Count(w, "\n"), "one write, two lines: %q", w)
	})
}
