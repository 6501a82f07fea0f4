package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// serve reads the connection in a goroutine of its own until it ends: TLS
// connections, and every connection where there is no poller. A connection
// the poller hands over after STARTTLS comes with the engine's pending
// answer and the bytes read after the STARTTLS message.
func (c *conn) serve(answer chan bool, rest []byte) {
	defer c.s.wg.Done()
	c.fail(c.readLoop(answer, rest))
}

// readLoop returns why the connection ended.
func (c *conn) readLoop(answer chan bool, rest []byte) string {
	var r io.Reader = c.raw
	var reason string
	if answer != nil {
		if r, reason = c.afterStartTLS(answer, rest); reason != "" {
			return reason
		}
	}
	// Small: tls.Conn keeps the rest of a record, and a message that
	// does not fit is put together by the framer.
	buf := make([]byte, 1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			rest, answer, ok := c.feed(buf[:n])
			if !ok {
				return "closed"
			}
			if answer != nil {
				if r, reason = c.afterStartTLS(answer, rest); reason != "" {
					return reason
				}
				continue
			}
		}
		if err != nil {
			return c.readErr(err)
		}
	}
}

// afterStartTLS waits for the engine's verdict on a STARTTLS message and
// returns what to read from next: the TLS connection, or (refused) the
// plaintext socket.
func (c *conn) afterStartTLS(answer chan bool, rest []byte) (io.Reader, string) {
	var ok bool
	select {
	case ok = <-answer:
	case <-c.s.done:
		return nil, "closed"
	}
	var r io.Reader = c.raw
	if len(rest) > 0 {
		r = io.MultiReader(bytes.NewReader(rest), c.raw)
	}
	if !ok {
		return r, ""
	}
	tc, reason := c.startTLS(r)
	if reason != "" {
		return nil, reason
	}
	return tc, ""
}

func (c *conn) readErr(err error) string {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by client"
	case c.isClosed():
		return "closed"
	}
	return err.Error()
}

// prefixConn is raw with reads from r: bytes read before the handshake (a
// pipelined ClientHello), then the socket.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

func (c *conn) startTLS(r io.Reader) (*tls.Conn, string) {
	cfg := c.s.cfg.TLS
	if cfg == nil {
		return nil, "STARTTLS without a TLS configuration"
	}
	var nc net.Conn = c.raw
	if r != io.Reader(c.raw) {
		nc = &prefixConn{Conn: c.raw, r: r}
	}
	tc := tls.Server(nc, cfg)
	c.mu.Lock()
	c.nc = tc
	c.mu.Unlock()
	// The handshake runs under dead peer detection, like upstream's
	// handshake inside normal reads.
	err := tc.HandshakeContext(context.Background())
	if c.s.cfg.Hooks.TLSHandshake != nil {
		c.s.cfg.Hooks.TLSHandshake(err)
	}
	if err != nil {
		c.s.log.Warn().Str("addr", c.addr).Str("cluster", c.cluster).Str("reason", handshakeReason(err)).Err(err).Msg("TLS handshake failed")
		return nil, "TLS handshake failed: " + err.Error()
	}
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
		return nil, "closed"
	}
	return tc, ""
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
