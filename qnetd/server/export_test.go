package server

import "time"

// SetOpenFileLimit makes servers created from now on see an open-file
// limit of n; the returned func restores the real one.
func SetOpenFileLimit(n uint64) (restore func()) {
	old := openFileLimit
	openFileLimit = func() uint64 { return n }
	return func() { openFileLimit = old }
}

// SetRefusalLogEvery changes how often a limit's refusals are logged.
func SetRefusalLogEvery(d time.Duration) (restore func()) {
	old := refusalLogEvery
	refusalLogEvery = d
	return func() { refusalLogEvery = old }
}
