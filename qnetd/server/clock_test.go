package server_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// hostClock stands for a host's two clocks: the wall clock, which an NTP
// step or an admin may set to anything, and the monotonic one, which only
// runs. As a server.Clock it gives the monotonic reading, as the real one
// (server.MonotonicClock) does; its timers run on that reading when the
// test advances it.
type hostClock struct {
	mu     sync.Mutex
	wall   time.Time
	mono   time.Duration
	timers []*hostTimer
	armed  int // AfterFunc calls
}

type hostTimer struct {
	at      time.Duration
	f       func()
	stopped bool
}

func (c *hostClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

func (c *hostClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &hostTimer{at: c.mono + d, f: f}
	c.timers = append(c.timers, t)
	c.armed++
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// setWall moves the wall clock only.
func (c *hostClock) setWall(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
}

// advance lets d pass on both clocks and runs the timers due, in this
// goroutine, so that the events they post are queued before the caller's
// next step.
func (c *hostClock) advance(d time.Duration) {
	c.mu.Lock()
	c.mono += d
	c.wall = c.wall.Add(d)
	var due []*hostTimer
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case t.at <= c.mono:
			t.stopped = true
			due = append(due, t)
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// TestWallClockJumpIsNoDeadPeer: the server measures dead peer detection
// on its clock's monotonic reading, so a wall clock set an hour forward
// (or back) between two heartbeats drops nobody, and a client that then
// falls silent is still dropped one dead-peer interval (1.5 s here) after
// its last message, not an hour early or late.
func TestWallClockJumpIsNoDeadPeer(t *testing.T) {
	for _, jump := range []time.Duration{time.Hour, -time.Hour} {
		t.Run(jump.String(), func(t *testing.T) {
			clk := &hostClock{wall: time.Date(2025, 3, 30, 1, 59, 0, 0, time.UTC)}
			srv := start(t, func(c *server.Config) { c.Clock = clk })
			c := dial(t, srv)
			n := c.initNode("c", 1, 1000)
			heartbeat := func() {
				t.Helper()
				c.send(n.Echo())
				m, _ := c.read()
				require.Equal(t, wire.MsgEchoReply, m.Type)
			}
			for i := 0; i < 4; i++ {
				clk.advance(500 * time.Millisecond)
				if i == 1 {
					clk.setWall(jump)
				}
				heartbeat()
			}
			// Silent from now: 1.4 s later it is still there (an echo
			// would be answered; the status counts it), at 1.5 s it is
			// dropped.
			clk.advance(1400 * time.Millisecond)
			st, err := srv.Status(t.Context())
			require.NoError(t, err)
			require.Equal(t, 1, st.Clients)
			require.Zero(t, st.Stats.DeadPeers)
			clk.advance(100 * time.Millisecond)
			c.expectClosed()
			st, err = srv.Status(t.Context())
			require.NoError(t, err)
			require.Equal(t, uint64(1), st.Stats.DeadPeers)
		})
	}
}

// TestHeartbeatsDoNotWakeTheTimer: clients that keep sending move their
// dead-peer deadlines later, and the server's one timer is armed only for
// the earliest real deadline: with 20 clients' heartbeats over 5 s it is
// armed a few times, not once per heartbeat of each client.
func TestHeartbeatsDoNotWakeTheTimer(t *testing.T) {
	clk := &hostClock{wall: time.Now()}
	srv := start(t, func(c *server.Config) { c.Clock = clk })
	type node struct {
		c *rawClient
		n interface{ Echo() *wire.Msg }
	}
	var nodes []node
	for i := 0; i < 20; i++ {
		c := dial(t, srv)
		nodes = append(nodes, node{c, c.initNode(fmt.Sprintf("c%d", i), 1, 1000)})
	}
	clk.mu.Lock()
	clk.armed = 0
	clk.mu.Unlock()
	for step := 0; step < 100; step++ { // 5 s in 50 ms steps
		clk.advance(50 * time.Millisecond)
		n := nodes[step%20]
		n.c.send(n.n.Echo())
		m, _ := n.c.read()
		require.Equal(t, wire.MsgEchoReply, m.Type)
	}
	st, err := srv.Status(t.Context())
	require.NoError(t, err)
	require.Equal(t, 20, st.Clients)
	require.Zero(t, st.Stats.DeadPeers)
	clk.mu.Lock()
	armed := clk.armed
	clk.mu.Unlock()
	require.LessOrEqual(t, armed, 12, "the timer was armed %d times for 100 heartbeats", armed)
}
