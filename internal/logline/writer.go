// Package logline writes zerolog's JSON events as the human-readable lines
// of zerolog.ConsoleWriter without colour, byte for byte, for a fraction of
// its CPU time.
//
// ConsoleWriter decodes every line back with encoding/json into a map,
// sorts its keys and formats each part through fmt, which costs more than
// making the event; a busy server logs a few lines per decision. This
// writer takes apart the flat objects that zerolog writes with a small
// scanner into reused buffers and writes the line at once. Any line it
// does not reproduce exactly (nested objects, arrays with text that
// json.Marshal would escape, a caller, a name given twice, a Unix time,
// an unknown level, anything that is not such a JSON object) goes to a
// ConsoleWriter with the same settings, so the output is always the same.
// zerolog's globals (field names, level names, TimeFieldFormat) are read
// for every line as ConsoleWriter reads them; arrays are printed as
// zerolog's default InterfaceMarshalFunc prints them, which this module
// never replaces.
package logline

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// maxKept bounds the buffers a line keeps for the next one: a huge line
// must not pin its memory in the pool.
const maxKept = 64 << 10

// Writer is an io.Writer for zerolog.New. Like ConsoleWriter, it may be
// used by many goroutines at once and writes each line to its output in
// one Write.
type Writer struct {
	out    io.Writer
	layout string
	slow   zerolog.ConsoleWriter
	lines  sync.Pool
}

// New writes to out what zerolog.ConsoleWriter{Out: out, NoColor: true,
// TimeFormat: timeFormat} writes; an empty timeFormat is ConsoleWriter's
// default, time.Kitchen.
func New(out io.Writer, timeFormat string) *Writer {
	layout := timeFormat
	if layout == "" {
		layout = time.Kitchen
	}
	return &Writer{
		out:    out,
		layout: layout,
		slow:   zerolog.ConsoleWriter{Out: out, NoColor: true, TimeFormat: timeFormat},
		lines:  sync.Pool{New: func() any { return new(line) }},
	}
}

// Write writes one JSON event as one line. It returns what
// ConsoleWriter.Write returns: len(p) and the output's error, or an
// error for a line that is not a JSON object.
func (w *Writer) Write(p []byte) (int, error) {
	l := w.lines.Get().(*line)
	out, ok := l.format(p, w.layout)
	if !ok {
		w.lines.Put(l)
		return w.slow.Write(p)
	}
	_, err := w.out.Write(out)
	if l.small() {
		w.lines.Put(l)
	}
	return len(p), err
}

func (l *line) small() bool {
	return cap(l.out) <= maxKept && cap(l.ev.text) <= maxKept && cap(l.ev.fields) <= maxKept/64
}
