package engine

import "time"

// Time is an input: every event carries now, a reading of a monotonic
// clock (a duration since any fixed origin; the server's starts at 0), and
// Tick delivers the passing of time on its own. The engine never reads a
// clock, so a jump of the wall clock cannot reach it, and tests drive it
// with a virtual one.
//
// Each client has up to four deadlines:
//   - dead peer detection: no complete message within its interval
//     (1.5 heartbeats by default) closes it;
//   - INIT: a connection that has not completed INIT within
//     Config.InitTimeout is closed;
//   - the lms retry while its partition's members disagree (heartbeat/4);
//   - the ffsplit NACK deadline (its dead-peer interval).
//
// One heap orders the clients by their earliest deadline, so the server
// needs one timer for all of them (Next says when). A message moves the
// client's dead-peer deadline later and the client down the heap (a few
// comparisons), so Next is exact: the deadlines of clients that keep
// sending never come, and the server's timer wakes the process only for
// a deadline that is due, not once per heartbeat of every client.

// clientTimes is a client's deadlines; 0 is "none" (a deadline is always
// now plus a positive interval, and now is never negative).
type clientTimes struct {
	lastRecv time.Duration // the last complete message, or when DPD was set
	initBy   time.Duration
	algoAt   time.Duration // lms retry
	nackAt   time.Duration // ffsplit NACK deadline
	heapAt   time.Duration // the client's place in the heap (<= its earliest)
	heapIdx  int32         // index+1 in the heap; 0 = not in it
}

// deadlineHeap is a min-heap of clients by heapAt, then id (so that ties
// fire in a fixed order).
type deadlineHeap []*Client

func (h deadlineHeap) less(i, j int) bool {
	a, b := h[i], h[j]
	if a.times.heapAt != b.times.heapAt {
		return a.times.heapAt < b.times.heapAt
	}
	return a.ID < b.ID
}

func (h deadlineHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].times.heapIdx = int32(i + 1)
	h[j].times.heapIdx = int32(j + 1)
}

func (h deadlineHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h deadlineHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}

func (h *deadlineHeap) push(c *Client) {
	*h = append(*h, c)
	i := len(*h) - 1
	c.times.heapIdx = int32(i + 1)
	h.up(i)
}

func (h *deadlineHeap) remove(c *Client) {
	i := int(c.times.heapIdx) - 1
	if i < 0 {
		return
	}
	old := *h
	last := len(old) - 1
	if i != last {
		old.swap(i, last)
	}
	old[last] = nil
	*h = old[:last]
	c.times.heapIdx = 0
	if i != last {
		h.fix(i)
	}
}

func (h deadlineHeap) fix(i int) {
	h.down(i)
	h.up(i)
}

// dpd is the client's dead peer interval (0: off).
func (c *Client) dpd() time.Duration { return time.Duration(c.dpdMs) * time.Millisecond }

// due is the client's earliest deadline (0: none).
func (c *Client) due() time.Duration {
	var at time.Duration
	earliest := func(t time.Duration) {
		if t > 0 && (at == 0 || t < at) {
			at = t
		}
	}
	if d := c.dpd(); d > 0 {
		earliest(c.times.lastRecv + d)
	}
	earliest(c.times.initBy)
	earliest(c.times.algoAt)
	earliest(c.times.nackAt)
	return at
}

// reschedule puts c in the heap at its earliest deadline, or takes it out
// when it has none or is being dropped.
func (e *Engine) reschedule(c *Client) {
	at := c.due()
	if at == 0 || c.dropping || e.clients[c.ID] != c {
		e.deadlines.remove(c)
		return
	}
	c.times.heapAt = at
	if c.times.heapIdx == 0 {
		e.deadlines.push(c)
		return
	}
	e.deadlines.fix(int(c.times.heapIdx) - 1)
}

// advance moves the engine's clock; a reading older than one already seen
// changes nothing (the clock never goes back).
func (e *Engine) advance(now time.Duration) {
	if now > e.now {
		e.now = now
	}
}

// alive records a complete message as a sign of life: the dead-peer
// deadline moves later, and the client with it in the heap.
func (e *Engine) alive(c *Client) {
	c.times.lastRecv = e.now
	if c.times.heapIdx != 0 {
		e.reschedule(c)
	}
}

// Next reports the engine's earliest deadline: the server calls Tick then
// (or at any later time). ok is false when nothing is due ever.
func (e *Engine) Next() (at time.Duration, ok bool) {
	if len(e.deadlines) == 0 {
		return 0, false
	}
	return e.deadlines[0].times.heapAt, true
}

// Tick delivers the passing of time: every deadline at or before now
// fires, in order.
func (e *Engine) Tick(now time.Duration) Batch {
	e.advance(now)
	for len(e.deadlines) > 0 && e.deadlines[0].times.heapAt <= e.now {
		e.expire(e.deadlines[0])
		e.finishDisconnects()
	}
	return e.take()
}

// expire handles c's deadlines that have come, then puts it back at its
// next one.
func (e *Engine) expire(c *Client) {
	now := e.now
	t := &c.times
	switch d := c.dpd(); {
	case t.initBy > 0 && t.initBy <= now:
		t.initBy = 0
		e.dropLate(c, ReasonInitTimeout)
	case d > 0 && t.lastRecv+d <= now:
		e.dropLate(c, ReasonDeadPeer)
	default:
		if t.nackAt > 0 && t.nackAt <= now {
			t.nackAt = 0
			ffsplitNackTimeout(e, c)
		}
		if t.algoAt > 0 && t.algoAt <= now && !c.dropping {
			t.algoAt = 0
			if c.initDone {
				algoFor(c).timer(e, c)
			}
		}
	}
	e.reschedule(c)
}

// dropLate disconnects c for a missed deadline (INIT or dead peer).
func (e *Engine) dropLate(c *Client, r DisconnectReason) {
	if c.dropping {
		return
	}
	c.dropping = true
	if r == ReasonDeadPeer {
		e.stats.DeadPeers++
		e.log.Info().Str("addr", c.Addr).Str("cluster", string(c.ClusterName)).Uint32("node_id", c.NodeID).
			Dur("interval", c.dpd()).Msg("client sent no message within the dead peer interval, disconnecting")
	} else {
		// A debug line: the server logs such refusals sparingly, as a
		// flood of them would otherwise flood the log.
		e.log.Debug().Str("addr", c.Addr).Dur("init_timeout", e.cfg.InitTimeout).Msg("client did not complete INIT in time, disconnecting")
	}
	e.dropping = append(e.dropping, c.ID)
	e.out.Disconnects = append(e.out.Disconnects, Disconnect{Client: c.ID, Reason: r})
}
