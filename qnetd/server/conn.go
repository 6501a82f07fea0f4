package server

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// conn is one client connection. An idle connection owns no goroutine and
// no buffer: plaintext connections are read by the server's poller (see
// poll_linux.go), TLS connections by a reader goroutine of their own
// (read.go), and replies are written straight from the engine goroutine
// unless the socket is full, when a writer goroutine drains the backlog.
type conn struct {
	s    *Server
	id   engine.ClientID
	addr string
	// cluster is the name from the client's PREINIT, for log lines about
	// its TLS handshake (the engine has it too, but handshakes run here).
	cluster string
	raw     net.Conn
	// rc reads and writes raw without blocking while the poller serves
	// the connection; nil otherwise.
	rc     syscall.RawConn
	fd     int32 // while the poller serves it
	framer wire.Framer

	mu       sync.Mutex
	nc       net.Conn // raw, or the tls.Conn after STARTTLS
	pending  []byte   // replies not yet handed to the socket
	npending int      // how many messages pending holds
	writing  bool     // a writer goroutine is draining pending
	direct   bool     // plaintext in the poller: write without a goroutine

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
	}
}

func (c *conn) isClosed() bool { return c.closed.Load() }

// close is idempotent and safe from any goroutine. The engine is not told;
// callers that are not the engine goroutine use fail.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.mu.Lock()
		nc, polled := c.nc, c.rc != nil
		c.mu.Unlock()
		// Closing the socket also takes it out of the poller's epoll set.
		if polled {
			c.s.poll.forget(c)
		}
		nc.Close()
		if nc != c.raw {
			c.raw.Close()
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
	if c.direct && !c.writing {
		n, err := c.writeNow(b)
		if err != nil {
			return broken
		}
		if n == len(b) {
			return sent
		}
		b = b[n:]
	} else if c.npending >= c.s.cfg.SendBuffers {
		return full
	}
	c.pending = append(c.pending, b...)
	c.npending++
	if !c.writing {
		c.writing = true
		c.s.wg.Add(1)
		go c.writer()
	}
	return sent
}

// writeNow writes what the socket takes at once.
func (c *conn) writeNow(b []byte) (int, error) {
	var n int
	var werr error
	if err := c.rc.Write(func(fd uintptr) bool {
		n, werr = unix.Write(int(fd), b)
		return true
	}); err != nil {
		return 0, err
	}
	if errors.Is(werr, unix.EAGAIN) {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return max(n, 0), nil
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

// post hands ev to the engine goroutine; false once the server stopped.
// Events about a connection closed meanwhile are harmless: the engine no
// longer knows it.
func (c *conn) post(ev event) bool {
	select {
	case c.s.events <- ev:
		return true
	case <-c.s.done:
		return false
	}
}
