package client

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Conn is a TCP connection to a qnetd speaking for one Node. It is not
// safe for concurrent use; Transport layers add locking.
type Conn struct {
	Node *Node
	nc   net.Conn
	br   *bufio.Reader
}

// Dial connects to addr.
func Dial(addr string, n *Node, timeout time.Duration) (*Conn, error) {
	return DialWith(&net.Dialer{Timeout: timeout}, addr, n)
}

// DialWith connects to addr with d, e.g. from the local address
// d.LocalAddr (see Loopback).
func DialWith(d *net.Dialer, addr string, n *Node) (*Conn, error) {
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		if d.LocalAddr != nil {
			return nil, fmt.Errorf("dial %s from %s: %w", addr, d.LocalAddr, err)
		}
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return NewConn(nc, n), nil
}

// NewConn speaks for n on a connection the caller made, for example one
// bound to a chosen source address.
func NewConn(nc net.Conn, n *Node) *Conn {
	n.opened()
	return &Conn{Node: n, nc: nc, br: bufio.NewReader(nc)}
}

// NetConn is the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Write sends one message.
func (c *Conn) Write(m *wire.Msg) error {
	_, err := c.nc.Write(m.Append(nil))
	return err
}

// ReadMsg reads and decodes one message.
func (c *Conn) ReadMsg() (*wire.Msg, []byte, error) {
	return ReadMsg(c.br)
}

// maxMsg bounds a message from the server; a longer one is an error.
const maxMsg = 16 << 20

// ReadMsg reads one framed message from r and decodes it.
func ReadMsg(r io.Reader) (*wire.Msg, []byte, error) {
	var f wire.Framer
	fr, err := f.Read(r, maxMsg)
	if err != nil {
		return nil, nil, err
	}
	if fr.Raw == nil {
		return nil, nil, fmt.Errorf("message refused: %s", fr.Refused)
	}
	m, err := wire.Decode(fr.Raw)
	return m, fr.Raw, err
}

// Call sends m and reads until its reply, handing every message on the way
// to the node (VOTE_INFO replies are sent as the real client does).
func (c *Conn) Call(m *wire.Msg) (*wire.Msg, error) {
	c.Node.Await(m)
	defer c.Node.Await(nil)
	if err := c.Write(m); err != nil {
		return nil, err
	}
	for {
		r, _, err := c.ReadMsg()
		if err != nil {
			return nil, err
		}
		if ans := c.Node.Handle(r); ans != nil {
			if err := c.Write(ans); err != nil {
				return nil, err
			}
		}
		if c.Node.Answered() {
			return r, nil
		}
	}
}

// ErrRefused is returned by Handshake when the server answers with an error.
var ErrRefused = errors.New("refused by server")

// Handshake does PREINIT, optional STARTTLS, INIT and SET_OPTION(KAP),
// like the real client. tlsCfg nil means plain text.
func (c *Conn) Handshake(ring wire.RingID, tlsCfg *tls.Config) error {
	r, err := c.Call(c.Node.Preinit())
	if err != nil {
		return fmt.Errorf("preinit: %w", err)
	}
	if r.Type != wire.MsgPreinitReply {
		return fmt.Errorf("preinit: %w: %s", ErrRefused, r)
	}
	if tlsCfg != nil {
		if r.TLSSupported == wire.TLSUnsupported {
			return fmt.Errorf("server does not support TLS")
		}
		if err := c.Write(c.Node.StartTLS()); err != nil {
			return err
		}
		tc := tls.Client(c.nc, tlsCfg)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		c.nc = tc
		c.br = bufio.NewReader(tc)
	}
	r, err = c.Call(c.Node.Init(ring))
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if r.Type != wire.MsgInitReply || r.ReplyErrorCode != 0 {
		return fmt.Errorf("init: %w: %s", ErrRefused, r)
	}
	if c.Node.ServerSupportsKAP() {
		if _, err := c.Call(c.Node.SetOptionKAP()); err != nil {
			return fmt.Errorf("set option: %w", err)
		}
	}
	return nil
}
