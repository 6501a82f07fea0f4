package pcsd

import (
	"net"
	"sync"

	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/rs/zerolog"
)

// limitListener bounds the connections open at once, all together and per
// source (an IPv4 address or an IPv6 /64, pairing.SourceOf). A connection
// over a bound is closed at once, before TLS; the refusal is logged as a
// warning the first time for the endpoint or the source, then at debug
// level, so that a flood cannot flood the log.
type limitListener struct {
	net.Listener
	log       zerolog.Logger
	max, each int

	mu       sync.Mutex
	open     int
	sources  map[string]int
	fullSaid bool
	said     map[string]bool
}

func newLimitListener(l net.Listener, log zerolog.Logger, max, each int) *limitListener {
	return &limitListener{Listener: l, log: log, max: max, each: each, sources: map[string]int{}, said: map[string]bool{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, src := pairing.SourceOf(c.RemoteAddr())
		if l.take(ip, src) {
			return &limitedConn{Conn: c, l: l, src: src}, nil
		}
		c.Close()
	}
}

// take counts a new connection from src, or refuses it.
func (l *limitListener) take(ip, src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ev *zerolog.Event
	switch {
	case l.open >= l.max:
		ev = l.log.Debug()
		if !l.fullSaid {
			ev, l.fullSaid = l.log.Warn(), true
		}
		ev.Str("addr", ip).Int("max", l.max).Msg("pcsd: connection refused: too many connections")
		return false
	case l.sources[src] >= l.each:
		ev = l.log.Debug()
		if !l.said[src] {
			ev, l.said[src] = l.log.Warn(), true
		}
		ev.Str("addr", ip).Str("source", src).Int("max", l.each).Msg("pcsd: connection refused: too many connections from this address")
		return false
	}
	l.open++
	l.sources[src]++
	return true
}

func (l *limitListener) release(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	l.fullSaid = false
	if l.sources[src]--; l.sources[src] <= 0 {
		delete(l.sources, src)
		delete(l.said, src)
	}
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	src  string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src) })
	return err
}
