// Package server is the qnetd TCP front end: it accepts connections, frames
// and decodes their messages, feeds them to the decision engine running in
// a single goroutine, and writes the engine's replies. On Linux one epoll
// loop reads every plaintext connection, so an idle client costs about
// what it costs upstream; STARTTLS switches a connection to TLS in place,
// handing over any bytes already read, and gives it a reader goroutine.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Config is the server's configuration.
type Config struct {
	Engine engine.Config
	// Network is "tcp" (dual-stack), "tcp4" or "tcp6".
	Network string
	// Host is the listen address; empty = every address.
	Host string
	Port int
	// MaxClients closes new connections beyond this many (0 = unlimited).
	MaxClients int
	// Limits on connections that have not completed INIT (limits.go);
	// 0 = none. InitTimeout closes such a connection that long after it
	// was accepted. MaxNewcomers bounds them in all (never above half of
	// the descriptor budget), MaxNewcomersPerSource per IPv4 address or
	// IPv6 /64.
	InitTimeout           time.Duration
	MaxNewcomers          int
	MaxNewcomersPerSource int
	// FDReserve is how many descriptors below the open-file limit
	// (RLIMIT_NOFILE when New runs) client connections stop: the rest of
	// the process (listeners, logs, the pairing endpoint, /health) keeps
	// them during a flood.
	FDReserve int
	// SendBuffers is the per-client queue of unsent messages; a client that
	// lets it fill up is disconnected.
	SendBuffers int
	// TLS is the server side of STARTTLS; nil when TLS is off.
	TLS *tls.Config
	Log zerolog.Logger
	// Hooks, optional: told about TLS handshakes and bad input (metrics).
	Hooks Hooks
	// Observer, optional: told about votes and decisions, in the engine
	// goroutine (status page, history).
	Observer engine.Observer
	// NoEpoll reads every connection from a goroutine of its own, as on
	// systems without epoll (tests use it to cover that path).
	NoEpoll bool
	// ReturnMemory gives the memory of departed clients back to the
	// system soon after many of them left at once (a daemon wants this;
	// a library user may not).
	ReturnMemory bool
	// BusyGCPercent, when not 0, is set as the process's GC percent
	// (debug.SetGCPercent) once BusyClients clients are connected.
	BusyGCPercent int
	// Clock is the time source of every deadline (clock.go); nil is
	// MonotonicClock. Tests give a virtual one.
	Clock Clock
	// LogBatch, optional: the writer under Log. The server holds its
	// lines while it handles one event (or one wake of its sockets), so
	// that what a decision logs goes out in one write (internal/logbatch).
	LogBatch LogBatcher
}

// LogBatcher holds log lines between Hold and the matching Release.
type LogBatcher interface {
	Hold()
	Release()
}

// Hooks observe server events; every field may be nil. They are called
// from connection goroutines and must be safe for concurrent use.
type Hooks struct {
	TLSHandshake func(err error)
	BadMessage   func(reason string)
	DPDTimeout   func()
}

// DefaultConfig is upstream's defaults, and gives memory back after
// departures.
func DefaultConfig() Config {
	return Config{
		Engine:       engine.DefaultConfig(),
		Network:      "tcp",
		Port:         5403,
		SendBuffers:  32,
		Log:          zerolog.Nop(),
		ReturnMemory: true,

		InitTimeout:           DefaultInitTimeout,
		MaxNewcomers:          DefaultMaxNewcomers,
		MaxNewcomersPerSource: DefaultMaxNewcomersPerSource,
		FDReserve:             DefaultFDReserve,
	}
}

// Server is a running qnetd.
type Server struct {
	cfg    Config
	log    zerolog.Logger
	eng    *engine.Engine
	events chan event
	done   chan struct{}
	ln     atomic.Value // net.Listener
	clock  Clock
	poll   *poller // nil: a goroutine per connection
	lim    limits
	fresh  *newcomers // connections before INIT
	refuse refusalLog

	// engMu makes whoever holds it the engine goroutine: a connection's
	// reader gives its events to the engine itself (process), without a
	// hand-over to another goroutine and thread for every message; the
	// loop serves the rest (timer, status, bookkeeping, shutdown).
	engMu   sync.Mutex
	stopped bool // guarded by engMu: the engine shut down
	// sink, in the framing tests, takes the connections' events instead
	// of the engine.
	sink func(event) bool
	// guarded by engMu
	conns map[engine.ClientID]*conn
	mem   memoryReturn
	tick  ticker

	serveMu sync.Mutex
	serving sync.WaitGroup // Serve calls

	nextID   atomic.Uint64
	nClients atomic.Int64
	closing  atomic.Bool
	wg       sync.WaitGroup
	stopOnce sync.Once
	loopDone chan struct{}
}

// New creates a server; Serve runs it.
func New(cfg Config) *Server {
	if cfg.SendBuffers < 2 {
		cfg.SendBuffers = 32
	}
	if cfg.Network == "" {
		cfg.Network = "tcp"
	}
	if cfg.Clock == nil {
		cfg.Clock = MonotonicClock()
	}
	cfg.Engine.InitTimeout = max(cfg.InitTimeout, 0)
	s := &Server{
		cfg:      cfg,
		log:      cfg.Log,
		eng:      engine.New(cfg.Engine, cfg.Log),
		events:   make(chan event, 1024),
		done:     make(chan struct{}),
		conns:    make(map[engine.ClientID]*conn),
		loopDone: make(chan struct{}),
		clock:    cfg.Clock,
	}
	s.lim = computeLimits(&cfg, openFileLimit())
	s.fresh = newNewcomers(s.lim)
	s.refuse.s = s
	s.log.Debug().Dur("init_timeout", cfg.InitTimeout).Int("max_before_init", s.lim.maxNew).
		Int("max_per_address", s.lim.maxPerSource).Int("max_connections", s.lim.maxConns).Msg("connection limits")
	if cfg.Observer != nil {
		s.eng.SetObserver(cfg.Observer)
	}
	if !cfg.NoEpoll {
		p, err := newPoller(s)
		if err != nil {
			s.log.Debug().Err(err).Msg("no epoll loop; one goroutine per connection")
		} else {
			s.poll = p
			s.wg.Add(1)
			go p.run()
		}
	}
	go s.loop()
	return s
}

// Listen opens the listening socket as configured.
func (s *Server) Listen() (net.Listener, error) {
	host := s.cfg.Host
	if host == "" && s.cfg.Network == "tcp4" {
		host = "0.0.0.0"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(s.cfg.Port))
	lc := net.ListenConfig{}
	ln, err := lc.Listen(context.Background(), s.cfg.Network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", addr, s.cfg.Network, err)
	}
	s.ln.Store(ln)
	return ln, nil
}

// Addr is the listening address (nil before Serve).
func (s *Server) Addr() net.Addr {
	if ln, ok := s.ln.Load().(net.Listener); ok {
		return ln.Addr()
	}
	return nil
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.serveMu.Lock()
	s.ln.Store(ln)
	if s.closing.Load() {
		s.serveMu.Unlock()
		ln.Close()
		return nil
	}
	s.serving.Add(1)
	s.serveMu.Unlock()
	defer s.serving.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			// Out of file descriptors and similar: wait instead of spinning
			// (upstream logs ~6000 lines a second at 100% CPU here).
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else {
				backoff = min(2*backoff, time.Second)
			}
			s.log.Error().Err(err).Dur("retry_in", backoff).Msg("cannot accept connection")
			select {
			case <-time.After(backoff):
			case <-s.done:
				return nil
			}
			continue
		}
		backoff = 0
		c := s.admit(nc)
		if c == nil {
			continue
		}
		if s.poll == nil {
			s.process(event{kind: evConnect, c: c})
			s.wg.Add(1)
			go c.serve(nil, nil)
			continue
		}
		err = s.poll.adopt(c)
		s.process(event{kind: evConnect, c: c})
		if err == nil {
			err = s.poll.watch(c)
		}
		if err != nil && !c.isClosed() {
			s.log.Error().Err(err).Str("addr", c.addr).Msg("cannot watch connection")
			c.fail("cannot watch connection: " + err.Error())
		}
	}
}

// admit applies the connection limits to a new connection: it returns
// the connection, or nil when nc was closed at once.
func (s *Server) admit(nc net.Conn) *conn {
	reason := ""
	switch n := s.nClients.Load(); {
	case s.cfg.MaxClients > 0 && n >= int64(s.cfg.MaxClients):
		reason = refusedMax
	case n >= int64(s.lim.maxConns):
		reason = refusedBudget
	}
	var c *conn
	if reason == "" {
		c = newConn(s, engine.ClientID(s.nextID.Add(1)), nc)
		var victim *conn
		if victim, reason = s.fresh.admit(c, sourceOf(nc.RemoteAddr())); victim != nil {
			s.refuse.note(refusedEvicted, victim.addr)
			victim.drop("evicted: " + refusedEvicted)
		}
	}
	if reason != "" {
		s.refuse.note(reason, nc.RemoteAddr().String())
		nc.Close()
		return nil
	}
	s.nClients.Add(1)
	return c
}

// Shutdown stops accepting, drops every client (without re-deciding votes,
// as upstream) and waits for the connection goroutines.
func (s *Server) Shutdown() {
	s.stopOnce.Do(func() {
		s.serveMu.Lock()
		s.closing.Store(true)
		if ln, ok := s.ln.Load().(net.Listener); ok {
			ln.Close()
		}
		s.serveMu.Unlock()
		// Every accepted connection reaches the engine before it stops,
		// so that it is closed with the others.
		s.serving.Wait()
		s.events <- event{kind: evShutdown}
		<-s.loopDone
		close(s.done)
		if s.poll != nil {
			s.poll.close()
		}
		s.wg.Wait()
	})
}

// Status returns a copy of the engine's state, taken in the engine
// goroutine between two events, or ctx's error when the engine does not
// answer in time. It is how every reader (IPC, status page, metrics, the
// health check) sees the engine.
func (s *Server) Status(ctx context.Context) (*engine.Status, error) {
	reply := make(chan *engine.Status, 1)
	select {
	case s.events <- event{kind: evStatus, status: reply}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.loopDone:
		return nil, ErrStopped
	}
	select {
	case st := <-reply:
		return st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.loopDone:
		// The loop may have answered just before it ended.
		select {
		case st := <-reply:
			return st, nil
		default:
			return nil, ErrStopped
		}
	}
}

// ErrStopped is Status's answer once the server has shut down.
var ErrStopped = errors.New("server stopped")

// NumConnections is the number of open client connections.
func (s *Server) NumConnections() int { return int(s.nClients.Load()) }

type eventKind uint8

const (
	evConnect eventKind = iota + 1
	evMessage
	evFrameError
	evDecodeError
	evTLSStarted
	evClosed
	evTick
	evStatus
	evCall
	evShutdown
)

type event struct {
	kind eventKind
	c    *conn
	msg  *wire.Msg
	raw  []byte
	code wire.ErrorCode
	derr *wire.DecodeError
	cert *engine.PeerCert
	// call runs in the engine goroutine (the server's own bookkeeping).
	call func()
	// status receives the engine's state for a Status call.
	status chan<- *engine.Status
	// startTLS receives the engine's decision for a STARTTLS message.
	startTLS chan bool
	reason   string
}

func (s *Server) loop() {
	defer close(s.loopDone)
	for ev := range s.events {
		if ev.kind == evShutdown {
			s.shutdownEngine()
			return
		}
		s.process(ev)
	}
}

// process gives one event to the engine and performs its answer; false
// once the engine shut down.
func (s *Server) process(ev event) bool {
	s.engMu.Lock()
	defer s.engMu.Unlock()
	if b := s.cfg.LogBatch; b != nil {
		b.Hold()
		defer b.Release()
	}
	if s.stopped {
		if ev.startTLS != nil {
			ev.startTLS <- false
		}
		return false
	}
	s.apply(s.handle(ev), ev.c, ev.startTLS)
	s.armTick()
	return true
}

func (s *Server) shutdownEngine() {
	s.engMu.Lock()
	defer s.engMu.Unlock()
	s.stopped = true
	if s.tick.armed {
		s.tick.stop()
	}
	s.refuse.stop()
	s.apply(s.eng.Shutdown(), nil, nil)
	for id, c := range s.conns {
		c.close()
		delete(s.conns, id)
	}
}

// handle gives one event to the engine, with the time; engMu is held.
func (s *Server) handle(ev event) engine.Batch {
	now := s.clock.Now()
	switch ev.kind {
	case evConnect:
		if ev.c.isClosed() {
			// Evicted before the engine heard of it (conn.drop).
			return engine.Batch{}
		}
		s.conns[ev.c.id] = ev.c
		s.joined()
		return s.eng.Connect(now, ev.c.id, ev.c.addr)
	case evMessage:
		return s.eng.Message(now, ev.c.id, ev.msg, ev.raw)
	case evFrameError:
		return s.eng.FrameError(now, ev.c.id, ev.code)
	case evDecodeError:
		return s.eng.DecodeError(now, ev.c.id, ev.derr)
	case evTLSStarted:
		return s.eng.TLSStarted(now, ev.c.id, ev.cert)
	case evClosed:
		if s.conns[ev.c.id] == ev.c {
			s.log.Debug().Str("addr", ev.c.addr).Str("reason", ev.reason).Msg("client disconnected")
			return s.lost(ev.c)
		}
	case evTick:
		s.tick.armed = false
		return s.eng.Tick(now)
	case evStatus:
		ev.status <- s.eng.Status()
	case evCall:
		ev.call()
	}
	return engine.Batch{}
}

// lost closes a connection the engine still knows, and tells the engine.
func (s *Server) lost(c *conn) engine.Batch {
	delete(s.conns, c.id)
	c.close()
	s.left()
	return s.eng.Disconnect(s.clock.Now(), c.id)
}

// apply performs the engine's batch for an event of c (nil: none):
// sends, then disconnects. Connections that cannot take a message are
// dropped after the whole batch, as upstream does, and the engine's
// answer to that is performed in turn.
func (s *Server) apply(b engine.Batch, c *conn, startTLS chan bool) {
	if startTLS != nil {
		// Answered once the batch is done, as the reader goroutine
		// waiting for it reads on only then.
		ok := b.StartTLS
		defer func() { startTLS <- ok }()
	}
	if b.InitDone && c != nil {
		s.fresh.done(c)
	}
	for {
		var drop []*conn
		for _, m := range b.Sends {
			if to := s.conns[m.To]; to != nil && !s.send(to, m) {
				drop = append(drop, to)
			}
		}
		for _, d := range b.Disconnects {
			if to := s.conns[d.Client]; to != nil {
				s.dropped(to, d.Reason)
			}
		}
		if len(drop) == 0 {
			return
		}
		b = engine.Batch{}
		for _, to := range drop {
			if s.conns[to.id] == to {
				s.log.Debug().Str("addr", to.addr).Msg("client disconnected: cannot write to it")
				nb := s.lost(to)
				b.Sends = append(b.Sends, nb.Sends...)
				b.Disconnects = append(b.Disconnects, nb.Disconnects...)
			}
		}
	}
}

// send queues one message; false when the connection must go.
func (s *Server) send(c *conn, m engine.Send) bool {
	b := m.Raw
	if b == nil {
		b = m.Msg.Append(make([]byte, 0, 64))
	}
	res := full
	if len(b) <= int(s.cfg.Engine.MaxSendSize) {
		res = c.enqueue(b)
	}
	switch res {
	case full:
		s.log.Warn().Str("addr", c.addr).Int("queue", s.cfg.SendBuffers).Msg("client does not read its replies, disconnecting")
		return false
	case broken:
		return false
	}
	return true
}

// dropped closes a connection the engine let go.
func (s *Server) dropped(c *conn, r engine.DisconnectReason) {
	delete(s.conns, c.id)
	c.close()
	s.left()
	switch r {
	case engine.ReasonInitTimeout:
		s.refuse.note(refusedInit, c.addr)
	case engine.ReasonDeadPeer:
		if s.cfg.Hooks.DPDTimeout != nil {
			s.cfg.Hooks.DPDTimeout()
		}
	}
}
