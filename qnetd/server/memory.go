package server

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// memoryReturn gives the memory of departed clients back to the system
// once many of them left at once. Go hands freed memory back only after
// its next collection, which an idle daemon runs every two minutes, and
// then bit by bit; the small box qnetd shares with Home Assistant should
// not carry a reconnect storm's memory that long.
type memoryReturn struct {
	peak  int         // connections at the high-water mark since the last return
	timer *time.Timer // armed: departures are still going on
	busy  bool        // BusyGCPercent applied
}

// BusyClients is when a server counts as busy: BusyGCPercent applies from
// then on.
const BusyClients = 128

// DaemonGCPercent is the garbage collector's target for a busy daemon:
// the heap may grow 25 % over what is live before a collection, not Go's
// default 100 %, so a connection storm leaves a quarter of the garbage,
// paid for with collections of well under a millisecond each (qnetd's CPU
// goes to little else). A few clients keep Go's default: their garbage is
// a few kB, and a collection costs more memory for its own bookkeeping.
// It is 0 (keep Go's setting) when the environment sets GOGC.
func DaemonGCPercent() int {
	if _, set := os.LookupEnv("GOGC"); set {
		return 0
	}
	return 25
}

// Departures worth a forced collection: at least half of a busy server's
// clients, quiet for returnQuiet.
const (
	returnMinPeak = BusyClients
	returnQuiet   = time.Second // after the last departure
)

// joined and left run in the engine goroutine.
func (s *Server) joined() {
	m := &s.mem
	m.peak = max(m.peak, len(s.conns))
	if !m.busy && s.cfg.BusyGCPercent != 0 && len(s.conns) >= BusyClients {
		m.busy = true
		debug.SetGCPercent(s.cfg.BusyGCPercent)
		s.log.Debug().Int("clients", len(s.conns)).Int("gc_percent", s.cfg.BusyGCPercent).Msg("many clients: garbage collection keeps less garbage")
	}
}

func (s *Server) left() {
	m := &s.mem
	if !s.cfg.ReturnMemory || m.peak < returnMinPeak || len(s.conns) > m.peak/2 {
		return
	}
	if m.timer != nil {
		m.timer.Reset(returnQuiet)
		return
	}
	m.timer = time.AfterFunc(returnQuiet, func() {
		select {
		case s.events <- event{kind: evCall, call: s.returnMemory}:
		case <-s.done:
		}
	})
}

// returnMemory runs in the engine goroutine once many clients left: the
// tables shrink to what is left, then the freed memory goes back to the
// system (a full collection, outside the engine goroutine).
func (s *Server) returnMemory() {
	m := &s.mem
	s.eng.Compact()
	conns := make(map[engine.ClientID]*conn, len(s.conns))
	for id, c := range s.conns {
		conns[id] = c
	}
	s.conns = conns
	if s.poll != nil {
		s.poll.compact()
	}
	s.log.Debug().Int("clients", len(s.conns)).Int("peak", m.peak).Msg("many clients left; memory returned to the system")
	m.peak, m.timer = len(s.conns), nil
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		debug.FreeOSMemory()
	}()
}
