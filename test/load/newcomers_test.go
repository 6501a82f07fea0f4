package load_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/bench"
	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestIdleFloodBeforeInit: 6,000 connections that never send a byte,
// from one address and then from 300 loopback addresses, are held open
// against a server with TLS and the default limits on connections before
// INIT. The server keeps at most its limits of them (32 per address, 4,096
// in all), a node arriving from its own address meanwhile completes
// PREINIT, STARTTLS, the TLS handshake and INIT at once, and the INIT
// timeout closes every idle connection while the node stays; nothing is
// left behind.
func TestIdleFloodBeforeInit(t *testing.T) {
	const idle = 6000
	if need := uint64(2*idle + 500); fdLimit() < need {
		t.Skipf("open file limit %d, need %d", fdLimit(), need)
	}
	for _, tc := range []struct {
		name  string
		addrs int
		held  int // at most, by the server
	}{
		{"one address", 1, server.DefaultMaxNewcomersPerSource},
		{"300 addresses", 300, server.DefaultMaxNewcomers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Shorter than the default (20 s) only to keep the test short.
			const initTimeout = 5 * time.Second
			ca, err := pki.Init(t.TempDir(), time.Now())
			require.NoError(t, err)
			srv, addr := inProcess(t, func(c *server.Config) {
				c.Engine.TLS, c.Engine.ClientCertRequired, c.TLS = wire.TLSSupportedOn, true, ca.TLSConfig(true)
				c.InitTimeout = initTimeout
			})
			nodeTLS, err := bench.GoSignedClient(ca, "pve")
			require.NoError(t, err)
			base := takeBaseline(t)

			from := client.Loopback(tc.addrs)
			conns := make([]net.Conn, idle)
			var next atomic.Int64
			var failed atomic.Int64
			var wg sync.WaitGroup
			begin := time.Now()
			for w := 0; w < 32; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := int(next.Add(1)) - 1; i < idle; i = int(next.Add(1)) - 1 {
						d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: from(i)}
						nc, err := d.Dial("tcp", addr)
						if err != nil {
							failed.Add(1)
							continue
						}
						conns[i] = nc
					}
				}()
			}
			wg.Wait()
			opened := time.Since(begin)
			defer func() {
				for _, nc := range conns {
					if nc != nil {
						nc.Close()
					}
				}
			}()
			require.Zero(t, failed.Load(), "connections not even accepted by the kernel")
			held := srv.NumConnections()
			require.LessOrEqual(t, held, tc.held)

			// A node (the system's address, 127.0.0.1) reconnects now.
			t0 := time.Now()
			n := client.NewNode(client.Settings{Cluster: "pve", NodeID: 1, Algorithm: wire.AlgoFFSplit,
				TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
			c, err := client.Dial(addr, n, 5*time.Second)
			require.NoError(t, err)
			defer c.Close()
			_ = c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
			require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nodeTLS))
			took := time.Since(t0)
			require.Less(t, took, 3*time.Second, "INIT under the flood")
			require.LessOrEqual(t, srv.NumConnections(), tc.held+1)

			// The INIT timeout closes the flood; the node stays.
			require.Eventually(t, func() bool { return srv.NumConnections() == 1 }, initTimeout+10*time.Second, 10*time.Millisecond,
				"%d connections left", srv.NumConnections())
			_ = c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
			require.NoError(t, c.Write(n.Echo()))
			for {
				r, _, err := c.ReadMsg()
				require.NoError(t, err)
				if r.Type == wire.MsgEchoReply {
					break
				}
			}
			t.Logf("%d idle connections from %d address(es) opened in %s, %d held by the server; INIT with TLS under the flood took %s",
				idle, tc.addrs, opened.Round(time.Millisecond), held, took.Round(100*time.Microsecond))

			c.Close()
			for i, nc := range conns {
				nc.Close()
				conns[i] = nil
			}
			checkBaseline(t, srv, base)
		})
	}
}
