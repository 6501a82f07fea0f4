package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller serves every plaintext connection from one goroutine: an epoll
// set of their sockets, itself waited on through Go's netpoller, so an idle
// connection costs neither a goroutine nor a read buffer (upstream's single
// poll loop costs about 2 kB per client; a goroutine and a buffer per
// connection cost ten times that). Each socket is read into one shared
// buffer; the framer keeps only unfinished messages.
//
// The poller owns a plaintext socket as a bare file descriptor: adopt
// takes it out of its net.Conn, which gives the Go runtime's own poll
// record back (about half a kilobyte per connection that the runtime
// keeps for reuse and never returns to the system). A socket that cannot
// take a reply at once is watched for writing here too (EPOLLOUT), so
// plaintext clients never cost a goroutine. STARTTLS hands the socket
// back to a net.Conn with a goroutine of its own (handOff).
type poller struct {
	s    *Server
	epfd int
	file *os.File // epfd, registered with Go's netpoller
	rc   syscall.RawConn

	mu   sync.Mutex
	byFD []*conn // guarded by mu

	buf    []byte // poller goroutine only
	events []unix.EpollEvent
	ready  []readyConn
}

type readyConn struct {
	c      *conn
	events uint32
}

func newPoller(s *Server) (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll set nonblocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("epoll raw conn: %w", err)
	}
	return &poller{s: s, epfd: fd, file: f, rc: rc, buf: make([]byte, 64<<10), events: make([]unix.EpollEvent, 256)}, nil
}

// adopt takes c's socket out of its net.Conn: from here on c.fd is the
// socket, written from the engine goroutine and read by the poller once
// watch adds it. It runs before the engine hears of c.
func (p *poller) adopt(c *conn) error {
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", c.raw)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		// The copy keeps the socket (and its O_NONBLOCK) when the
		// net.Conn closes.
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return err
	}
	if derr != nil {
		return fmt.Errorf("dup socket: %w", derr)
	}
	c.raw.Close()
	c.mu.Lock()
	c.raw, c.nc, c.fd, c.direct = nil, nil, int32(fd), true
	c.mu.Unlock()
	return nil
}

// watch starts reading c, adopted before.
func (p *poller) watch(c *conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil // closed meanwhile
	}
	p.mu.Lock()
	if int(c.fd) >= len(p.byFD) {
		p.byFD = append(p.byFD, make([]*conn, int(c.fd)+1-len(p.byFD)+len(p.byFD)/2)...)
	}
	p.byFD[c.fd] = c
	p.mu.Unlock()
	events := uint32(unix.EPOLLIN)
	if c.writing {
		events |= unix.EPOLLOUT
	}
	ev := unix.EpollEvent{Events: events, Fd: c.fd}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(c.fd), &ev); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// wantWrite says whether the poller should tell when c's socket takes
// more; c.mu is held.
func (p *poller) wantWrite(c *conn, on bool) error {
	events := uint32(unix.EPOLLIN)
	if on {
		events |= unix.EPOLLOUT
	}
	ev := unix.EpollEvent{Events: events, Fd: c.fd}
	err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
	if errors.Is(err, unix.ENOENT) {
		return nil // not watched yet: watch adds it with EPOLLOUT
	}
	return err
}

// release closes c's socket; c.mu is held. Closing it also takes it out
// of the epoll set.
func (p *poller) release(c *conn) {
	p.mu.Lock()
	if int(c.fd) < len(p.byFD) && p.byFD[c.fd] == c {
		p.byFD[c.fd] = nil
	}
	p.mu.Unlock()
	unix.Close(int(c.fd))
	c.fd = -1
}

// compact shrinks the descriptor table to the highest descriptor still
// watched, once many clients left; it keeps the table when that would
// free less than half of it.
func (p *poller) compact() {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.byFD)
	for n > 0 && p.byFD[n-1] == nil {
		n--
	}
	if n > cap(p.byFD)/2 {
		return
	}
	p.byFD = append([]*conn(nil), p.byFD[:n]...)
}

// tableLen is the descriptor table's length (tests).
func (p *poller) tableLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byFD)
}

// handOff stops serving c here and gives it a net.Conn and a goroutine of
// its own, for what follows a STARTTLS message.
func (p *poller) handOff(c *conn, answer chan bool, rest []byte) {
	c.mu.Lock()
	if c.fd < 0 {
		c.mu.Unlock()
		return // closed meanwhile
	}
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
	p.mu.Lock()
	if int(c.fd) < len(p.byFD) && p.byFD[c.fd] == c {
		p.byFD[c.fd] = nil
	}
	p.mu.Unlock()
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	c.fd = -1
	if err != nil {
		c.mu.Unlock()
		c.s.log.Error().Err(err).Str("addr", c.addr).Msg("cannot hand the connection to TLS")
		c.fail("cannot hand the connection to TLS: " + err.Error())
		return
	}
	c.raw, c.nc, c.direct = nc, nc, false
	if c.writing {
		// Replies still queued go out before the handshake's.
		c.s.wg.Add(1)
		go c.writer()
	}
	c.mu.Unlock()
	c.s.wg.Add(1)
	go c.serve(answer, rest)
}

// run serves until close.
func (p *poller) run() {
	defer p.s.wg.Done()
	for {
		var n int
		var werr error
		err := p.rc.Read(func(fd uintptr) bool {
			n, werr = epollReady(int(fd), p.events)
			if errors.Is(werr, unix.EINTR) {
				n, werr = 0, nil
			}
			return n > 0 || werr != nil
		})
		if err != nil {
			return // closed
		}
		if werr != nil {
			p.s.log.Error().Err(werr).Msg("epoll_wait failed; plaintext clients are no longer read")
			return
		}
		p.serveReady(p.events[:n])
	}
}

// serveReady serves the sockets epoll reported. The log lines of the
// whole wake go out together, also when a panic unwinds from here.
func (p *poller) serveReady(events []unix.EpollEvent) {
	p.ready = p.ready[:0]
	p.mu.Lock()
	for _, ev := range events {
		if fd := int(ev.Fd); fd < len(p.byFD) && p.byFD[fd] != nil {
			p.ready = append(p.ready, readyConn{p.byFD[fd], ev.Events})
		}
	}
	p.mu.Unlock()
	if b := p.s.cfg.LogBatch; b != nil {
		b.Hold()
		defer b.Release()
	}
	for i, r := range p.ready {
		if r.events&unix.EPOLLOUT != 0 {
			r.c.flush()
		}
		if r.events&^uint32(unix.EPOLLOUT) != 0 {
			p.read(r.c)
		}
		p.ready[i] = readyConn{}
	}
}

// read takes what one socket has; level-triggered epoll reports it again
// if more is left.
func (p *poller) read(c *conn) {
	c.mu.Lock()
	if c.fd < 0 {
		c.mu.Unlock()
		return // closed or handed off meanwhile
	}
	n, rerr := sockRead(int(c.fd), p.buf)
	c.mu.Unlock()
	switch {
	case errors.Is(rerr, unix.EAGAIN):
		return
	case rerr != nil:
		c.fail("read: " + rerr.Error())
		return
	case n == 0:
		c.fail("connection closed by client")
		return
	}
	rest, answer, ok := c.feed(p.buf[:n])
	if ok && answer != nil {
		p.handOff(c, answer, rest)
	}
}

func (p *poller) close() { p.file.Close() }
