// Package logbatch gathers log lines while the server handles one event
// and writes them out together.
//
// A decision logs two or three lines (the decision, each node's vote);
// written one by one, each is a system call, and on an otherwise idle
// server each call also wakes the Go runtime's monitor thread. Held and
// written at once, they cost one.
package logbatch

import (
	"io"
	"sync"
	"time"
)

// MaxHeld is how many bytes are held at most: past it the lines go out
// even while held, so a long hold never grows memory.
const MaxHeld = 64 << 10

// MaxDelay is how long a line is held at most. Holds from several
// goroutines may overlap one after the other under load, so that none is
// the last for a while; the log must not fall behind by more than this.
const MaxDelay = 100 * time.Millisecond

// Writer passes each Write straight to its output, except between Hold
// and the matching Release: then lines are kept, in order, and the last
// Release writes them with one call (sooner past MaxHeld bytes or
// MaxDelay). Holds nest and may come from several
// goroutines; lines go out when none is held. It is safe for concurrent
// use.
type Writer struct {
	mu    sync.Mutex
	out   io.Writer
	buf   []byte
	since time.Time // when the oldest line in buf came
	held  int
	now   func() time.Time
}

// New returns a Writer over out.
func New(out io.Writer) *Writer { return &Writer{out: out, now: time.Now} }

// Write writes p, or keeps it while held. A line kept is reported
// written; an error writing it later is lost, as a logger has nowhere
// better to report it.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held == 0 {
		return w.out.Write(p)
	}
	if len(w.buf) == 0 {
		w.since = w.now()
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= MaxHeld || w.overdue() {
		w.flush()
	}
	return len(p), nil
}

// Hold keeps the lines written from now until the matching Release.
func (w *Writer) Hold() {
	w.mu.Lock()
	w.held++
	w.mu.Unlock()
}

// Release ends a Hold; the last one writes the lines kept.
func (w *Writer) Release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held == 0 {
		return
	}
	w.held--
	if w.held == 0 || w.overdue() {
		w.flush()
	}
}

// overdue: the oldest line kept has waited MaxDelay; w.mu is held.
func (w *Writer) overdue() bool {
	return len(w.buf) > 0 && w.now().Sub(w.since) >= MaxDelay
}

// flush writes what is kept; w.mu is held.
func (w *Writer) flush() {
	if len(w.buf) == 0 {
		return
	}
	_, _ = w.out.Write(w.buf)
	w.buf = w.buf[:0]
}
