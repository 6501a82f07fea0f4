package logbatch_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/logbatch"
)

// countingWriter records each write it gets.
type countingWriter struct {
	mu     sync.Mutex
	writes []string
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

func TestUnheldLinesGoOutAtOnce(t *testing.T) {
	out := &countingWriter{}
	w := logbatch.New(out)
	_, err := w.Write([]byte("a\n"))
	require.NoError(t, err)
	_, err = w.Write([]byte("b\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"a\n", "b\n"}, out.writes)
}

func TestHeldLinesGoOutTogetherAtTheLastRelease(t *testing.T) {
	out := &countingWriter{}
	w := logbatch.New(out)
	w.Hold()
	w.Write([]byte("decision\n"))
	w.Hold() // nested
	w.Write([]byte("vote 1\n"))
	w.Release()
	assert.Empty(t, out.writes, "an inner release writes nothing")
	w.Write([]byte("vote 2\n"))
	w.Release()
	assert.Equal(t, []string{"decision\nvote 1\nvote 2\n"}, out.writes)
	w.Write([]byte("later\n"))
	assert.Equal(t, []string{"decision\nvote 1\nvote 2\n", "later\n"}, out.writes)
}

func TestAnExtraReleaseIsHarmless(t *testing.T) {
	out := &countingWriter{}
	w := logbatch.New(out)
	w.Release()
	w.Hold()
	w.Release()
	w.Release()
	w.Write([]byte("x\n"))
	assert.Equal(t, []string{"x\n"}, out.writes, "not held after extra releases")
}

func TestHeldBytesAreBounded(t *testing.T) {
	out := &countingWriter{}
	w := logbatch.New(out)
	w.Hold()
	line := strings.Repeat("x", 999) + "\n"
	for range 200 { // 200 kB, three times the bound
		w.Write([]byte(line))
	}
	require.NotEmpty(t, out.writes, "lines go out while held once the bound is reached")
	for _, s := range out.writes {
		assert.LessOrEqual(t, len(s), logbatch.MaxHeld+len(line))
	}
	w.Release()
	assert.Equal(t, strings.Repeat(line, 200), strings.Join(out.writes, ""), "every line, in order")
}

func TestConcurrentWritersKeepEveryLineWhole(t *testing.T) {
	var out bytes.Buffer
	w := logbatch.New(&out)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if i%7 == 0 {
					w.Hold()
				}
				w.Write([]byte{'a' + byte(g), '\n'})
				if i%7 == 0 {
					w.Release()
				}
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 2000)
	for _, l := range lines {
		require.Len(t, l, 1)
	}
}
