package load_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/bench"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// wellBehaved is the fleet every fault test keeps running: short
// heartbeats, so that a server that stalls for a moment is caught.
func wellBehaved(t *testing.T, addr, prefix string, clusters int) *bench.Fleet {
	t.Helper()
	f := fleet(t, bench.FleetConfig{Addr: addr, Prefix: prefix, Clusters: clusters, Nodes: 2, Heartbeat: time.Second})
	_, err := f.WaitAllAcked(30 * time.Second)
	require.NoError(t, err)
	return f
}

func preinit(cluster string) []byte {
	return client.NewNode(client.Settings{Cluster: cluster}).Preinit().Append(nil)
}

// TestConnectionFloodBeyondMaxClients: with -m 100 and 60 nodes in,
// 200 flooders open connections as fast as they can for 5 s. The server
// never holds more than 100 clients, closes the excess at once, keeps
// serving the nodes within their heartbeat (and deciding), and after the
// flood has room for new clusters; nothing is left behind.
func TestConnectionFloodBeyondMaxClients(t *testing.T) {
	const maxClients = 100
	srv, addr := inProcess(t, func(c *server.Config) { c.MaxClients = maxClients })
	base := takeBaseline(t)
	good := wellBehaved(t, addr, "good", 30)

	var (
		stop              = make(chan struct{})
		wg                sync.WaitGroup
		answered, refused atomic.Int64
		mu                sync.Mutex
		held              []net.Conn // flooders the server let in
		over              atomic.Bool
	)
	// Each flooder from an address of its own: this is about -m, not
	// about the limit on connections from one address before INIT.
	from := client.Loopback(200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := preinit("flood")
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: from(i)}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if srv.NumConnections() > maxClients {
					over.Store(true)
				}
				nc, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = nc.Write(msg)
				if _, _, err := client.ReadMsg(bufio.NewReader(nc)); err == nil {
					answered.Add(1)
					mu.Lock()
					held = append(held, nc)
					mu.Unlock()
					continue
				}
				refused.Add(1)
				nc.Close()
			}
		}()
	}
	n := splitsFor(t, good, 20, 5*time.Second)
	close(stop)
	wg.Wait()
	require.False(t, over.Load(), "more than %d clients at once", maxClients)
	require.LessOrEqual(t, answered.Load(), int64(maxClients-good.Total()), "flooders let in beyond the limit")
	require.Greater(t, refused.Load(), int64(1000), "the flood did not reach the limit")
	requireServed(t, good)
	t.Logf("flood: %d connections closed at once, %d let in; %d decisions meanwhile", refused.Load(), answered.Load(), n)

	mu.Lock()
	for _, c := range held {
		c.Close()
	}
	mu.Unlock()
	require.Eventually(t, func() bool { return srv.NumConnections() == good.Total() }, 10*time.Second, 10*time.Millisecond)
	late := wellBehaved(t, addr, "late", maxClients/2-good.Total()/2)
	requireServed(t, late)
	late.Close()
	good.Close()
	checkBaseline(t, srv, base)
}

// TestSlowloris: 500 connections send a PREINIT one byte at a time, one
// byte every 150 ms. The well-behaved nodes are served within their
// heartbeat meanwhile; each slow client gets its PREINIT_REPLY in the
// end; nothing is left behind.
func TestSlowloris(t *testing.T) {
	srv, addr := inProcess(t, nil)
	base := takeBaseline(t)
	good := wellBehaved(t, addr, "good", 30)

	const slow = 500
	msg := preinit("slowloris")
	conns := make([]net.Conn, 0, slow)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	from := client.Loopback(slow) // as from as many hosts
	for i := 0; i < slow; i++ {
		d := net.Dialer{LocalAddr: from(i)}
		nc, err := d.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, nc)
	}
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		for i := range msg {
			<-tick.C
			for _, c := range conns {
				if _, err := c.Write(msg[i : i+1]); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	n := splitsFor(t, good, 20, time.Duration(len(msg))*150*time.Millisecond)
	require.NoError(t, <-done, "a slow client was dropped before its message was complete")
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, _, err := client.ReadMsg(c)
		require.NoError(t, err)
		require.Equal(t, wire.MsgPreinitReply, m.Type)
	}
	requireServed(t, good)
	t.Logf("%d slow clients, %d bytes each; %d decisions meanwhile, slowest echo %s", slow, len(msg), n, good.MaxEchoRTT())
	for _, c := range conns {
		c.Close()
	}
	good.Close()
	checkBaseline(t, srv, base)
}

// echoFlood is an ECHO_REQUEST of about 32 kB: qnetd sends it back whole.
func echoFlood(seq uint32) []byte {
	const pad = 32000
	b := make([]byte, 0, wire.HeaderSize+8+4+pad)
	b = binary.BigEndian.AppendUint16(b, uint16(wire.MsgEchoRequest))
	b = binary.BigEndian.AppendUint32(b, 8+4+pad)
	b = binary.BigEndian.AppendUint16(b, uint16(wire.OptSeq))
	b = binary.BigEndian.AppendUint16(b, 4)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint16(b, 0x7ff0) // unknown option: skipped, echoed
	b = binary.BigEndian.AppendUint16(b, pad)
	return append(b, make([]byte, pad)...)
}

// TestClientsThatNeverRead: 20 clients INIT, then send 32 kB echo requests
// and never read the replies. The server's queue for each fills up and it
// disconnects them (their writes fail), while the well-behaved nodes are
// served within their heartbeat; nothing is left behind.
func TestClientsThatNeverRead(t *testing.T) {
	srv, addr := inProcess(t, nil)
	base := takeBaseline(t)
	good := wellBehaved(t, addr, "good", 20)

	const bad = 20
	var wg sync.WaitGroup
	errs := make(chan error, bad)
	sent := make(chan int, bad)
	for i := 0; i < bad; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := client.NewNode(client.Settings{Cluster: "deaf", NodeID: uint32(i + 1), Algorithm: wire.AlgoFFSplit,
				TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
			c, err := client.Dial(addr, n, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Handshake(wire.RingID{NodeID: 1, Seq: 1}, nil); err != nil {
				errs <- err
				return
			}
			for seq := uint32(1); ; seq++ {
				_ = c.NetConn().SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.NetConn().Write(echoFlood(seq)); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						errs <- errors.New("the server neither read nor closed the connection")
						return
					}
					sent <- int(seq)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var decisions int
	var splitsDone sync.WaitGroup
	splitsDone.Add(1)
	go func() {
		defer splitsDone.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			lat, e, _, _ := bench.RunSplits(good, nil, 20, time.Second)
			decisions += len(lat)
			if len(e) > 0 {
				errs <- e[0]
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	splitsDone.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	close(sent)
	minSent, maxSent := 1<<30, 0
	for n := range sent {
		minSent, maxSent = min(minSent, n), max(maxSent, n)
	}
	requireServed(t, good)
	t.Logf("%d deaf clients disconnected after %d..%d echo requests of 32 kB; %d decisions meanwhile", bad, minSent, maxSent, decisions)
	good.Close()
	checkBaseline(t, srv, base)
}
