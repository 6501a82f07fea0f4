package server

import (
	"bytes"
	"errors"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// framer cuts a connection's byte stream into messages. Between reads it
// keeps only an unfinished message (nothing, for an idle client), so the
// socket can be read into a buffer that is not the connection's own.
type framer struct {
	partial  []byte         // an unfinished header or message
	skip     int64          // body bytes of a refused message still to discard
	skipping bool           // discarding; answer skipCode when done
	skipCode wire.ErrorCode // what to answer the refused message with
}

// feed frames data and posts each message to the engine. After a STARTTLS
// message it stops and returns the bytes that followed it (the start of
// the TLS handshake, a copy) with the channel that will carry the
// engine's answer. ok is false once the server stopped.
func (c *conn) feed(data []byte) (rest []byte, startTLS chan bool, ok bool) {
	f := &c.framer
	for len(data) > 0 || (f.skipping && f.skip == 0) {
		if f.skipping {
			k := min(int64(len(data)), f.skip)
			data, f.skip = data[k:], f.skip-k
			if f.skip > 0 {
				return nil, nil, true
			}
			f.skipping = false
			if !c.post(event{kind: evFrameError, c: c, code: f.skipCode}) {
				return nil, nil, false
			}
			continue
		}
		var hdr []byte
		if len(f.partial) < wire.HeaderSize {
			if len(f.partial) == 0 && len(data) >= wire.HeaderSize {
				hdr = data[:wire.HeaderSize]
			} else {
				k := min(wire.HeaderSize-len(f.partial), len(data))
				f.partial = append(f.partial, data[:k]...)
				data = data[k:]
				if len(f.partial) < wire.HeaderSize {
					return nil, nil, true
				}
				hdr = f.partial
			}
			if !c.checkHeader(hdr) {
				if len(f.partial) == 0 {
					data = data[wire.HeaderSize:]
				}
				f.partial = nil
				continue
			}
		} else {
			hdr = f.partial[:wire.HeaderSize]
		}
		_, n, _ := wire.ParseHeader(hdr)
		size := wire.HeaderSize + int(n)
		var raw []byte
		switch {
		case len(f.partial) == 0 && len(data) >= size:
			// The common case: a whole message in one read.
			raw = bytes.Clone(data[:size])
			data = data[size:]
		default:
			if len(f.partial) == 0 {
				f.partial = make([]byte, 0, size)
			} else if cap(f.partial) < size {
				f.partial = append(make([]byte, 0, size), f.partial...)
			}
			k := min(size-len(f.partial), len(data))
			f.partial = append(f.partial, data[:k]...)
			data = data[k:]
			if len(f.partial) < size {
				return nil, nil, true
			}
			raw, f.partial = f.partial, nil
		}
		answer, ok := c.handle(raw)
		if !ok {
			return nil, nil, false
		}
		if answer != nil {
			return bytes.Clone(data), answer, true
		}
	}
	return nil, nil, true
}

// checkHeader refuses an unknown type or an oversized message: its body is
// read to its announced end and only then answered, as upstream does.
// Skipped messages are no sign of life.
func (c *conn) checkHeader(hdr []byte) bool {
	t, n, _ := wire.ParseHeader(hdr)
	if t.Known() && wire.HeaderSize+int64(n) <= int64(c.s.cfg.Engine.MaxReceiveSize) {
		return true
	}
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
	c.framer.skip, c.framer.skipping, c.framer.skipCode = int64(n), true, code
	return false
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
