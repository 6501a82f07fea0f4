package addon

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/daemon"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestLogLevels runs the daemon at each of the Supervisor's seven levels
// with the same traffic (which logs at trace, debug, info and warning) and
// checks that exactly the levels at or above the chosen one appear.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
	// match, when set, is looked for after every write; its first match
	// (with submatches) goes to found.
	match *regexp.Regexp
	found chan []string
}

// watchFor is a buffer that reports the first line matching re.
func watchFor(re *regexp.Regexp) *syncBuffer {
	return &syncBuffer{match: re, found: make(chan []string, 1)}
}

// startedLine is the daemon's start line with the qnetd and status page
// addresses.
var startedLine = regexp.MustCompile(`corosync-qnetd started .*\baddr=(\S+).*\bstatus_page=(\S+)`)

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	if s.match != nil {
		if m := s.match.FindStringSubmatch(s.b.String()); m != nil {
			s.found <- m
			s.match = nil
		}
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogLevels(t *testing.T) {
	order := []string{"TRC", "DBG", "INF", "WRN", "ERR", "FTL"}
	want := map[string][]string{
		"trace":   {"DBG", "INF", "TRC", "WRN"},
		"debug":   {"DBG", "INF", "WRN"},
		"info":    {"INF", "WRN"},
		"notice":  {"INF", "WRN"},
		"warning": {"WRN"},
		"error":   nil,
		"fatal":   nil,
	}
	for level, expect := range want {
		t.Run(level, func(t *testing.T) {
			dir := t.TempDir()
			p := Paths{Options: filepath.Join(dir, "options.json"), Data: dir, Config: dir, RunDir: filepath.Join(dir, "run"),
				User: "", NSSLink: ""}
			o := Defaults()
			o.LogLevel, o.PairingEnabled = level, false
			var buf syncBuffer
			log := NewLogger(&buf, level)
			require.NoError(t, Init(p, o, log))
			// The add-on's own translation of its options, on sockets bound
			// here (port 0), so that a failed start says why at once.
			cfg := DaemonConfig(p, o, log)
			cfg.Listener = listen(t)
			cfg.Web.Listener = listen(t)
			d, err := daemon.Start(cfg)
			require.NoError(t, err, "start at level %s:\n%s", level, buf.String())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- d.Wait(ctx) }()
			addr := d.Addr().String()
			c, err := client.Dial(addr, client.NewNode(client.Settings{Cluster: "c", NodeID: 1, Algorithm: wire.AlgoFFSplit,
				TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true}), 5*time.Second)
			require.NoError(t, err)
			// info + debug + trace: a paired node joins and gets a vote.
			require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, signedClientTLS(t, p, "c")))
			nodes := []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}
			_, err = c.Call(c.Node.Config(nodes, true, nil))
			require.NoError(t, err)
			_, err = c.Call(c.Node.Membership(wire.RingID{NodeID: 1, Seq: 4}, nodes, wire.HeuristicsUndefined))
			require.NoError(t, err)
			c.Close()
			// warning: a TLS handshake that fails.
			bad, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			n := client.NewNode(client.Settings{Cluster: "c"})
			_, _ = bad.Write(append(n.Preinit().Append(nil), n.StartTLS().Append(nil)...))
			_, _ = bad.Write([]byte("this is not a TLS client hello, not at all......"))
			// The server closes the connection after it logged the failed
			// handshake: read until then, not just its first answer.
			_ = bad.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, bad)
			bad.Close()
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "the daemon's exit at level %s:\n%s", level, buf.String())
			case <-time.After(10 * time.Second):
				t.Fatalf("the daemon did not stop at level %s:\n%s", level, buf.String())
			}

			seen := map[string]bool{}
			for _, line := range strings.Split(buf.String(), "\n") {
				if f := strings.Fields(line); len(f) > 2 {
					seen[f[2]] = true
				}
			}
			var got []string
			for _, l := range order {
				if seen[l] {
					got = append(got, l)
				}
			}
			sort.Strings(got)
			require.Equal(t, expect, got, "log level %s:\n%s", level, buf.String())
		})
	}
}

// listen binds a loopback port for a daemon that takes a listener.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}
