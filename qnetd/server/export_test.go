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

// FDTableLen is the length of the epoll loop's descriptor table (0 without
// the loop).
func (s *Server) FDTableLen() int {
	if s.poll == nil {
		return 0
	}
	return s.poll.tableLen()
}
