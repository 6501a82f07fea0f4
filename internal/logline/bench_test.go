package logline

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// BenchmarkWriter: the cost of printing one decision line, ours against
// ConsoleWriter, both to a writer that keeps nothing.
func BenchmarkWriter(b *testing.B) {
	p := decisionLine()
	for _, w := range []struct {
		name string
		w    interface{ Write([]byte) (int, error) }
	}{
		{"logline", New(discard{}, time.DateTime)},
		{"ConsoleWriter", zerolog.ConsoleWriter{Out: discard{}, NoColor: true, TimeFormat: time.DateTime}},
	} {
		b.Run(w.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, err := w.w.Write(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
