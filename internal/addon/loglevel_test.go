package addon

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// TestLogLevels runs the daemon at each of the Supervisor's seven levels
// with the same traffic (which logs at trace, debug, info and warning) and
// checks that exactly the levels at or above the chosen one appear.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
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
				User: "", IngressAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), NSSLink: ""}
			o := Defaults()
			o.Port, o.LogLevel, o.PairingEnabled = freePort(t), level, false
			var buf syncBuffer
			log := NewLogger(&buf, level)
			require.NoError(t, Init(p, o, log))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- Run(ctx, p, o, log) }()
			addr := fmt.Sprintf("127.0.0.1:%d", o.Port)
			var c *client.Conn
			require.Eventually(t, func() bool {
				var err error
				c, err = client.Dial(addr, client.NewNode(client.Settings{Cluster: "c", NodeID: 1, Algorithm: wire.AlgoFFSplit,
					TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true}), time.Second)
				return err == nil
			}, 10*time.Second, 20*time.Millisecond)
			// info + debug + trace: a plain node joins and gets a vote.
			require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil))
			nodes := []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}
			_, err := c.Call(c.Node.Config(nodes, true, nil))
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
			_, _, _ = client.ReadMsg(bad)
			bad.Close()
			cancel()
			require.NoError(t, <-done)

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
