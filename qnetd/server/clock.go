package server

import "time"

// Clock is the server's time source. The engine keeps every deadline
// (dead peer detection, the INIT timeout, lms retries, the NACK deadline)
// and is told the time with each event; the server reads it here and arms
// one timer for the engine's next deadline.
type Clock interface {
	// Now is a monotonic reading: the time since a fixed origin, which
	// does not follow changes of the wall clock.
	Now() time.Duration
	// AfterFunc calls f in a goroutine of its own once d has passed on
	// this clock; stop cancels that if it has not happened yet.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// MonotonicClock is the clock New uses when Config.Clock is nil: Go's
// monotonic clock, counted from the call. A change of the wall clock (an
// NTP step, an admin's date command) moves neither its readings nor its
// timers.
func MonotonicClock() Clock { return monotonic{start: time.Now()} }

type monotonic struct{ start time.Time }

// Now uses time.Since, which reads the monotonic clock of both ends.
func (m monotonic) Now() time.Duration { return time.Since(m.start) }

func (monotonic) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// tickGranularity coalesces deadlines: the timer is armed for the next
// deadline rounded up to this, so that many idle clients' dead-peer
// checks cost a few wake-ups a second, not one each. A deadline fires at
// most this late.
const tickGranularity = 10 * time.Millisecond

// ticker is the one timer for the engine's next deadline; it is owned by
// the engine goroutine.
type ticker struct {
	stop  func() bool
	at    time.Duration // when the armed timer fires, on the clock
	armed bool
}

// armTick makes sure the timer fires at the engine's next deadline (and
// not at all when there is none). It runs in the engine goroutine after
// every event.
func (s *Server) armTick() {
	next, ok := s.eng.Next()
	t := &s.tick
	if !ok {
		if t.armed {
			t.stop()
			t.armed = false
		}
		return
	}
	at := (next + tickGranularity - 1) / tickGranularity * tickGranularity
	if t.armed && t.at <= at {
		// A deadline that moved later (a client sent a message) keeps the
		// timer: it fires early once, and Tick finds nothing due then.
		return
	}
	if t.armed {
		t.stop()
	}
	t.at, t.armed = at, true
	t.stop = s.clock.AfterFunc(max(at-s.clock.Now(), 0), func() {
		select {
		case s.events <- event{kind: evTick}:
		case <-s.done:
		}
	})
}
