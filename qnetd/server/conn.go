package server

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// conn is one client connection. An idle connection owns no goroutine and
// no buffer: plaintext connections are a bare socket served by the
// server's poller (see poll_linux.go), TLS connections have a reader
// goroutine of their own (read.go). Replies are written straight from the
// engine goroutine; when the socket is full, the poller (plaintext) or a
// writer goroutine (TLS) drains the backlog.
type conn struct {
	s    *Server
	id   engine.ClientID
	addr string
	// cluster is the name from the client's PREINIT, for log lines about
	// its TLS handshake (the engine has it too, but handshakes run here).
	cluster string
	framer  wire.Framer

	mu sync.Mutex
	// raw is the socket as a net.Conn, nil while the poller owns it as the
	// bare descriptor fd (-1 otherwise). Both change only under mu, and
	// fd is used only under mu, so that a closed descriptor's number,
	// which the next accepted socket may get, is never read or written.
	raw      net.Conn
	fd       int32
	nc       net.Conn // raw, or the tls.Conn after STARTTLS
	pending  []byte   // replies not yet handed to the socket
	npending int      // how many messages pending holds
	writing  bool     // the poller or a writer goroutine drains pending
	direct   bool     // the poller owns the socket

	// Before INIT (limits.go): the connection's source and neighbours
	// among its newcomers, guarded by the server's newcomers. The engine
	// keeps its deadlines (INIT, dead peer).
	src          *source
	older, newer *conn

	closed    atomic.Bool
	closeOnce sync.Once
}

func newConn(s *Server, id engine.ClientID, nc net.Conn) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		// Go sets TCP_NODELAY already; say so, since upstream's Nagle
		// stall (~40 ms per decision) is what this avoids.
		_ = tc.SetNoDelay(true)
	}
	return &conn{
		s:    s,
		id:   id,
		addr: nc.RemoteAddr().String(),
		raw:  nc,
		nc:   nc,
		fd:   -1,
	}
}

func (c *conn) isClosed() bool { return c.closed.Load() }

// close is idempotent and safe from any goroutine. The engine is not told;
// callers that are not the engine goroutine use fail.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.mu.Lock()
		if c.fd >= 0 {
			c.s.poll.release(c)
		}
		nc, raw := c.nc, c.raw
		c.mu.Unlock()
		if nc != nil {
			nc.Close()
		}
		if raw != nil && raw != nc {
			raw.Close()
		}
		c.s.fresh.done(c)
		c.s.nClients.Add(-1)
	})
}

// fail tells the engine the connection is gone, then closes it.
func (c *conn) fail(reason string) {
	if !c.isClosed() {
		c.post(event{kind: evClosed, c: c, reason: reason})
	}
	c.close()
}

// drop closes the connection, then tells the engine. Unlike fail it may
// run before the engine heard of the connection: the engine ignores a
// connection that is already closed when it arrives, and hears of one
// closed later through this event.
func (c *conn) drop(reason string) {
	first := !c.isClosed()
	c.close()
	if first {
		c.post(event{kind: evClosed, c: c, reason: reason})
	}
}

type sendResult uint8

const (
	sent   sendResult = iota
	full              // the client lets its queue fill up
	broken            // the socket failed
)

// enqueue hands b to the socket, or queues it behind what is already
// waiting; it never blocks. It runs in the engine goroutine.
func (c *conn) enqueue(b []byte) sendResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed() {
		return sent
	}
	if c.npending >= c.s.cfg.SendBuffers {
		return full
	}
	if c.direct && !c.writing {
		n, err := c.writeNow(b)
		if err != nil {
			return broken
		}
		if n == len(b) {
			return sent
		}
		b = b[n:]
	}
	c.pending = append(c.pending, b...)
	c.npending++
	if c.writing {
		return sent
	}
	c.writing = true
	if c.direct {
		if err := c.s.poll.wantWrite(c, true); err != nil {
			return broken
		}
		return sent
	}
	c.s.wg.Add(1)
	go c.writer()
	return sent
}

// writeNow writes what the poller's socket takes at once; c.mu is held.
func (c *conn) writeNow(b []byte) (int, error) {
	if c.fd < 0 {
		return 0, net.ErrClosed
	}
	n, err := sockWrite(int(c.fd), b)
	if errors.Is(err, unix.EAGAIN) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return max(n, 0), nil
}

// flush writes what the socket of a plaintext client now takes of its
// backlog; the poller calls it when the socket has room.
func (c *conn) flush() {
	c.mu.Lock()
	if !c.direct || !c.writing || c.fd < 0 {
		c.mu.Unlock()
		return
	}
	n, err := c.writeNow(c.pending)
	if err == nil {
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending, c.npending, c.writing = nil, 0, false
			err = c.s.poll.wantWrite(c, false)
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.fail("write: " + err.Error())
	}
}

// writer drains pending with blocking writes, coalescing whatever queued
// up meanwhile into one write, and ends when nothing is left.
func (c *conn) writer() {
	defer c.s.wg.Done()
	var buf []byte
	for {
		c.mu.Lock()
		if len(c.pending) == 0 || c.isClosed() {
			c.writing = false
			c.pending, c.npending = nil, 0
			c.mu.Unlock()
			return
		}
		buf, c.pending = c.pending, buf[:0]
		c.npending = 0
		w := c.nc
		c.mu.Unlock()
		if _, err := w.Write(buf); err != nil {
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			c.fail("write: " + err.Error())
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil
		}
	}
}

// post gives ev to the engine (Server.process); false once the server
// stopped. Events about a connection closed meanwhile are harmless: the
// engine no longer knows it.
func (c *conn) post(ev event) bool {
	if c.s.sink != nil {
		return c.s.sink(ev)
	}
	return c.s.process(ev)
}
