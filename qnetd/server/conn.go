package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// conn is one client connection: a reader goroutine (framing, decoding,
// STARTTLS, dead peer detection) and a writer goroutine draining a bounded
// queue, coalescing whatever is queued into one write.
type conn struct {
	s    *Server
	id   engine.ClientID
	addr string
	// cluster is the name from the client's PREINIT, for log lines about
	// its TLS handshake (the engine has it too, but handshakes run here).
	cluster string
	raw     net.Conn
	br      *bufio.Reader

	mu     sync.Mutex // guards nc and timers
	nc     net.Conn   // raw, or the tls.Conn after STARTTLS
	timers [3]*time.Timer

	sendq     chan []byte
	closed    chan struct{}
	closeOnce sync.Once
	dpd       atomic.Int64 // ns; 0 = disabled
}

func newConn(s *Server, id engine.ClientID, nc net.Conn) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		// Go sets TCP_NODELAY already; say so, since upstream's Nagle
		// stall (~40 ms per decision) is what this avoids.
		_ = tc.SetNoDelay(true)
	}
	return &conn{
		s:      s,
		id:     id,
		addr:   nc.RemoteAddr().String(),
		raw:    nc,
		nc:     nc,
		br:     bufio.NewReaderSize(nc, 4096),
		sendq:  make(chan []byte, s.cfg.SendBuffers),
		closed: make(chan struct{}),
	}
}

func (c *conn) run() {
	defer c.s.wg.Done()
	defer c.s.nClients.Add(-1)
	c.s.events <- event{kind: evConnect, c: c}
	go c.writer()
	reason := c.read()
	select {
	case c.s.events <- event{kind: evClosed, c: c, reason: reason}:
	case <-c.s.done:
	}
	c.close()
}

// close is idempotent and safe from any goroutine.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.mu.Lock()
		for i, t := range c.timers {
			if t != nil {
				t.Stop()
				c.timers[i] = nil
			}
		}
		nc := c.nc
		c.mu.Unlock()
		nc.Close()
		if nc != c.raw {
			c.raw.Close()
		}
	})
}

func (c *conn) closeAfterFlush() { c.close() }

// enqueue queues b without blocking; false when the queue is full.
func (c *conn) enqueue(b []byte) bool {
	select {
	case <-c.closed:
		return true
	default:
	}
	select {
	case c.sendq <- b:
		return true
	default:
		return false
	}
}

func (c *conn) writer() {
	buf := make([]byte, 0, 4096)
	for {
		var b []byte
		select {
		case b = <-c.sendq:
		case <-c.closed:
			return
		}
		buf = append(buf[:0], b...)
	more:
		for {
			select {
			case b = <-c.sendq:
				buf = append(buf, b...)
			default:
				break more
			}
		}
		c.mu.Lock()
		w := c.nc
		c.mu.Unlock()
		if _, err := w.Write(buf); err != nil {
			c.close()
			return
		}
		if cap(buf) > 64<<10 {
			buf = make([]byte, 0, 4096)
		}
	}
}

func (c *conn) setDPD(d time.Duration) {
	c.dpd.Store(int64(d))
	c.resetDeadline()
}

func (c *conn) resetDeadline() {
	d := time.Duration(c.dpd.Load())
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = c.raw.SetReadDeadline(t)
}

func (c *conn) armTimer(k engine.TimerKind, d time.Duration, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.timers[k]; t != nil {
		t.Stop()
	}
	c.timers[k] = time.AfterFunc(d, func() {
		select {
		case c.s.events <- event{kind: evTimer, c: c, timer: k, gen: gen}:
		case <-c.closed:
		}
	})
}

func (c *conn) stopTimer(k engine.TimerKind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.timers[k]; t != nil {
		t.Stop()
		c.timers[k] = nil
	}
}

func (c *conn) post(ev event) bool {
	select {
	case c.s.events <- ev:
		return true
	case <-c.closed:
		return false
	}
}

// read frames messages until the connection ends and returns why it ended.
func (c *conn) read() string {
	maxRecv := int64(c.s.cfg.Engine.MaxReceiveSize)
	var hdr [wire.HeaderSize]byte
	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return c.readErr(err)
		}
		t, n, _ := wire.ParseHeader(hdr[:])
		// Upstream reads a skipped body to its announced end and answers
		// only then; skipped messages do not count as a sign of life.
		if !t.Known() || wire.HeaderSize+int64(n) > maxRecv {
			code := wire.ErrMessageTooLong
			if !t.Known() {
				code = wire.ErrUnsupportedMessage
			}
			if c.s.cfg.Hooks.BadMessage != nil {
				c.s.cfg.Hooks.BadMessage(code.String())
			}
			if !t.Known() && n == 0 {
				code = wire.ErrNoError // upstream quirk, see protocol notes fact 7
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
				return c.readErr(err)
			}
			if !c.post(event{kind: evFrameError, c: c, code: code}) {
				return "closed"
			}
			continue
		}
		raw := make([]byte, wire.HeaderSize+int(n))
		copy(raw, hdr[:])
		if _, err := io.ReadFull(c.br, raw[wire.HeaderSize:]); err != nil {
			return c.readErr(err)
		}
		c.resetDeadline()
		m, err := wire.Decode(raw)
		if err != nil {
			var de *wire.DecodeError
			errors.As(err, &de)
			if c.s.cfg.Hooks.BadMessage != nil {
				c.s.cfg.Hooks.BadMessage("decode error")
			}
			if !c.post(event{kind: evDecodeError, c: c, derr: de}) {
				return "closed"
			}
			continue
		}
		c.s.log.Trace().Str("addr", c.addr).Stringer("msg", m).Msg("message received")
		if m.Type == wire.MsgPreinit && m.Has.Has(wire.OptClusterName) {
			c.cluster = string(m.ClusterName)
		}
		if m.Type != wire.MsgStartTLS {
			if !c.post(event{kind: evMessage, c: c, msg: m, raw: raw}) {
				return "closed"
			}
			continue
		}
		answer := make(chan bool, 1)
		if !c.post(event{kind: evMessage, c: c, msg: m, raw: raw, startTLS: answer}) {
			return "closed"
		}
		var ok bool
		select {
		case ok = <-answer:
		case <-c.closed:
			return "closed"
		}
		if ok {
			if reason := c.startTLS(); reason != "" {
				return reason
			}
		}
	}
}

func (c *conn) readErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by client"
	case errors.As(err, &ne) && ne.Timeout():
		if c.s.cfg.Hooks.DPDTimeout != nil {
			c.s.cfg.Hooks.DPDTimeout()
		}
		c.s.log.Info().Str("addr", c.addr).Dur("interval", time.Duration(c.dpd.Load())).Msg("client sent no message within the dead peer interval, disconnecting")
		return "dead peer detection"
	}
	select {
	case <-c.closed:
		return "closed"
	default:
	}
	return err.Error()
}

// prefixConn replays bytes the framing reader had already buffered (a
// pipelined ClientHello) before reading from the socket again.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

func (c *conn) startTLS() string {
	cfg := c.s.cfg.TLS
	if cfg == nil {
		return "STARTTLS without a TLS configuration"
	}
	var pending []byte
	if n := c.br.Buffered(); n > 0 {
		pending, _ = c.br.Peek(n)
		pending = append([]byte(nil), pending...)
	}
	tc := tls.Server(&prefixConn{Conn: c.raw, r: io.MultiReader(&onceReader{b: pending}, c.raw)}, cfg)
	c.mu.Lock()
	c.nc = tc
	c.mu.Unlock()
	// The handshake runs under the dead peer deadline, like upstream's
	// handshake inside normal reads.
	err := tc.HandshakeContext(context.Background())
	if c.s.cfg.Hooks.TLSHandshake != nil {
		c.s.cfg.Hooks.TLSHandshake(err)
	}
	if err != nil {
		c.s.log.Warn().Str("addr", c.addr).Str("cluster", c.cluster).Str("reason", handshakeReason(err)).Err(err).Msg("TLS handshake failed")
		return "TLS handshake failed: " + err.Error()
	}
	c.br = bufio.NewReaderSize(tc, 4096)
	var pc *engine.PeerCert
	if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		pc = &engine.PeerCert{CommonName: leaf.Subject.CommonName, DNSNames: leaf.DNSNames}
		for _, ext := range leaf.Extensions {
			if ext.Id.Equal([]int{2, 5, 29, 17}) {
				pc.HasSAN = true
			}
		}
	}
	if !c.post(event{kind: evTLSStarted, c: c, cert: pc}) {
		return "closed"
	}
	return ""
}

// onceReader returns b, then EOF (so MultiReader moves on to the socket).
type onceReader struct{ b []byte }

func (o *onceReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, o.b)
	o.b = o.b[n:]
	return n, nil
}

// handshakeReason says in words why a client's TLS handshake failed.
func handshakeReason(err error) string {
	var ue x509.UnknownAuthorityError
	var ce x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.As(err, &ue), strings.Contains(msg, "unknown authority"):
		return "client certificate is not signed by this qnetd's CA (re-run pvecm qdevice setup, or import the old CA)"
	case errors.As(err, &ce) && ce.Reason == x509.Expired, strings.Contains(msg, "expired or is not yet valid"):
		return "client certificate has expired or is not yet valid (check the clocks of the node and this host)"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "didn't provide a certificate"):
		return "client sent no certificate but one is required"
	case errors.Is(err, io.EOF), strings.Contains(msg, "connection reset"):
		return "client closed the connection during the handshake (it may not trust this server's certificate)"
	}
	return "TLS error"
}
