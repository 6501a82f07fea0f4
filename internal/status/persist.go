package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// The decision history outlives a restart in a file of the data dir. An
// add-on often runs from an SD card, which wears with every write: the
// file is written at most once per HistorySaveEvery, only when an event
// was recorded since, and once more at shutdown.
const (
	// HistoryFileName is the history file's name in the data dir.
	HistoryFileName = "status-history.json"
	// HistorySaveEvery is the least time between two writes while running.
	HistorySaveEvery = time.Minute
	// MaxHistoryFileBytes is the largest history file that is loaded: the
	// history's JSON at its bound and the few bytes around it.
	MaxHistoryFileBytes = MaxHistoryBytes + 1024
	// historyFormat is the file's version; a file of another is ignored.
	historyFormat = 1
)

// historyFile is the file's JSON.
type historyFile struct {
	Format int     `json:"format"`
	Events []Event `json:"events"`
}

// decodeHistory reads a history file's content.
func decodeHistory(data []byte) ([]Event, error) {
	if len(data) > MaxHistoryFileBytes {
		return nil, fmt.Errorf("%d bytes, more than the %d a history file has at most", len(data), MaxHistoryFileBytes)
	}
	var f historyFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Format != historyFormat {
		return nil, fmt.Errorf("format %d, not %d", f.Format, historyFormat)
	}
	return f.Events, nil
}

// HistoryFile keeps a Recorder's history in a file across restarts.
type HistoryFile struct {
	path string
	rec  *Recorder
	log  zerolog.Logger
	// mu makes writes one at a time: the periodic one and the last one
	// at shutdown may meet.
	mu     sync.Mutex
	saved  uint64    // the Recorder's recorded count as of the last write
	last   time.Time // when it was last written (zero: not yet)
	writes int       // how many times the file was written
}

// NewHistoryFile keeps rec's history in path.
func NewHistoryFile(path string, rec *Recorder, log zerolog.Logger) *HistoryFile {
	return &HistoryFile{path: path, rec: rec, log: log}
}

// Load puts the file's events into the Recorder. A missing file is a
// first start; a damaged or oversized one is logged and left alone (the
// next write replaces it): the history is worth less than starting.
func (h *HistoryFile) Load() {
	events, err := h.read()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		h.log.Warn().Str("file", h.path).Err(err).Msg("cannot load the status page's decision history; it starts empty")
		return
	}
	h.rec.restore(events)
	h.log.Info().Str("file", h.path).Int("events", len(h.rec.History())).Msg("status page's decision history loaded")
}

func (h *HistoryFile) read() ([]Event, error) {
	f, err := os.Open(h.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// One byte more than the bound tells an oversized file from one at it.
	data, err := io.ReadAll(io.LimitReader(f, MaxHistoryFileBytes+1))
	if err != nil {
		return nil, err
	}
	return decodeHistory(data)
}

// SaveIfDue writes the file when an event was recorded since the last
// write and that was at least HistorySaveEvery before now.
func (h *HistoryFile) SaveIfDue(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rec.recordedCount() == h.saved || (!h.last.IsZero() && now.Sub(h.last) < HistorySaveEvery) {
		return nil
	}
	return h.write(now)
}

// Save writes the file when an event was recorded since the last write,
// however recent that was: at shutdown.
func (h *HistoryFile) Save(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rec.recordedCount() == h.saved {
		return nil
	}
	return h.write(now)
}

// Run saves when due until ctx ends; the last save is the caller's, once
// nothing records any more.
func (h *HistoryFile) Run(ctx context.Context, now func() time.Time) {
	t := time.NewTicker(HistorySaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := h.SaveIfDue(now()); err != nil {
				h.log.Warn().Str("file", h.path).Err(err).Msg("cannot save the status page's decision history")
			}
		}
	}
}

// write replaces the file with the history. h.mu is held.
func (h *HistoryFile) write(now time.Time) error {
	recorded := h.rec.recordedCount()
	events, _ := h.rec.HistoryJSON()
	data := make([]byte, 0, len(events)+32)
	data = fmt.Appendf(data, `{"format":%d,"events":`, historyFormat)
	data = append(data, events...)
	data = append(data, '}', '\n')
	if err := writeFileAtomic(h.path, data); err != nil {
		return fmt.Errorf("save the decision history in %s: %w", h.path, err)
	}
	h.saved, h.last = recorded, now
	h.writes++
	return nil
}

// writeFileAtomic replaces path with data (mode 0600) so that a crash or
// a power cut leaves the old content or the new, never a mix: a temporary
// file beside it, synced, renamed over it, and the directory synced.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// A temporary file left by an earlier run keeps its mode: set it.
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
