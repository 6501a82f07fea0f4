package logbatch_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

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

// Holds that overlap one after the other never leave none held; the lines
// still go out once the oldest has waited MaxDelay.
func TestOverlappingHoldsDoNotDelayLinesPastMaxDelay(t *testing.T) {
	out := &countingWriter{}
	w := logbatch.New(out)
	clock := time.Unix(1000, 0)
	w.SetClock(func() time.Time { return clock })
	w.Hold() // one goroutine
	w.Write([]byte("first\n"))
	for range 10 {
		w.Hold() // another, before the first lets go
		w.Release()
		clock = clock.Add(MaxDelayStep)
	}
	assert.Empty(t, out.writes, "held while younger than MaxDelay")
	clock = clock.Add(logbatch.MaxDelay)
	w.Hold()
	w.Release()
	assert.Equal(t, []string{"first\n"}, out.writes, "out once overdue, though still held")
	w.Write([]byte("second\n"))
	assert.Len(t, out.writes, 1, "a new line starts a new wait")
	clock = clock.Add(logbatch.MaxDelay)
	w.Write([]byte("third\n"))
	assert.Equal(t, []string{"first\n", "second\nthird\n"}, out.writes)
	w.Release()
}

// MaxDelayStep is well below MaxDelay: ten of them stay below it.
const MaxDelayStep = logbatch.MaxDelay / 20
