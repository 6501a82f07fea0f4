package pairing

import (
	"crypto/subtle"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Gate is the pairing password check: the pairing password (option
// pairing_password), the one-time pairing password, and the limits on
// failed passwords per source and from all sources together (limiter.go).
// The SSH endpoint and the pcsd endpoint (internal/pcsd) share one Gate, so
// that a guesser gains nothing by spreading guesses over both.
type Gate struct {
	password string
	oneTime  *OneTime
	limiter  *limiter
	now      func() time.Time
}

// NewGate opens the one-time password kept in DataDir/ssh (where the SSH
// endpoint keeps it) and makes the limits. password may be empty: then only
// the one-time password, while valid, is accepted.
func NewGate(dataDir, password string, now func() time.Time) (*Gate, error) {
	if dataDir == "" {
		return nil, fmt.Errorf("pairing: DataDir is not set")
	}
	if now == nil {
		now = time.Now
	}
	dir, err := filepath.Abs(filepath.Join(dataDir, "ssh"))
	if err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pairing: create %s: %w", dir, err)
	}
	ot, err := OpenOneTime(dir)
	if err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	return &Gate{password: password, oneTime: ot, limiter: newLimiter(now), now: now}, nil
}

// OneTime is the one-time pairing password.
func (g *Gate) OneTime() *OneTime { return g.oneTime }

// Verdict is the outcome of a password check.
type Verdict int

// The verdicts of Gate.Check.
const (
	// VerdictPassword: the pairing password was right.
	VerdictPassword Verdict = iota + 1
	// VerdictOneTime: the one-time password was right; Ticket names it
	// for UseOneTime.
	VerdictOneTime
	// VerdictWrong: checked and wrong; Failures and Block say what the
	// source's count is now.
	VerdictWrong
	// VerdictNoPassword: no pairing password is set and no one-time
	// password is valid: nothing was checked, nothing counted.
	VerdictNoPassword
	// VerdictBlocked: the source is blocked after too many failures
	// until Until; not checked. First: the first refusal of this block.
	VerdictBlocked
	// VerdictBusy: the budget of failed passwords of all sources is
	// spent; not checked. Ahead, Wait, InLine, First as in passwordTurn.
	VerdictBusy
)

// CheckResult is what Gate.Check found.
type CheckResult struct {
	Verdict  Verdict
	Ticket   string
	Failures int
	Block    time.Duration
	Until    time.Time
	First    bool
	InLine   bool
	Ahead    int
	Wait     time.Duration
	// Refused and RefusedSince: a check after an episode of passwords
	// refused unchecked (VerdictBusy) reports how many there were.
	Refused      int
	RefusedSince time.Time
}

// Check checks pw from src (see SourceOf): the source's block first, then
// the budget of failed passwords of all sources together, and only then the
// password itself, compared in constant time.
func (g *Gate) Check(src string, pw []byte) CheckResult {
	now := g.now()
	if g.password == "" && g.oneTime.View(now).State != OneTimeValid {
		return CheckResult{Verdict: VerdictNoPassword}
	}
	if b, until, first := g.limiter.blocked(src); b {
		return CheckResult{Verdict: VerdictBlocked, Until: until, First: first}
	}
	turn := g.limiter.takePassword(src)
	if !turn.ok {
		return CheckResult{Verdict: VerdictBusy, First: turn.first, InLine: turn.inLine, Ahead: turn.ahead, Wait: turn.wait}
	}
	r := CheckResult{Refused: turn.refused, RefusedSince: turn.refusedSince}
	if g.password != "" && subtle.ConstantTimeCompare(pw, []byte(g.password)) == 1 {
		g.limiter.passwordRight()
		r.Verdict = VerdictPassword
		return r
	}
	if ticket, ok := g.oneTime.check(pw, now); ok {
		g.limiter.passwordRight()
		r.Verdict, r.Ticket = VerdictOneTime, ticket
		return r
	}
	r.Verdict = VerdictWrong
	r.Failures, r.Block = g.limiter.fail(src)
	return r
}

// Fail counts a failed login of src that checked no password (an unknown
// user, a stalled connection): it counts against the source, not against
// the budget of all sources. It returns the source's failures and block.
func (g *Gate) Fail(src string) (int, time.Duration) { return g.limiter.fail(src) }

// Success forgets the failures of src after a login.
func (g *Gate) Success(src string) { g.limiter.success(src) }

// UseOneTime runs install while the one-time password the ticket names is
// still valid, and marks it used by what install returns (a name for the
// credential it made: an SSH key's fingerprint, a pcs token's id). At most
// one install succeeds per password.
func (g *Gate) UseOneTime(ticket string, install func() (string, error)) error {
	return g.oneTime.use(ticket, g.now(), install)
}

// SourceOf returns the address a connection comes from and the source its
// failures and connections are counted under: an IPv4 address itself, an
// IPv6 address's /64.
func SourceOf(a net.Addr) (ip, src string) { return sourceOf(a) }
