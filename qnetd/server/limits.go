package server

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Connections that have not completed INIT ("newcomers") prove nothing:
// anyone who reaches the port can open them, and upstream keeps each one
// for its pre-INIT dead-peer interval (180 s by default), so enough of
// them use up the process's file descriptors and a node that reconnects,
// the pairing endpoint and /health are refused.
// corosync-qdevice sends PREINIT, STARTTLS and INIT as soon as it is
// connected, so a real node is a newcomer for milliseconds. Hence:
//
//   - a newcomer that has not completed INIT within InitTimeout of
//     connecting is closed (the engine keeps that deadline);
//   - one source (an IPv4 address, an IPv6 /64) may hold at most
//     MaxNewcomersPerSource newcomers; further connections from it are
//     closed at once;
//   - at most MaxNewcomers newcomers in all (and never more than half the
//     descriptor budget). When they are all taken, a connection from a
//     source that holds fewer newcomers than the source holding the most
//     takes the place of that source's oldest newcomer (if it holds at
//     least two more), so a flood from fewer addresses than MaxNewcomers
//     cannot lock out a node arriving from an address of its own.
//     Otherwise the new connection is closed at once;
//   - all connections together stay FDReserve descriptors below the
//     open-file limit, for the rest of the process.

// Defaults of the connection limits; see the Config fields. 20 s is more
// than twice corosync-qdevice's own connect timeout (8 s by default): a
// node whose INIT takes longer has given up on the connection itself. 32
// per source lets the nodes of a site behind one NAT address (or in one
// IPv6 /64) reconnect at once. 4,096 in all is twice what a storm of 2,000
// nodes holds, and costs about 6 MB when idle (an idle plaintext
// connection is about 1.5 kB). 128 descriptors cover the listener, logs,
// the local socket and the connections of the pairing endpoint and the web
// server.
const (
	DefaultInitTimeout           = 20 * time.Second
	DefaultMaxNewcomers          = 4096
	DefaultMaxNewcomersPerSource = 32
	DefaultFDReserve             = 128
)

// openFileLimit is RLIMIT_NOFILE's soft limit (tests replace it).
var openFileLimit = func() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return math.MaxInt32
	}
	return rl.Cur
}

// limits are the effective connection limits; 0 = none.
type limits struct {
	maxConns     int // all connections: the descriptor budget
	maxNew       int
	maxPerSource int
}

// computeLimits applies the descriptor budget to the configured limits.
func computeLimits(cfg *Config, fdLimit uint64) limits {
	l := limits{maxNew: max(cfg.MaxNewcomers, 0), maxPerSource: max(cfg.MaxNewcomersPerSource, 0)}
	reserve := uint64(max(cfg.FDReserve, 0))
	if fdLimit >= math.MaxInt32 {
		fdLimit = math.MaxInt32 // RLIM_INFINITY and the like
	}
	budget := 1
	if fdLimit > reserve+1 {
		budget = int(fdLimit - reserve)
	}
	l.maxConns = budget
	// Newcomers never take more than half of the budget, so nodes that
	// completed INIT keep room to reconnect during a flood.
	if half := max(budget/2, 1); l.maxNew == 0 || l.maxNew > half {
		l.maxNew = half
	}
	return l
}

// sourceOf groups addresses for MaxNewcomersPerSource: an IPv4 address
// (also when it reaches a dual-stack socket as ::ffff:a.b.c.d), or the
// /64 of an IPv6 address, the smallest network an IPv6 host is usually
// given: a host that can pick any of its 2^64 addresses is one source.
func sourceOf(a net.Addr) netip.Prefix {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// newcomers counts the connections that have not completed INIT, by
// source. It is used from the accept loop, the engine goroutine and
// whichever goroutine closes a connection.
type newcomers struct {
	mu           sync.Mutex
	maxNew       int
	maxPerSource int
	n            int
	sources      map[netip.Prefix]*source
	// levels[k] lists the sources holding k newcomers (k >= 1); top is
	// the highest non-empty level, so the source holding the most is
	// found at once even during a flood.
	levels []*source
	top    int
}

// source is one source's newcomers, oldest first.
type source struct {
	key         netip.Prefix
	n           int
	first, last *conn
	prev, next  *source // in levels[n]
}

func newNewcomers(l limits) *newcomers {
	return &newcomers{maxNew: l.maxNew, maxPerSource: l.maxPerSource, sources: make(map[netip.Prefix]*source), levels: make([]*source, 1)}
}

// Refusal reasons, as logged.
const (
	refusedPerSource = "too many connections from this address before INIT"
	refusedNewcomers = "too many connections before INIT"
	refusedEvicted   = "the address holds the most connections before INIT; its oldest made room for another address"
	refusedInit      = "no INIT within the INIT timeout"
	refusedMax       = "max_clients reached"
	refusedBudget    = "open file limit less the reserve reached"
)

// admit counts c as a newcomer from key. It returns why c must be closed
// instead, or the connection that must be closed to make room for it.
func (g *newcomers) admit(c *conn, key netip.Prefix) (victim *conn, refused string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	have := 0
	if s := g.sources[key]; s != nil {
		have = s.n
	}
	if g.maxPerSource > 0 && have >= g.maxPerSource {
		return nil, refusedPerSource
	}
	if g.maxNew > 0 && g.n >= g.maxNew {
		// The source holding the most must keep at least as many as c's
		// source will have, or the two would take turns evicting.
		if g.top < have+2 {
			return nil, refusedNewcomers
		}
		victim = g.levels[g.top].first
		g.remove(victim)
	}
	g.add(c, key)
	return victim, ""
}

// done forgets c (INIT completed, or closed); idempotent.
func (g *newcomers) done(c *conn) {
	g.mu.Lock()
	if c.src != nil {
		g.remove(c)
	}
	g.mu.Unlock()
}

func (g *newcomers) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

func (g *newcomers) add(c *conn, key netip.Prefix) {
	s := g.sources[key]
	if s == nil {
		s = &source{key: key}
		g.sources[key] = s
	} else {
		g.unlevel(s)
	}
	s.n++
	g.level(s)
	c.src, c.older, c.newer = s, s.last, nil
	if s.last != nil {
		s.last.newer = c
	} else {
		s.first = c
	}
	s.last = c
	g.n++
}

func (g *newcomers) remove(c *conn) {
	s := c.src
	if c.older != nil {
		c.older.newer = c.newer
	} else {
		s.first = c.newer
	}
	if c.newer != nil {
		c.newer.older = c.older
	} else {
		s.last = c.older
	}
	c.src, c.older, c.newer = nil, nil, nil
	g.unlevel(s)
	s.n--
	if s.n == 0 {
		delete(g.sources, s.key)
	} else {
		g.level(s)
	}
	g.n--
}

// level puts s into levels[s.n].
func (g *newcomers) level(s *source) {
	for len(g.levels) <= s.n {
		g.levels = append(g.levels, nil)
	}
	s.prev, s.next = nil, g.levels[s.n]
	if s.next != nil {
		s.next.prev = s
	}
	g.levels[s.n] = s
	g.top = max(g.top, s.n)
}

// unlevel takes s out of levels[s.n].
func (g *newcomers) unlevel(s *source) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		g.levels[s.n] = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
	for g.top > 0 && g.levels[g.top] == nil {
		g.top--
	}
}

// refusalLogEvery is how often at most a line about connections closed
// by a limit is logged, per reason (tests shorten it).
var refusalLogEvery = 10 * time.Second

// refusalLog logs connections closed by a limit: the first at once, then
// at most one line per reason every refusalLogEvery with how many were
// closed since, so that a flood costs a few lines, not one per connection.
type refusalLog struct {
	s       *Server
	mu      sync.Mutex
	reasons map[string]*refusals
}

type refusals struct {
	n     int    // closed since the last line
	addr  string // the latest one
	last  time.Time
	timer *time.Timer
}

// note records one connection from addr closed for reason.
func (r *refusalLog) note(reason, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reasons == nil {
		r.reasons = make(map[string]*refusals)
	}
	x := r.reasons[reason]
	if x == nil {
		x = &refusals{}
		r.reasons[reason] = x
	}
	x.n++
	x.addr = addr
	switch wait := refusalLogEvery - time.Since(x.last); {
	case x.last.IsZero() || wait <= 0:
		r.flush(reason, x)
	case x.timer == nil:
		x.timer = time.AfterFunc(wait, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			x.timer = nil
			r.flush(reason, x)
		})
	}
}

func (r *refusalLog) flush(reason string, x *refusals) {
	if x.n == 0 {
		return
	}
	l := r.s.lim
	ev := r.s.log.Warn().Str("addr", x.addr).Str("reason", reason).Int("connections", x.n)
	switch reason {
	case refusedPerSource:
		ev = ev.Int("max_per_address", l.maxPerSource)
	case refusedNewcomers, refusedEvicted:
		ev = ev.Int("max_before_init", l.maxNew)
	case refusedInit:
		ev = ev.Dur("init_timeout", r.s.cfg.InitTimeout)
	case refusedMax:
		ev = ev.Int("max_clients", r.s.cfg.MaxClients)
	case refusedBudget:
		ev = ev.Int("max_connections", l.maxConns)
	}
	if x.n > 1 {
		ev = ev.Dur("in", time.Since(x.last).Round(time.Millisecond))
	}
	ev.Msg("connections closed by a limit")
	x.n, x.last = 0, time.Now()
}

// stop logs what is pending at once (at shutdown).
func (r *refusalLog) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for reason, x := range r.reasons {
		if x.timer != nil {
			x.timer.Stop()
			x.timer = nil
		}
		r.flush(reason, x)
	}
}
