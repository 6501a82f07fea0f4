package wire

import (
	"bytes"
	"io"
)

// Framer cuts a byte stream into messages (protocol notes §1.2): a 6-byte
// header, then the body of the announced length. A message of an unknown
// type or longer than the receiver's maximum is refused: its body is read
// to its announced end and discarded, and only then answered, as upstream
// does. Between reads a Framer keeps only an unfinished message (nothing,
// for an idle peer), so a connection may read into a buffer that is not
// its own. The server, the test client and the codec's fuzz tests all
// frame with it. The zero Framer is ready.
type Framer struct {
	partial []byte // an unfinished header or message
	skip    int64  // body bytes of a refused message still to discard
	// refused is why the message being discarded was refused (0: none).
	refused ErrorCode
	// emptyUnknown: it is an unknown type with an empty body, which
	// upstream answers with error code 0 (protocol notes, fact 7).
	emptyUnknown bool
}

// Frame is one message the Framer found.
type Frame struct {
	// Raw is the whole message (header and body), a copy of its own; nil
	// for a refused one.
	Raw []byte
	// Refused says why a message was refused: ErrUnsupportedMessage (an
	// unknown type) or ErrMessageTooLong. Answer is the code to send back
	// for it.
	Refused, Answer ErrorCode
}

// Next takes the next frame from data: ok is false when data ran out
// first (what it held is kept for the next call), else rest is what
// follows the frame. maxSize bounds a whole message, header included.
func (f *Framer) Next(data []byte, maxSize uint32) (fr Frame, rest []byte, ok bool) {
	for {
		if f.refused != 0 {
			k := min(int64(len(data)), f.skip)
			data, f.skip = data[k:], f.skip-k
			if f.skip > 0 {
				return Frame{}, nil, false
			}
			fr = Frame{Refused: f.refused, Answer: f.refused}
			if f.emptyUnknown {
				fr.Answer = ErrNoError
			}
			f.refused, f.emptyUnknown = 0, false
			return fr, data, true
		}
		if len(data) == 0 {
			return Frame{}, nil, false
		}
		if len(f.partial) >= HeaderSize || f.header(&data, maxSize) {
			break
		}
		if f.refused == 0 {
			return Frame{}, nil, false // an unfinished header
		}
	}
	var hdr []byte
	if len(f.partial) >= HeaderSize {
		hdr = f.partial
	} else {
		hdr = data
	}
	_, n, _ := ParseHeader(hdr)
	size := HeaderSize + int(n)
	if len(f.partial) == 0 && len(data) >= size {
		// The common case: a whole message in one read.
		return Frame{Raw: bytes.Clone(data[:size])}, data[size:], true
	}
	if len(f.partial) == 0 {
		f.partial = make([]byte, 0, size)
	} else if cap(f.partial) < size {
		f.partial = append(make([]byte, 0, size), f.partial...)
	}
	k := min(size-len(f.partial), len(data))
	f.partial = append(f.partial, data[:k]...)
	if len(f.partial) < size {
		return Frame{}, nil, false
	}
	raw := f.partial
	f.partial = nil
	return Frame{Raw: raw}, data[k:], true
}

// header reads a header from *data (and what partial holds). It returns
// true when a header of an acceptable message is there (in partial, or
// at the start of *data, which is then left as it is); false when the
// header is unfinished (kept in partial) or the message is refused (then
// f.refused is set and *data starts after the header).
func (f *Framer) header(data *[]byte, maxSize uint32) bool {
	d := *data
	var hdr []byte
	if len(f.partial) == 0 && len(d) >= HeaderSize {
		hdr = d[:HeaderSize]
	} else {
		k := min(HeaderSize-len(f.partial), len(d))
		f.partial = append(f.partial, d[:k]...)
		*data = d[k:]
		if len(f.partial) < HeaderSize {
			return false
		}
		hdr = f.partial
	}
	t, n, _ := ParseHeader(hdr)
	if t.Known() && HeaderSize+int64(n) <= int64(maxSize) {
		return true
	}
	if len(f.partial) == 0 {
		*data = d[HeaderSize:]
	}
	f.partial = nil
	f.skip = int64(n)
	f.refused = ErrMessageTooLong
	if !t.Known() {
		f.refused, f.emptyUnknown = ErrUnsupportedMessage, n == 0
	}
	return false
}

// Pending is how many bytes the Framer holds (at most one message).
func (f *Framer) Pending() int { return len(f.partial) }

// need is how many more bytes the current frame takes, at least 1.
func (f *Framer) need() int {
	switch {
	case f.refused != 0:
		return int(min(max(f.skip, 1), 64<<10))
	case len(f.partial) < HeaderSize:
		return HeaderSize - len(f.partial)
	}
	_, n, _ := ParseHeader(f.partial)
	return HeaderSize + int(n) - len(f.partial)
}

// Read reads one frame from r, reading no byte beyond it (r may be shared
// with a TLS handshake or another reader afterwards).
func (f *Framer) Read(r io.Reader, maxSize uint32) (Frame, error) {
	var buf []byte
	for {
		k := f.need()
		if cap(buf) < k {
			buf = make([]byte, k)
		}
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			return Frame{}, err
		}
		if fr, _, ok := f.Next(buf[:k], maxSize); ok {
			return fr, nil
		}
	}
}
