package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// historyIn is a Recorder on the clock c with its history file in dir;
// log holds what it logged.
func historyIn(t *testing.T, dir string, c *clock) (*Recorder, *HistoryFile, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	rec := NewRecorder(c.now, time.Hour)
	return rec, NewHistoryFile(filepath.Join(dir, HistoryFileName), rec, zerolog.New(&log)), &log
}

// TestHistoryFileKeepsHistoryAcrossRestart: what was decided before a
// restart is on the page after it, as it was, in a file only the daemon
// reads; what grew older than the keep window meanwhile is not.
func TestHistoryFileKeepsHistoryAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c := newClock()
	rec, hf, _ := historyIn(t, dir, c)
	hf.Load() // first start: no file
	rec.VoteSent("pve", 1, wire.VoteACK, "in the quorate partition")
	c.add(30 * time.Minute)
	rec.Decided("pve", engine.Decision{Made: true, Winners: []uint32{1}, Reason: "50:50 split"})
	rec.VoteSent("pve", 2, wire.VoteNACK, "not in the quorate partition")
	before := rec.History()
	require.NoError(t, hf.Save(c.now()))
	fi, err := os.Stat(filepath.Join(dir, HistoryFileName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	_, err = os.Stat(filepath.Join(dir, HistoryFileName+".tmp"))
	require.True(t, os.IsNotExist(err), "no temporary file is left")

	c.add(time.Minute)
	rec2, hf2, log := historyIn(t, dir, c)
	hf2.Load()
	require.Equal(t, before, rec2.History())
	require.Contains(t, log.String(), `"events":3`)
	js, _ := rec2.HistoryJSON()
	require.Equal(t, string(historyJSON(t, rec)), string(js))
	// The same decision after the restart is not recorded twice.
	rec2.Decided("pve", engine.Decision{Made: true, Winners: []uint32{1}, Reason: "50:50 split"})
	require.Len(t, rec2.History(), 3)
	require.NoError(t, hf2.Save(c.now()))
	require.Zero(t, hf2.writes, "nothing new: not written")

	// 40 minutes later the first event is older than an hour.
	c.add(40 * time.Minute)
	rec3, hf3, _ := historyIn(t, dir, c)
	hf3.Load()
	require.Equal(t, before[1:], rec3.History())
	// New events come after the loaded ones.
	rec3.VoteSent("pve", 2, wire.VoteACK, "in the quorate partition")
	h := rec3.History()
	require.Len(t, h, 3)
	require.Equal(t, "node 2 gets the vote (in the quorate partition)", h[2].Text)
}

// TestHistoryFileWritesAtMostOnceAMinute: an event every second for ten
// minutes writes the file ten times, a quiet hour not at all, and the
// shutdown once, only when something is new.
func TestHistoryFileWritesAtMostOnceAMinute(t *testing.T) {
	c := newClock()
	rec, hf, _ := historyIn(t, t.TempDir(), c)
	for i := range 600 {
		rec.VoteSent("pve", 1, []wire.Vote{wire.VoteACK, wire.VoteNACK}[i%2], "test")
		require.NoError(t, hf.SaveIfDue(c.now()))
		c.add(time.Second)
	}
	require.Equal(t, 10, hf.writes)
	for range 3600 {
		require.NoError(t, hf.SaveIfDue(c.now()))
		c.add(time.Second)
	}
	require.Equal(t, 11, hf.writes, "the events of the last minute, then nothing")
	require.NoError(t, hf.Save(c.now()))
	require.Equal(t, 11, hf.writes, "nothing new at shutdown: not written")
	rec.VoteSent("pve", 1, wire.VoteACK, "test")
	require.NoError(t, hf.SaveIfDue(c.now()))
	require.Equal(t, 12, hf.writes, "the first event after a quiet minute is written at once")
	rec.VoteSent("pve", 1, wire.VoteNACK, "test")
	require.NoError(t, hf.SaveIfDue(c.now().Add(59*time.Second)))
	require.Equal(t, 12, hf.writes)
	require.NoError(t, hf.Save(c.now()))
	require.Equal(t, 13, hf.writes, "the shutdown writes what is new at once")
}

// TestHistoryFileDamaged: a file that is not a history file is logged at
// warn and ignored; the daemon starts with an empty history, and the next
// save replaces the file.
func TestHistoryFileDamaged(t *testing.T) {
	for name, content := range map[string]string{
		"cut short":      `{"format":1,"events":[{"time":"2026-05-01T11:59:00Z","cluster":"pve","text":"x"}`,
		"not JSON":       "\x00\xff garbage",
		"empty":          "",
		"other format":   `{"format":2,"events":[]}`,
		"wrong types":    `{"format":1,"events":{"time":1}}`,
		"bad time":       `{"format":1,"events":[{"time":"yesterday","cluster":"pve","text":"x"}]}`,
		"an array":       `[]`,
		"null":           `null`,
		"no format":      `{"events":[]}`,
		"trailing bytes": `{"format":1,"events":[]} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, HistoryFileName)
			require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
			c := newClock()
			rec, hf, log := historyIn(t, dir, c)
			hf.Load()
			require.Empty(t, rec.History())
			require.Contains(t, log.String(), `"level":"warn"`)
			require.Contains(t, log.String(), "cannot load the status page's decision history; it starts empty")
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, content, string(got), "left alone until the next save")
			rec.VoteSent("pve", 1, wire.VoteACK, "test")
			require.NoError(t, hf.Save(c.now()))
			rec2, hf2, _ := historyIn(t, dir, c)
			hf2.Load()
			require.Len(t, rec2.History(), 1)
		})
	}
}

// historyFileOf is a history file's content with n events of the given
// name and text, one a second up to the clock's time.
func historyFileOf(c *clock, n int, name, text string) []byte {
	events := make([]Event, n)
	for i := range events {
		events[i] = Event{Time: c.now().Add(time.Duration(i-n) * time.Second), Cluster: name, Node: 1, Text: text}
	}
	data, _ := json.Marshal(historyFile{Format: historyFormat, Events: events})
	return data
}

// TestHistoryFileBounds: a file larger than MaxHistoryFileBytes is logged
// and ignored, one at the bound is loaded; what is loaded keeps the
// history's bounds (count, size, name and text length, the keep window).
func TestHistoryFileBounds(t *testing.T) {
	c := newClock()
	load := func(t *testing.T, data []byte) (*Recorder, string) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, HistoryFileName), data, 0o600))
		rec, hf, log := historyIn(t, dir, c)
		hf.Load()
		return rec, log.String()
	}
	small := historyFileOf(c, 2, "pve", "test")
	pad := func(data []byte, size int) []byte { // JSON allows spaces before the closing brace
		return append(append(data[:len(data)-1:len(data)-1], bytes.Repeat([]byte(" "), size-len(data))...), '}')
	}

	t.Run("at the bound", func(t *testing.T) {
		rec, log := load(t, pad(small, MaxHistoryFileBytes))
		require.Len(t, rec.History(), 2, log)
	})
	t.Run("over the bound", func(t *testing.T) {
		rec, log := load(t, pad(small, MaxHistoryFileBytes+1))
		require.Empty(t, rec.History())
		require.Contains(t, log, `"level":"warn"`)
		require.Contains(t, log, fmt.Sprintf("more than the %d a history file has at most", MaxHistoryFileBytes))
	})
	t.Run("far over the bound", func(t *testing.T) {
		rec, log := load(t, pad(small, 4<<20))
		require.Empty(t, rec.History())
		require.Contains(t, log, `"level":"warn"`)
	})
	t.Run("more events than kept", func(t *testing.T) {
		rec, _ := load(t, historyFileOf(c, 2*MaxHistoryEvents, "pve", "t"))
		h := rec.History()
		require.Len(t, h, MaxHistoryEvents)
		require.Equal(t, c.now().Add(-time.Second), h[len(h)-1].Time, "the newest are kept")
	})
	t.Run("long names and texts", func(t *testing.T) {
		data := historyFileOf(c, 120, strings.Repeat("n", 1000), strings.Repeat("t", 1000))
		require.Less(t, len(data), MaxHistoryFileBytes)
		rec, _ := load(t, data)
		h := rec.History()
		require.NotEmpty(t, h)
		for _, e := range h {
			require.LessOrEqual(t, len(e.Cluster), MaxNameBytes)
			require.LessOrEqual(t, len(e.Text), MaxEventText)
		}
		require.LessOrEqual(t, len(historyJSON(t, rec)), MaxHistoryBytes)
	})
	t.Run("old, future and unordered events", func(t *testing.T) {
		events := []Event{
			{Time: c.now().Add(-time.Minute), Cluster: "b", Text: "newer"},
			{Time: c.now().Add(-2 * time.Hour), Cluster: "old", Text: "older than the keep window"},
			{Time: c.now().Add(time.Hour), Cluster: "future", Text: "written with a wrong clock"},
			{Time: c.now().Add(-2 * time.Minute), Cluster: "a", Text: "older"},
			{Cluster: "zero", Text: "no time"},
		}
		data, err := json.Marshal(historyFile{Format: historyFormat, Events: events})
		require.NoError(t, err)
		rec, _ := load(t, data)
		h := rec.History()
		require.Len(t, h, 2)
		require.Equal(t, "a", h[0].Cluster)
		require.Equal(t, "b", h[1].Cluster)
	})
}

// TestHistoryFileWriteFails: a data dir that cannot be written is an
// error to log, not a stop; the next save tries again.
func TestHistoryFileWriteFails(t *testing.T) {
	c := newClock()
	rec := NewRecorder(c.now, time.Hour)
	hf := NewHistoryFile(filepath.Join(t.TempDir(), "missing", HistoryFileName), rec, zerolog.Nop())
	rec.VoteSent("pve", 1, wire.VoteACK, "test")
	require.ErrorContains(t, hf.SaveIfDue(c.now()), "save the decision history in")
	require.NoError(t, os.Mkdir(filepath.Dir(hf.path), 0o700))
	require.NoError(t, hf.SaveIfDue(c.now()), "a failed write does not count as one")
	require.Equal(t, 1, hf.writes)
}

// FuzzHistoryFile: whatever the file holds, loading it never fails the
// start and what it loads keeps the history's bounds, oldest first.
func FuzzHistoryFile(f *testing.F) {
	c := newClock()
	f.Add(historyFileOf(c, 3, "pve", "node 1 gets the vote (test)"))
	f.Add([]byte(`{"format":1,"events":[{"time":"2026-05-01T11:59:00Z","cluster":"\u0000\u001b","node":4294967295,"text":""}]}`))
	f.Add([]byte(`{"format":1,"events":null}`))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec := NewRecorder(c.now, time.Hour)
		events, err := decodeHistory(data)
		if err != nil {
			require.Nil(t, events)
			return
		}
		rec.restore(events)
		h := rec.History()
		require.LessOrEqual(t, len(h), MaxHistoryEvents)
		js, _ := rec.HistoryJSON()
		require.LessOrEqual(t, len(js), MaxHistoryBytes)
		require.True(t, sort.SliceIsSorted(h, func(i, j int) bool { return h[i].Time.Before(h[j].Time) }))
		for _, e := range h {
			require.LessOrEqual(t, len(e.Cluster), MaxNameBytes)
			require.LessOrEqual(t, len(e.Text), MaxEventText)
			require.False(t, e.Time.After(c.now()))
		}
	})
}
