package server

import (
	"bytes"
	"errors"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// feed frames data (wire.Framer) and posts each message to the engine.
// After a STARTTLS message it stops and returns the bytes that followed it
// (the start of the TLS handshake, a copy) with the channel that will
// carry the engine's answer. ok is false once the server stopped.
func (c *conn) feed(data []byte) (rest []byte, startTLS chan bool, ok bool) {
	for {
		fr, more, found := c.framer.Next(data, c.s.cfg.Engine.MaxReceiveSize)
		if !found {
			return nil, nil, true
		}
		data = more
		if fr.Raw == nil {
			// Refused messages are no sign of life.
			if c.s.cfg.Hooks.BadMessage != nil {
				c.s.cfg.Hooks.BadMessage(fr.Refused.String())
			}
			if !c.post(event{kind: evFrameError, c: c, code: fr.Answer}) {
				return nil, nil, false
			}
			continue
		}
		answer, ok := c.handle(fr.Raw)
		if !ok {
			return nil, nil, false
		}
		if answer != nil {
			return bytes.Clone(data), answer, true
		}
	}
}

// handle decodes one whole message and posts it to the engine.
func (c *conn) handle(raw []byte) (startTLS chan bool, ok bool) {
	m, err := wire.Decode(raw)
	if err != nil {
		var de *wire.DecodeError
		errors.As(err, &de)
		if c.s.cfg.Hooks.BadMessage != nil {
			c.s.cfg.Hooks.BadMessage("decode error")
		}
		return nil, c.post(event{kind: evDecodeError, c: c, derr: de})
	}
	c.s.log.Trace().Str("addr", c.addr).Stringer("msg", m).Msg("message received")
	if m.Type == wire.MsgPreinit && m.Has.Has(wire.OptClusterName) {
		c.cluster = string(m.ClusterName)
	}
	if m.Type == wire.MsgStartTLS {
		startTLS = make(chan bool, 1)
	}
	return startTLS, c.post(event{kind: evMessage, c: c, msg: m, raw: raw, startTLS: startTLS})
}
