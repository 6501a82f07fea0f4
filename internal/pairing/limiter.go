package pairing

import (
	"sync"
	"time"
)

// Failed-login limits per source address.
const (
	// freeFailures failed logins are allowed before the address is
	// blocked; every further failure doubles the block.
	freeFailures = 5
	firstBlock   = 2 * time.Second
	maxBlock     = 15 * time.Minute
	// failureWindow: failures older than this are forgotten.
	failureWindow = 30 * time.Minute
	// maxTracked bounds the addresses remembered.
	maxTracked = 4096
)

// limiter counts failed logins per source address. An address with
// freeFailures recent failures is blocked: its connections are closed at
// once and its logins refused without looking at them, for a time that
// doubles with every further failure. Other addresses are not affected.
type limiter struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*addrState
}

type addrState struct {
	failures     int
	last         time.Time
	blockedUntil time.Time
	announced    bool // the block was logged
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, m: map[string]*addrState{}}
}

// blocked reports whether ip is blocked, until when, and whether this is
// the first time the current block is reported (to log it once).
func (l *limiter) blocked(ip string) (bool, time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.m[ip]
	if st == nil || !l.now().Before(st.blockedUntil) {
		return false, time.Time{}, false
	}
	first := !st.announced
	st.announced = true
	return true, st.blockedUntil, first
}

// fail counts a failed login from ip; it returns the recent failures and
// the block that now applies (0 if none).
func (l *limiter) fail(ip string) (int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st := l.m[ip]
	if st == nil {
		l.prune(now)
		st = &addrState{}
		l.m[ip] = st
	}
	if now.Sub(st.last) > failureWindow && !now.Before(st.blockedUntil) {
		st.failures = 0
	}
	st.failures++
	st.last = now
	if st.failures < freeFailures {
		return st.failures, 0
	}
	block := firstBlock
	for i := freeFailures; i < st.failures && block < maxBlock; i++ {
		block *= 2
	}
	block = min(block, maxBlock)
	if until := now.Add(block); until.After(st.blockedUntil) {
		st.blockedUntil = until
		st.announced = false
	}
	return st.failures, block
}

// success forgets the failures of ip.
func (l *limiter) success(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, ip)
}

// prune drops forgotten addresses, and the oldest ones while the map is
// full. Called with mu held.
func (l *limiter) prune(now time.Time) {
	if len(l.m) < maxTracked {
		return
	}
	var oldest string
	var oldestT time.Time
	for ip, st := range l.m {
		if now.Sub(st.last) > failureWindow && !now.Before(st.blockedUntil) {
			delete(l.m, ip)
			continue
		}
		if oldest == "" || st.last.Before(oldestT) {
			oldest, oldestT = ip, st.last
		}
	}
	if len(l.m) >= maxTracked {
		delete(l.m, oldest)
	}
}
