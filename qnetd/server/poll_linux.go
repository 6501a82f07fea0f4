package server

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller reads every plaintext connection from one goroutine: an epoll set
// of their sockets, itself waited on through Go's netpoller, so an idle
// connection costs neither a goroutine nor a read buffer (upstream's
// single poll loop costs about 2 kB per client; a goroutine and a buffer
// per connection cost ten times that). Each socket is read into one
// shared buffer; the framer keeps only unfinished messages.
type poller struct {
	s    *Server
	epfd int
	file *os.File // epfd, registered with Go's netpoller
	rc   syscall.RawConn

	mu   sync.Mutex
	byFD []*conn // guarded by mu

	buf    []byte // poller goroutine only
	events []unix.EpollEvent
	ready  []*conn
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

// add starts reading c in the poller.
func (p *poller) add(c *conn) error {
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return fmt.Errorf("%T has no file descriptor", c.raw)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.rc, c.direct = rc, true
	c.mu.Unlock()
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		p.mu.Lock()
		if int(fd) >= len(p.byFD) {
			p.byFD = append(p.byFD, make([]*conn, int(fd)+1-len(p.byFD)+len(p.byFD)/2)...)
		}
		c.fd = int32(fd)
		p.byFD[fd] = c
		p.mu.Unlock()
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("epoll_ctl add: %w", cerr)
	}
	return nil
}

// forget drops the poller's reference to a closed c.
func (p *poller) forget(c *conn) {
	p.mu.Lock()
	if int(c.fd) < len(p.byFD) && p.byFD[c.fd] == c {
		p.byFD[c.fd] = nil
	}
	p.mu.Unlock()
}

// handOff stops reading c here and gives it a goroutine of its own, for
// what follows a STARTTLS message.
func (p *poller) handOff(c *conn, answer chan bool, rest []byte) {
	_ = c.rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.forget(c)
	c.mu.Lock()
	c.direct = false
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
			n, werr = unix.EpollWait(int(fd), p.events, 0)
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
		p.ready = p.ready[:0]
		p.mu.Lock()
		for _, ev := range p.events[:n] {
			if fd := int(ev.Fd); fd < len(p.byFD) && p.byFD[fd] != nil {
				p.ready = append(p.ready, p.byFD[fd])
			}
		}
		p.mu.Unlock()
		for i, c := range p.ready {
			p.read(c)
			p.ready[i] = nil
		}
	}
}

// read takes what one socket has; level-triggered epoll reports it again
// if more is left.
func (p *poller) read(c *conn) {
	if c.isClosed() {
		return
	}
	var n int
	var rerr error
	if err := c.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), p.buf)
		return true
	}); err != nil {
		return // closed meanwhile
	}
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
