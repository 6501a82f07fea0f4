package pairing

import (
	"container/list"
	"sync"
	"time"
)

// Failed-login limits per source: an IPv4 address, or the /64 an IPv6
// address is in (see sourceOf).
const (
	// freeFailures failed logins are allowed before the source's
	// password logins are blocked; every further failure doubles the
	// block.
	freeFailures = 5
	firstBlock   = 2 * time.Second
	maxBlock     = 15 * time.Minute
	// failureWindow: failures older than this are forgotten.
	failureWindow = 30 * time.Minute
	// maxTracked bounds the sources remembered.
	maxTracked = 4096
)

// The budget of failed password checks, all sources together. The limits
// per source alone let an attacker who rotates source addresses guess
// freeFailures times per address: 300 addresses made 1,200 guesses in a
// few seconds. With this budget at most passwordBurst guesses are checked
// at once and then one every passwordRefill (3 a minute, about 4,300 a
// day) whatever the number of sources; the pairing password has at least
// 8 characters, which that rate does not exhaust in any useful time.
// The real user needs one check (ssh-copy-id), a few with typos, so the
// burst covers them when nobody is attacking.
const (
	passwordBurst  = 10
	passwordRefill = 20 * time.Second
	// waitForget: a source refused for want of budget keeps its place in
	// line while it retries at least this often. A person retyping the
	// password, or running `pvecm qdevice setup` again after ssh's three
	// prompts, does so well within a minute.
	waitForget = time.Minute
	// maxWaiting bounds the sources in line.
	maxWaiting = maxTracked
	// sweepEvery bounds how often a full line is searched for sources
	// that stopped retrying.
	sweepEvery = time.Second
)

// limiter counts failed logins per source and holds the password budget.
//
// Per source: a source with freeFailures recent failures is blocked: its
// password logins are refused without looking at them, for a time that
// doubles with every further failure. Other sources are not affected, and
// keys are not refused: a key cannot be guessed, and a block on keys would
// only lock out the real node sharing the source (a NAT, a LAN's /64).
//
// All sources together: a password is checked only when the budget has a
// token; a wrong one spends it, a right one gives it back. Without a token
// the password is refused unchecked, which costs nothing, so a spray
// cannot keep the budget empty past its own end. Sources refused that way
// wait in line, oldest first, and each token that comes is kept for the
// source at the head of the line until it retries (or stops retrying for
// waitForget): a spray from G sources delays the real user's turn by at
// most G tokens, instead of letting the fastest client take every token.
//
// The real user's worst case, typing the right password during a spray
// from G sources that keep guessing (all ahead of it in line, each faster
// than the user) and retrying at least every waitForget: its turn comes at
// most (G+1)*passwordRefill after its first try (5 sources: 2 minutes, 300:
// about 100 minutes), and its next try is checked. Once the spray stops,
// the sources ahead are forgotten and any try more than waitForget after
// the last guess is checked. A line already holding maxWaiting sources
// that keep guessing has no place for the user until some stop; keys are
// never held up, whatever the spray.
type limiter struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]*addrState

	// tokens are the password checks available now; tokensAt is when
	// they were counted: the next one comes passwordRefill after it.
	tokens   int
	tokensAt time.Time
	// line holds the sources waiting for a token (*waiter), oldest first;
	// inLine finds them.
	line      list.List
	inLine    map[string]*list.Element
	seq       uint64
	lastSweep time.Time
	// refused counts the passwords refused unchecked since refusedSince,
	// for one log line per episode instead of one per attempt.
	refused      int
	refusedSince time.Time
}

type addrState struct {
	failures     int
	last         time.Time
	blockedUntil time.Time
	announced    bool // the block was logged
}

type waiter struct {
	src  string
	seq  uint64 // order of arrival: seq minus the head's seq bounds the sources ahead
	seen time.Time
}

func newLimiter(now func() time.Time) *limiter {
	l := &limiter{now: now, m: map[string]*addrState{}, inLine: map[string]*list.Element{}, tokens: passwordBurst}
	l.line.Init()
	return l
}

// blocked reports whether src is blocked, until when, and whether this is
// the first time the current block is reported (to log it once).
func (l *limiter) blocked(src string) (bool, time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.m[src]
	if st == nil || !l.now().Before(st.blockedUntil) {
		return false, time.Time{}, false
	}
	first := !st.announced
	st.announced = true
	return true, st.blockedUntil, first
}

// fail counts a failed login from src; it returns the recent failures and
// the block that now applies (0 if none).
func (l *limiter) fail(src string) (int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st := l.m[src]
	if st == nil {
		l.prune(now)
		st = &addrState{}
		l.m[src] = st
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

// success forgets the failures of src.
func (l *limiter) success(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, src)
}

// prune drops forgotten sources, and the oldest ones while the map is
// full. Called with mu held.
func (l *limiter) prune(now time.Time) {
	if len(l.m) < maxTracked {
		return
	}
	var oldest string
	var oldestT time.Time
	for src, st := range l.m {
		if now.Sub(st.last) > failureWindow && !now.Before(st.blockedUntil) {
			delete(l.m, src)
			continue
		}
		if oldest == "" || st.last.Before(oldestT) {
			oldest, oldestT = src, st.last
		}
	}
	if len(l.m) >= maxTracked {
		delete(l.m, oldest)
	}
}

// passwordTurn is the answer to a request to check a password.
type passwordTurn struct {
	// ok: check the password; call passwordRight if it is right.
	ok bool
	// When ok: the passwords refused unchecked before this one, since
	// refusedSince (0 if none), to log that the episode is over.
	refused      int
	refusedSince time.Time
	// When not ok: inLine is false when the line is full; ahead bounds
	// the sources before this one, and wait the time until its turn if
	// they all keep retrying. first is true for the first refusal of an
	// episode (to log it once).
	inLine bool
	ahead  int
	wait   time.Duration
	first  bool
}

// takePassword asks for a password check for src. Key logins never call
// it.
func (l *limiter) takePassword(src string) passwordTurn {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.refill(now)

	// The first l.tokens sources in line (still retrying and not blocked)
	// own the tokens; a source not in line may take one only if there are
	// more tokens than sources in line.
	own, free := false, false
	live := 0
	e := l.line.Front()
	for e != nil && live < l.tokens {
		next := e.Next()
		w := e.Value.(*waiter)
		switch {
		case now.Sub(w.seen) > waitForget || l.blockedLocked(w.src, now):
			l.leave(e)
		case w.src == src:
			own = true
		default:
			live++
		}
		if own {
			l.leave(e)
			break
		}
		e = next
	}
	if !own && e == nil && live < l.tokens && l.inLine[src] == nil {
		free = true
	}
	if own || free {
		l.tokens--
		t := passwordTurn{ok: true, refused: l.refused, refusedSince: l.refusedSince}
		l.refused = 0
		return t
	}

	t := passwordTurn{first: l.refused == 0}
	if l.refused == 0 {
		l.refusedSince = now
	}
	l.refused++
	el := l.inLine[src]
	if el == nil {
		if l.line.Len() >= maxWaiting && now.Sub(l.lastSweep) >= sweepEvery {
			l.sweep(now)
		}
		if l.line.Len() >= maxWaiting {
			t.ahead = l.line.Len()
			return t
		}
		l.seq++
		el = l.line.PushBack(&waiter{src: src, seq: l.seq})
		l.inLine[src] = el
	}
	w := el.Value.(*waiter)
	w.seen = now
	t.inLine = true
	t.ahead = int(w.seq - l.line.Front().Value.(*waiter).seq)
	// Tokens still to come before this source's turn: one for each source
	// ahead beyond those available now, and its own.
	need := max(t.ahead-l.tokens+1, 1)
	t.wait = l.tokensAt.Add(passwordRefill).Sub(now) + time.Duration(need-1)*passwordRefill
	return t
}

// passwordRight gives back the token of a password that was right: the
// budget counts failures only.
func (l *limiter) passwordRight() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(l.now())
	l.tokens = min(l.tokens+1, passwordBurst)
}

// refill adds the tokens that came since tokensAt. Called with mu held.
func (l *limiter) refill(now time.Time) {
	if n := now.Sub(l.tokensAt) / passwordRefill; n > 0 {
		l.tokens += int(min(n, passwordBurst))
		l.tokensAt = l.tokensAt.Add(n * passwordRefill)
	}
	if l.tokens >= passwordBurst {
		// Full: the next token is due passwordRefill after the first one
		// is spent, not earlier.
		l.tokens = passwordBurst
		l.tokensAt = now
	}
}

// blockedLocked is blocked without the announcement. Called with mu held.
func (l *limiter) blockedLocked(src string, now time.Time) bool {
	st := l.m[src]
	return st != nil && now.Before(st.blockedUntil)
}

// leave takes a waiter out of the line. Called with mu held.
func (l *limiter) leave(e *list.Element) {
	delete(l.inLine, e.Value.(*waiter).src)
	l.line.Remove(e)
}

// sweep drops the sources that stopped retrying from the whole line (the
// walk in takePassword only looks at its head). Called with mu held.
func (l *limiter) sweep(now time.Time) {
	l.lastSweep = now
	for e := l.line.Front(); e != nil; {
		next := e.Next()
		if now.Sub(e.Value.(*waiter).seen) > waitForget {
			l.leave(e)
		}
		e = next
	}
}
