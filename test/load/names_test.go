package load_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/bench"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

var (
	namesSessions = flag.Int("names.sessions", 20000, "sessions of TestNewNamesMemory, each under a new cluster name")
	namesLength   = flag.Int("names.length", 1000, "bytes of each cluster name in TestNewNamesMemory")
)

// addonStarted is the daemon's start line with the qnetd and status page
// addresses.
var addonStarted = regexp.MustCompile(`corosync-qnetd started .*\baddr=(\S+).*\bstatus_page=(\S+)`)

// entityCount stands in for the Supervisor's proxy to Home Assistant: it
// keeps the last state posted to each entity.
type entityCount struct {
	mu    sync.Mutex
	last  map[string]string
	posts atomic.Int64
}

func (e *entityCount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var st struct {
		State string `json:"state"`
	}
	_ = json.NewDecoder(r.Body).Decode(&st)
	e.posts.Add(1)
	e.mu.Lock()
	e.last[r.URL.Path] = st.State
	e.mu.Unlock()
}

// live is the number of entities whose last state is not "no vote, no
// nodes".
func (e *entityCount) live() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, st := range e.last {
		if st != "off" && st != "0" {
			n++
		}
	}
	return n
}

// addonDaemon is "qnetd addon run" with TLS off and Home Assistant's API
// pointed at ha, on free loopback ports.
type addonDaemon struct {
	cmd  *exec.Cmd
	addr string        // qnetd
	web  string        // status page
	done chan struct{} // closed once the process has exited
}

func startAddon(t *testing.T, ha string) *addonDaemon {
	t.Helper()
	dir := t.TempDir()
	opts := filepath.Join(dir, "options.json")
	require.NoError(t, os.WriteFile(opts,
		[]byte(`{"port":5403,"log_level":"info","tls_enabled":false,"pairing_enabled":false,"pairing_port":22,"authorized_keys":[]}`), 0o644))
	cmd := exec.Command(ourBinary(t), "addon", "run")
	cmd.Env = append(os.Environ(),
		"QNETD_ADDON_OPTIONS="+opts,
		"QNETD_ADDON_DATA="+filepath.Join(dir, "data"),
		"QNETD_ADDON_CONFIG="+filepath.Join(dir, "config"),
		"QNETD_ADDON_RUN="+filepath.Join(dir, "run"),
		"QNETD_ADDON_USER=qnetd-load-no-such-user",
		"QNETD_ADDON_LISTEN=127.0.0.1:0",
		"QNETD_ADDON_INGRESS_ADDR=127.0.0.1:0",
		"SUPERVISOR_TOKEN=load-test",
		"QNETD_ADDON_HA_API="+ha,
	)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	d := &addonDaemon{cmd: cmd, done: make(chan struct{})}
	var waitErr error
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-d.done
		}
	})
	started := make(chan []string, 1)
	var head strings.Builder // the log up to the start line, for errors
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := addonStarted.FindStringSubmatch(sc.Text()); m != nil {
				started <- m
				break
			}
			head.WriteString(sc.Text() + "\n")
		}
		// The rest of the log (a line or two per session) is not needed.
		_, _ = io.Copy(io.Discard, stderr)
		waitErr = cmd.Wait()
		close(d.done)
	}()
	select {
	case m := <-started:
		d.addr, d.web = m[1], m[2]
	case <-d.done:
		t.Fatalf("the daemon exited (%v):\n%s", waitErr, head.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not start")
	}
	return d
}

// status reads the status page's JSON.
func (d *addonDaemon) status() (clients, clusters, history int, err error) {
	resp, err := http.Get("http://" + d.web + "/api/status")
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Server struct {
			ConnectedClients int `json:"connected_clients"`
		} `json:"server"`
		Clusters []json.RawMessage `json:"clusters"`
		History  []json.RawMessage `json:"history"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, 0, 0, err
	}
	return v.Server.ConnectedClients, len(v.Clusters), len(v.History), nil
}

// sourceAddr is the i-th loopback source address: sessions come from many
// addresses, as a limit per source address on connections that have not
// completed INIT would refuse one address that opens them all.
func sourceAddr(i int) net.IP {
	return net.IPv4(127, byte(1+i/(254*254)%254), byte(1+i/254%254), byte(1+i%254))
}

// newNameSession connects from src, joins a one-node cluster called name,
// gets its vote and leaves.
func newNameSession(addr string, src net.IP, name string) error {
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
	nc, err := dialer.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial from %s: %w", src, err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	n := client.NewNode(client.Settings{Cluster: name, NodeID: 1, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
	c := client.NewConn(nc, n)
	ring := wire.RingID{NodeID: 1, Seq: 4}
	nodes := []wire.NodeInfo{{NodeID: 1}}
	if err := c.Handshake(ring, nil); err != nil {
		return err
	}
	if _, err := c.Call(n.Config(nodes, true, nil)); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if _, err := c.Call(n.Membership(ring, nodes, wire.HeuristicsUndefined)); err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	if n.Vote() != client.Ack {
		return fmt.Errorf("no vote: %s", n.Vote())
	}
	return nil
}

// TestNewNamesMemory (only with -soak) measures what clients that come
// and go under new cluster names cost: the add-on's daemon ("qnetd addon run", status page, history and
// Home Assistant entities; TLS off, so anyone may make up a cluster)
// serves -names.sessions short sessions (20,000), each from its own
// loopback address under a new cluster name of -names.length bytes that
// gets the vote and leaves. It reports the daemon's resident memory
// before, at its peak and once everything has settled, and requires the
// settled figure to stay within 64 MiB of the start: what the status side
// keeps of clusters that left is bounded, not proportional to them.
//
//	go test ./test/load -run NewNamesMemory -soak -timeout 30m -v
func TestNewNamesMemory(t *testing.T) {
	if !*soak {
		t.Skip("load test: run with -soak")
	}
	ents := &entityCount{last: map[string]string{}}
	ha := httptest.NewServer(ents)
	t.Cleanup(ha.Close)
	d := startAddon(t, ha.URL+"/core/api")
	pid := d.cmd.Process.Pid
	before, err := bench.ReadProc(pid)
	require.NoError(t, err)

	workers := 16
	next := atomic.Int64{}
	var failures atomic.Int64
	var firstErr atomic.Pointer[string]
	pad := strings.Repeat("x", max(0, *namesLength-len("churn-000000-")))
	t0 := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *namesSessions {
					return
				}
				if err := newNameSession(d.addr, sourceAddr(i), fmt.Sprintf("churn-%06d-%s", i, pad)); err != nil {
					failures.Add(1)
					msg := err.Error()
					firstErr.CompareAndSwap(nil, &msg)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(t0)
	if p := firstErr.Load(); p != nil {
		t.Fatalf("%d sessions failed; the first: %s", failures.Load(), *p)
	}

	// Settled: nobody connected, the page shows it, and every entity the
	// publisher made has been reported gone.
	settle := time.Now()
	require.Eventually(t, func() bool {
		clients, clusters, _, err := d.status()
		return err == nil && clients == 0 && clusters == 0 && ents.live() == 0
	}, 10*time.Minute, 100*time.Millisecond, "the daemon did not settle")
	settled := time.Since(settle)
	peak, err := bench.ReadProc(pid)
	require.NoError(t, err)
	// The runtime gives freed memory back to the system over a few
	// seconds; the lowest figure over 20 seconds is what stays.
	after := peak
	tick := time.NewTicker(time.Second)
	for range 20 {
		<-tick.C
		st, err := bench.ReadProc(pid)
		require.NoError(t, err)
		after.RSS = min(after.RSS, st.RSS)
	}
	tick.Stop()
	_, _, history, err := d.status()
	require.NoError(t, err)
	ents.mu.Lock()
	entities := len(ents.last)
	ents.mu.Unlock()
	t.Logf("%d sessions under new %d-byte names in %s (settled %s later); %d entities made, %d posts; history %d events",
		*namesSessions, *namesLength, took.Round(time.Millisecond), settled.Round(time.Millisecond), entities, ents.posts.Load(), history)
	t.Logf("daemon RSS: %.1f MiB before, %.1f MiB peak, %.1f MiB after (settled, lowest over 20 s)",
		float64(before.RSS)/(1<<20), float64(peak.HWM)/(1<<20), float64(after.RSS)/(1<<20))
	require.Less(t, after.RSS, before.RSS+64<<20, "the daemon keeps what it learned of clusters that left")
}
