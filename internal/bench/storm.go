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
	cfgs, err := stormTLS(s, n)
	if err != nil {
		return res, err
	}
	st := &storm{s: s, timeout: timeout, cfgs: cfgs, res: &res, times: make([]time.Duration, 0, n)}
	defer st.closeAll()
	// Each client from a loopback address of its own, as from n hosts.
	if client.OnLoopback(s.Addr) {
		st.from = client.Loopback(n)
	}
	st.run(n)
	res.setTimes(st.times)
	return res, nil
}

// stormTLS makes the storm's client TLS configurations, one certificate
// per cluster of 2 nodes; all nil when the server has no TLS.
func stormTLS(s *Server, n int) ([]*tls.Config, error) {
	cfgs := make([]*tls.Config, n)
	if s.ClientTLS == nil {
		return cfgs, nil
	}
	for i := 0; i < n; i += 2 {
		cfg, err := s.ClientTLS(fmt.Sprintf("storm%d", i/2))
		if err != nil {
			return nil, err
		}
		cfgs[i] = cfg
		if i+1 < n {
			cfgs[i+1] = cfg
		}
	}
	return cfgs, nil
}

// storm is one connection storm in progress.
type storm struct {
	s       *Server
	timeout time.Duration
	cfgs    []*tls.Config          // per client
	from    func(int) *net.TCPAddr // the client's source address; nil: any
	begin   time.Time              // set before the clients start

	mu    sync.Mutex
	res   *StormResult
	conns []*client.Conn // kept open until every client is in, as in a real storm
	times []time.Duration
}

// run starts n clients, lets them all go at once and waits for them.
func (st *storm) run(n int) {
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			settings := client.Settings{Cluster: fmt.Sprintf("storm%d", i/2), NodeID: uint32(i%2 + 1),
				Algorithm: wire.AlgoFFSplit, TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true}
			<-startGate
			c, retries, err := st.connect(i, settings)
			st.record(i, c, retries, err)
		}(i)
	}
	st.begin = time.Now()
	close(startGate)
	wg.Wait()
}

// connect brings client i in, trying again after retryPause as the real
// client does until an attempt succeeds or the storm's time is nearly up.
// It returns the connection of the last attempt (also a failed one's, to
// be closed with the others), the number of retries and the last error.
func (st *storm) connect(i int, settings client.Settings) (*client.Conn, int, error) {
	retries := 0
	for {
		c, err := st.attempt(i, settings)
		if err == nil || time.Until(st.begin.Add(st.timeout)) < retryPause {
			return c, retries, err
		}
		if c != nil {
			c.Close()
		}
		retries++
		time.Sleep(retryPause) // the real client's reconnect pause
	}
}

// attempt is one connection attempt of client i as a fresh node: dial and
// handshake, bounded by attemptTimeout and the end of the storm.
func (st *storm) attempt(i int, settings client.Settings) (*client.Conn, error) {
	deadline := time.Now().Add(attemptTimeout)
	if end := st.begin.Add(st.timeout); end.Before(deadline) {
		deadline = end
	}
	d := &net.Dialer{Timeout: time.Until(deadline)}
	if st.from != nil {
		d.LocalAddr = st.from(i)
	}
	c, err := client.DialWith(d, st.s.Addr, client.NewNode(settings))
	if err != nil {
		return c, err
	}
	_ = c.NetConn().SetDeadline(deadline)
	return c, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, st.cfgs[i])
}

// record counts client i's outcome and keeps its connection open.
func (st *storm) record(i int, c *client.Conn, retries int, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.res.Retries += retries
	if c != nil {
		_ = c.NetConn().SetDeadline(time.Time{})
		st.conns = append(st.conns, c)
	}
	if err != nil {
		st.res.Failed++
		st.noteErr(i, err)
		return
	}
	st.res.Connected++
	st.times = append(st.times, time.Since(st.begin))
}

// noteErr keeps the first client error, or with QNETD_BENCH_DEBUG set
// the latest one and prints every one; the caller holds st.mu.
func (st *storm) noteErr(i int, err error) {
	debug := os.Getenv("QNETD_BENCH_DEBUG") != ""
	if st.res.FirstErr != "" && !debug {
		return
	}
	st.res.FirstErr = fmt.Sprintf("client %d: %v", i, err)
	if debug {
		fmt.Fprintln(os.Stderr, st.res.FirstErr)
	}
}

// closeAll closes the clients' connections.
func (st *storm) closeAll() {
	for _, c := range st.conns {
		c.Close()
	}
}

// setTimes sets the times until the last, the median and the 99th
// percentile client was in from the clients' times, which it sorts.
func (r *StormResult) setTimes(times []time.Duration) {
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	if len(times) > 0 {
		r.AllIn = times[len(times)-1]
		r.P50 = times[len(times)/2]
		r.P99 = times[len(times)*99/100]
	}
}
