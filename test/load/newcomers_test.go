package load_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
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

			begin := time.Now()
			conns := openIdle(t, addr, idle, tc.addrs)
			opened := time.Since(begin)
			held := srv.NumConnections()
			require.LessOrEqual(t, held, tc.held)

			// A node (the system's address, 127.0.0.1) reconnects now.
			t0 := time.Now()
			c, n := tlsNode(t, addr, nodeTLS)
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
				conns[i] = nil // not part of the server's heap
			}
			checkBaseline(t, srv, base)
		})
	}
}

// openIdle opens n connections to addr from addrs loopback addresses
// (32 at a time) that send nothing; they are closed when the test ends.
func openIdle(t *testing.T, addr string, n, addrs int) []net.Conn {
	t.Helper()
	from := client.Loopback(addrs)
	conns := make([]net.Conn, n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
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
	t.Cleanup(func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	})
	require.Zero(t, failed.Load(), "connections not even accepted by the kernel")
	return conns
}

// tlsNode connects node 1 of cluster pve from 127.0.0.1 and completes
// PREINIT, STARTTLS, the TLS handshake, INIT and SET_OPTION.
func tlsNode(t *testing.T, addr string, cfg *tls.Config) (*client.Conn, *client.Node) {
	t.Helper()
	n := client.NewNode(client.Settings{Cluster: "pve", NodeID: 1, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
	c, err := client.Dial(addr, n, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
	require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, cfg))
	return c, n
}

// TestFloodAtUpstreamsOpenFileLimit: our binary with the open-file limit
// upstream's packaging leaves (1024) and 2,000 idle connections from 300
// addresses, more than the limit. The connections before INIT take at
// most half of what is left after the reserve, a TLS node completes INIT,
// and the local socket still answers corosync-qnetd-tool (as the pairing
// endpoint and /health would in the add-on). Without the limits every
// descriptor goes to the flood and nothing else is accepted.
func TestFloodAtUpstreamsOpenFileLimit(t *testing.T) {
	const limit, idle = 1024, 2000
	s, err := bench.StartOursWith(ourBinary(t), bench.Options{TLS: true, OpenFiles: limit})
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	pid := s.PID()
	fds0, err := bench.CountFDs(pid)
	require.NoError(t, err)
	nodeTLS, err := s.ClientTLS("pve")
	require.NoError(t, err)

	openIdle(t, s.Addr, idle, 300)
	t0 := time.Now()
	tlsNode(t, s.Addr, nodeTLS)
	took := time.Since(t0)
	require.Less(t, took, 3*time.Second, "INIT under the flood")
	fds, err := bench.CountFDs(pid)
	require.NoError(t, err)
	budget := limit - server.DefaultFDReserve
	require.LessOrEqual(t, fds-fds0, budget/2+1, "descriptors taken by the flood and the node")

	var out, errb bytes.Buffer
	sock := filepath.Join(s.Dir, fmt.Sprintf("qnetd-%d.sock", s.Port))
	require.Equal(t, 0, adminipc.ToolMain([]string{"-s", "-p", sock}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "Connected clients:")
	exited, xerr := s.Exited()
	require.False(t, exited, "server exited: %v", xerr)
	t.Logf("%d idle connections against a limit of %d open files: the server holds %d descriptors (%d at start); INIT with TLS took %s",
		idle, limit, fds, fds0, took.Round(100*time.Microsecond))
}
