package bench

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// StormResult is one connection storm against one server.
type StormResult struct {
	Server    string        `json:"server"`
	Clients   int           `json:"clients"`
	TLS       bool          `json:"tls"`
	Connected int           `json:"connected"`
	Failed    int           `json:"failed"`
	AllIn     time.Duration `json:"all_in_ns"` // until the last client's INIT_REPLY
	P50, P99  time.Duration `json:"-"`
	Retries   int           `json:"retries"`
	FirstErr  string        `json:"first_error,omitempty"`
}

// retryPause is how long a storm client waits before reconnecting after a
// failed attempt; corosync-qdevice waits a random time below a few seconds.
const retryPause = time.Second

// attemptTimeout bounds one connection attempt, like corosync-qdevice's
// connect timeout (0.8 x quorum.device.timeout = 8 s by default).
const attemptTimeout = 8 * time.Second

// Storm connects n clients at once (TCP, PREINIT, STARTTLS when the server
// has TLS, INIT) and measures how long until every one is initialised.
// Client certificates are made before the clock starts.
func Storm(s *Server, n int, timeout time.Duration) (StormResult, error) {
	res := StormResult{Server: s.Name, Clients: n, TLS: s.ClientTLS != nil}
	cfgs := make([]*tls.Config, n)
	if s.ClientTLS != nil {
		// One certificate per cluster; 2 nodes per cluster.
		for i := 0; i < n; i += 2 {
			cfg, err := s.ClientTLS(fmt.Sprintf("storm%d", i/2))
			if err != nil {
				return res, err
			}
			cfgs[i] = cfg
			if i+1 < n {
				cfgs[i+1] = cfg
			}
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []*client.Conn // kept open until every client is in, as in a real storm
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Each client from a loopback address of its own, as from n hosts.
	var from func(int) *net.TCPAddr
	if client.OnLoopback(s.Addr) {
		from = client.Loopback(n)
	}
	times := make([]time.Duration, 0, n)
	startGate := make(chan struct{})
	begin := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			node := client.NewNode(client.Settings{Cluster: fmt.Sprintf("storm%d", i/2), NodeID: uint32(i%2 + 1),
				Algorithm: wire.AlgoFFSplit, TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
			<-startGate
			var c *client.Conn
			var err error
			retries := 0
			for {
				node = client.NewNode(node.Settings)
				deadline := time.Now().Add(attemptTimeout)
				if end := begin.Add(timeout); end.Before(deadline) {
					deadline = end
				}
				d := &net.Dialer{Timeout: time.Until(deadline)}
				if from != nil {
					d.LocalAddr = from(i)
				}
				c, err = client.DialWith(d, s.Addr, node)
				if err == nil {
					_ = c.NetConn().SetDeadline(deadline)
					err = c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, cfgs[i])
				}
				if err == nil || time.Until(begin.Add(timeout)) < retryPause {
					break
				}
				if c != nil {
					c.Close()
					c = nil
				}
				retries++
				time.Sleep(retryPause) // the real client's reconnect pause
			}
			mu.Lock()
			res.Retries += retries
			defer mu.Unlock()
			if c != nil {
				_ = c.NetConn().SetDeadline(time.Time{})
				conns = append(conns, c)
			}
			if err != nil {
				res.Failed++
				if res.FirstErr == "" || os.Getenv("QNETD_BENCH_DEBUG") != "" {
					res.FirstErr = fmt.Sprintf("client %d: %v", i, err)
					if os.Getenv("QNETD_BENCH_DEBUG") != "" {
						fmt.Fprintln(os.Stderr, res.FirstErr)
					}
				}
				return
			}
			res.Connected++
			times = append(times, time.Since(begin))
		}(i)
	}
	begin = time.Now()
	close(startGate)
	wg.Wait()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	if len(times) > 0 {
		res.AllIn = times[len(times)-1]
		res.P50 = times[len(times)/2]
		res.P99 = times[len(times)*99/100]
	}
	return res, nil
}
