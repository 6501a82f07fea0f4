package server

import "time"

// Dead peer detection: one timer for the whole server instead of one per
// connection (a timer is about as big as the rest of an idle plaintext
// connection). A sweep closes every connection whose last complete
// message is older than its interval, then sleeps for an eighth of the
// shortest interval, so a dead peer goes at most 1/8 of its interval late.
// With no clients there is no sweep at all. The same sweep closes
// connections that did not complete INIT within InitTimeout (limits.go).

const (
	sweepMin = 10 * time.Millisecond
	sweepMax = time.Second
)

type dpdSweep struct {
	timer *time.Timer
	at    time.Duration // since s.epoch; when the armed timer fires
}

// watchDPD makes sure the next sweep comes in time for interval d. It
// runs in the engine goroutine.
func (s *Server) watchDPD(d time.Duration) {
	if d <= 0 {
		return
	}
	s.armSweep(min(max(d/8, sweepMin), sweepMax))
}

func (s *Server) armSweep(after time.Duration) {
	at := time.Since(s.epoch) + after
	w := &s.sweep
	switch {
	case w.timer == nil:
		w.timer = time.AfterFunc(after, func() {
			select {
			case s.events <- event{kind: evSweep}:
			case <-s.done:
			}
		})
	case w.at != 0 && w.at <= at:
		return // an earlier sweep is due anyway
	default:
		w.timer.Reset(after)
	}
	w.at = at
}

// sweepDPD runs in the engine goroutine.
func (s *Server) sweepDPD() {
	s.sweep.at = 0
	now := time.Since(s.epoch)
	next := time.Duration(0)
	var dead, late []*conn
	for _, c := range s.conns {
		if c.initBy > 0 {
			if now >= c.initBy {
				late = append(late, c)
				continue
			}
			if p := min(max(s.cfg.InitTimeout/8, sweepMin), sweepMax); next == 0 || p < next {
				next = p
			}
		}
		d := time.Duration(c.dpd.Load())
		if d <= 0 {
			continue
		}
		if now-time.Duration(c.lastRecv.Load()) >= d {
			dead = append(dead, c)
			continue
		}
		if p := min(max(d/8, sweepMin), sweepMax); next == 0 || p < next {
			next = p
		}
	}
	for _, c := range late {
		if s.conns[c.id] != c {
			continue // gone with an earlier one's disconnect
		}
		s.refuse.note(refusedInit, c.addr)
		s.apply(s.lost(c), nil)
	}
	for _, c := range dead {
		if s.conns[c.id] != c {
			continue // gone with an earlier one's disconnect
		}
		if s.cfg.Hooks.DPDTimeout != nil {
			s.cfg.Hooks.DPDTimeout()
		}
		s.log.Info().Str("addr", c.addr).Str("cluster", c.cluster).Dur("interval", time.Duration(c.dpd.Load())).Msg("client sent no message within the dead peer interval, disconnecting")
		s.apply(s.lost(c), nil)
	}
	if next > 0 {
		s.armSweep(next)
	}
}
