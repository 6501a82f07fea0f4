package logbatch

import "time"

// SetClock makes w read the time from now.
func (w *Writer) SetClock(now func() time.Time) { w.now = now }
