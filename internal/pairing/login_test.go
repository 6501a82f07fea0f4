package pairing

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// Tests of the login limits: the password budget of all sources together
// (password spraying from many addresses), and the caps and deadline of
// connections that have not logged in (stalled handshakes).

// loginGo logs in with Go's client from a local address (Linux routes all
// of 127.0.0.0/8 to lo, so any 127.x.y.z can be a source) and returns the
// banners the server sent.
func (ts *testServer) loginGo(local string, auth ...ssh.AuthMethod) (*ssh.Client, []string, error) {
	d := net.Dialer{Timeout: 20 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		return nil, nil, err
	}
	return ts.loginConn(nc, nil, auth...)
}

// loginConn logs in on nc; onBanner, if set, sees each banner as it comes.
func (ts *testServer) loginConn(nc net.Conn, onBanner func(string), auth ...ssh.AuthMethod) (*ssh.Client, []string, error) {
	var mu sync.Mutex
	var banners []string
	cfg := &ssh.ClientConfig{User: "root", Auth: auth, Timeout: 20 * time.Second,
		HostKeyCallback:   ssh.FixedHostKey(ts.s.hostKeys[0].PublicKey()),
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		BannerCallback: func(m string) error {
			mu.Lock()
			banners = append(banners, m)
			mu.Unlock()
			if onBanner != nil {
				onBanner(m)
			}
			return nil
		}}
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(nc, ts.addr, cfg)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		nc.Close()
		return nil, banners, err
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), banners, nil
}

// passwordChecks counts the wrong passwords the server checked.
func (ts *testServer) passwordChecks() int { return ts.log.Count("wrong password") }

// sprayAddr is the i-th of the addresses a spray comes from.
func sprayAddr(i int) string { return fmt.Sprintf("127.1.%d.%d", i/200, i%200+1) }

// spray makes tries wrong password guesses (on one connection) from each
// of n addresses, workers at a time; it returns the guesses that logged in
// (none).
func spray(ts *testServer, n, tries, workers int) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	in := 0
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j := 0
				guess := ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
					j++
					return fmt.Sprintf("guess-%d-%d", i, j), nil
				}), tries)
				if cl, _, err := ts.loginGo(sprayAddr(i), guess); err == nil {
					cl.Close()
					mu.Lock()
					in++
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return in
}

// TestPasswordSpray: 1,200 wrong passwords from 300 addresses (4 each,
// under the limit per address) get at most passwordBurst checks; key
// logins go through at once meanwhile; the real user's right password is
// refused unchecked with a banner that says why, and gets in at the latest
// waitForget after the spray stops.
func TestPasswordSpray(t *testing.T) {
	f := newSecFixture(t, nil)
	key := ssh.PublicKeys(signerFromFile(t, f.c.key))

	start := time.Now()
	sprayDone := make(chan struct{})
	var in int
	go func() {
		defer close(sprayDone)
		in = spray(f.ts, 300, 4, 8)
	}()
	// Keys log in during the spray, and are not slowed by it.
	var keyLogins int
	var slowest time.Duration
	for spraying := true; spraying; keyLogins++ {
		select {
		case <-sprayDone:
			spraying = false
		default:
		}
		t0 := time.Now()
		cl, banners, err := f.ts.loginGo("127.0.0.1", key)
		require.NoError(t, err, "key login during the spray")
		require.Empty(t, banners)
		out, err := f.goRun(t, cl, "exit")
		require.NoError(t, err, out)
		cl.Close()
		slowest = max(slowest, time.Since(t0))
	}
	elapsed := time.Since(start)
	require.Zero(t, in)

	checks := f.ts.passwordChecks()
	t.Logf("1200 guesses from 300 addresses in %s: %d checked; %d key logins meanwhile, the slowest in %s",
		elapsed.Round(time.Millisecond), checks, keyLogins, slowest.Round(time.Millisecond))
	require.Equal(t, passwordBurst, checks, "the clock did not move: only the burst is checked")
	f.ts.log.wait(t, "the limit of failed passwords from all addresses together is reached")
	require.Equal(t, 1, strings.Count(warnings(f.ts.log.String()), "refused unchecked"), "one warning per episode")

	// The real user, from another address, with the right password: not
	// checked, and told why and how long.
	_, banners, err := f.ts.loginGo("127.0.0.2", ssh.Password("correct horse"))
	require.Error(t, err)
	require.Len(t, banners, 1)
	require.Contains(t, banners[0], "the password is not checked")
	require.Contains(t, banners[0], "Logins with a key are not limited")
	require.Equal(t, checks, f.ts.passwordChecks(), "refused unchecked")

	// The spray is over: the sources ahead in line stop retrying and are
	// forgotten after waitForget, and the right password gets in.
	f.ts.clock.Advance(waitForget + time.Second)
	cl, banners, err := f.ts.loginGo("127.0.0.2", ssh.Password("correct horse"))
	require.NoError(t, err)
	require.Empty(t, banners)
	cl.Close()
	f.ts.log.wait(t, "checking passwords again")
	// A right password costs nothing: the budget refilled meanwhile is
	// all there for the next spray.
	refilled := int(waitForget / passwordRefill)
	require.Zero(t, spray(f.ts, refilled+5, 1, 4))
	require.Equal(t, checks+refilled, f.ts.passwordChecks())
}

// warnings keeps the warning lines of a log.
func warnings(log string) string {
	var b strings.Builder
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"level":"warn"`) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestPasswordTurnDuringSpray: while 5 addresses keep guessing, each
// faster than the real user, the real user's right password still gets in
// when its turn comes: after the 5 sources ahead of it in line, one token
// (passwordRefill) each.
func TestPasswordTurnDuringSpray(t *testing.T) {
	f := newSecFixture(t, nil)
	sprayers := []string{"127.3.0.1", "127.3.0.2", "127.3.0.3", "127.3.0.4", "127.3.0.5"}
	const user = "127.3.0.9"
	guess := func(src string, k int) []string {
		_, banners, err := f.ts.loginGo(src, ssh.Password(fmt.Sprintf("guess-%d", k)))
		require.Error(t, err)
		return banners
	}
	// The burst: 2 guesses each.
	for k := range 2 {
		for _, a := range sprayers {
			require.Empty(t, guess(a, k))
		}
	}
	require.Equal(t, passwordBurst, f.ts.passwordChecks())
	// Now each is refused and waits in line; the user comes after them.
	for _, a := range sprayers {
		require.Contains(t, strings.Join(guess(a, 2), ""), "not checked")
	}
	_, banners, err := f.ts.loginGo(user, ssh.Password("correct horse"))
	require.Error(t, err)
	require.Contains(t, strings.Join(banners, ""), "behind at most 5 others")
	require.Contains(t, strings.Join(banners, ""), "its turn comes in about 2m0s") // 5 tokens for those ahead, 1 for it, one every 20 s

	// Every passwordRefill one token comes; every sprayer tries before
	// the user does.
	for round := 1; ; round++ {
		f.ts.clock.Advance(passwordRefill)
		before := f.ts.passwordChecks()
		for _, a := range sprayers {
			guess(a, 2+round)
		}
		cl, _, err := f.ts.loginGo(user, ssh.Password("correct horse"))
		if err == nil {
			cl.Close()
			require.Equal(t, len(sprayers)+1, round, "the user's turn comes after the %d sources ahead", len(sprayers))
			require.Equal(t, before, f.ts.passwordChecks(), "the user's round: no guess checked")
			break
		}
		require.Equal(t, before+1, f.ts.passwordChecks(), "round %d: one guess per token", round)
		require.Less(t, round, len(sprayers)+1)
	}
}

// TestPasswordBudget: the budget in isolation (injected clock).
func TestPasswordBudget(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(clk.Now)
	for i := range passwordBurst {
		require.True(t, l.takePassword(fmt.Sprintf("10.0.0.%d", i)).ok, "burst")
	}
	turn := l.takePassword("10.0.1.1")
	require.False(t, turn.ok)
	require.True(t, turn.first)
	require.True(t, turn.inLine)
	require.Equal(t, 0, turn.ahead)
	require.Equal(t, passwordRefill, turn.wait)
	require.False(t, l.takePassword("10.0.1.1").first, "one announcement per episode")
	turn = l.takePassword("10.0.1.2")
	require.Equal(t, 1, turn.ahead)
	require.Equal(t, 2*passwordRefill, turn.wait)

	// The token that comes is kept for the head of the line.
	clk.Advance(passwordRefill)
	require.False(t, l.takePassword("10.0.1.2").ok, "not its turn")
	require.False(t, l.takePassword("10.0.1.3").ok, "a newcomer queues")
	turn = l.takePassword("10.0.1.1")
	require.True(t, turn.ok)
	require.Equal(t, 5, turn.refused, "refused unchecked since the budget ran out")

	// A right password gives its token back.
	clk.Advance(passwordRefill)
	require.True(t, l.takePassword("10.0.1.2").ok)
	l.passwordRight()
	require.True(t, l.takePassword("10.0.1.3").ok, "the token given back")

	// Refusals cost nothing: after the burst is spent and a long spray of
	// refusals, the budget refills as if nobody had asked.
	for range 1000 {
		l.takePassword("10.0.2.1")
	}
	clk.Advance(waitForget + time.Second) // the line forgets sources that stopped
	for i := range int(waitForget / passwordRefill) {
		require.True(t, l.takePassword(fmt.Sprintf("10.0.3.%d", i)).ok)
	}
	clk.Advance(passwordBurst * passwordRefill)
	for i := range passwordBurst {
		require.True(t, l.takePassword(fmt.Sprintf("10.0.4.%d", i)).ok, "full again")
	}
	require.False(t, l.takePassword("10.0.4.99").ok, "never more than the burst")

	// A blocked source loses its place instead of holding a token.
	clk.Advance(time.Hour)
	for range passwordBurst {
		require.True(t, l.takePassword("10.0.5.1").ok)
	}
	require.False(t, l.takePassword("10.0.5.2").ok)
	require.False(t, l.takePassword("10.0.5.3").ok)
	for range freeFailures + 5 {
		l.fail("10.0.5.2") // blocked for 64 s
	}
	clk.Advance(passwordRefill)
	require.True(t, l.takePassword("10.0.5.3").ok, "the blocked head is skipped")

	// Bounded memory.
	for i := range maxWaiting + 10 {
		l.takePassword(fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256))
	}
	require.LessOrEqual(t, l.line.Len(), maxWaiting)
	require.Equal(t, l.line.Len(), len(l.inLine))
	turn = l.takePassword("10.255.0.1")
	require.False(t, turn.inLine, "a full line")
	clk.Advance(waitForget + sweepEvery + time.Second)
	require.True(t, l.takePassword("10.255.0.1").ok, "sources that stopped retrying are swept")
}

// TestPasswordWorstWait: the worst-case wait of the real user, simulated
// with the injected clock. 300 sources guess every 10 s, always before the
// user; the user retries every 10 s too. The right password is checked within
// (300+1)*passwordRefill of the user's first try (all of them ahead take
// one turn), and at the latest waitForget after a spray stops; meanwhile
// no more than the budget is checked.
func TestPasswordWorstWait(t *testing.T) {
	const sources = 300
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(clk.Now)
	start := clk.Now()
	checks := 0
	tick := func() {
		for i := range sources {
			src := fmt.Sprintf("10.9.%d.%d", i/256, i%256)
			if l.takePassword(src).ok {
				checks++
				l.fail(src)
			}
		}
	}
	tick()
	var userFirst time.Time
	var waited time.Duration
	for {
		if userFirst.IsZero() {
			userFirst = clk.Now()
		}
		if l.takePassword("10.10.0.1").ok {
			waited = clk.Now().Sub(userFirst)
			break
		}
		clk.Advance(10 * time.Second)
		tick()
		require.Less(t, clk.Now().Sub(userFirst), 4*time.Hour, "the user never got a turn")
	}
	bound := (sources + 1) * passwordRefill
	t.Logf("%d sources guessing: the right password was checked %s after the first try (bound %s); %d guesses checked in %s",
		sources, waited, bound, checks, clk.Now().Sub(start))
	require.LessOrEqual(t, waited, bound)
	require.LessOrEqual(t, checks, passwordBurst+int(clk.Now().Sub(start)/passwordRefill))

	// After a spray stops: the user's turn comes within waitForget.
	l.passwordRight()
	tick() // the last guesses
	stop := clk.Now()
	for !l.takePassword("10.10.0.1").ok {
		clk.Advance(10 * time.Second)
	}
	waited = clk.Now().Sub(stop)
	t.Logf("after the spray stopped, the right password was checked %s later", waited)
	require.LessOrEqual(t, waited, waitForget+10*time.Second)
}

// TestSourceOf: IPv4 addresses count one by one, IPv6 addresses by /64.
func TestSourceOf(t *testing.T) {
	for in, want := range map[string][2]string{
		"192.0.2.7:22":                {"192.0.2.7", "192.0.2.7"},
		"[::ffff:192.0.2.7]:22":       {"192.0.2.7", "192.0.2.7"},
		"[2001:db8:1:2::1]:22":        {"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		"[2001:db8:1:2:ffff::9]:2222": {"2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"},
		"[2001:db8:1:3::1]:22":        {"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		"[fe80::1%eth0]:22":           {"fe80::1", "fe80::/64"},
		"[::1]:22":                    {"::1", "::/64"},
	} {
		a, err := net.ResolveTCPAddr("tcp", in)
		require.NoError(t, err)
		ip, src := sourceOf(a)
		require.Equal(t, want, [2]string{ip, src}, in)
	}
}

// addrConn is a connection with a chosen remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// TestConnCaps: connections that have not logged in are capped per source
// (an IPv6 /64 is one source) below the total; logged-in connections
// leave that count; closing frees the slots.
func TestConnCaps(t *testing.T) {
	ts := startServer(t, nil)
	s := ts.s
	conn := func(addr string) net.Conn {
		a, err := net.ResolveTCPAddr("tcp", addr)
		require.NoError(t, err)
		c, peer := net.Pipe()
		t.Cleanup(func() { peer.Close() })
		return addrConn{Conn: c, remote: a}
	}
	var open []net.Conn
	try := func(addr string) (bool, string) {
		c := conn(addr)
		ip, src := sourceOf(c.RemoteAddr())
		ok, why := s.track(c, ip, src)
		if ok {
			open = append(open, c)
		}
		return ok, why
	}
	for i := range maxPreAuthPerSource {
		ok, _ := try(fmt.Sprintf("[2001:db8:1:2::%d]:5000", i+1))
		require.True(t, ok)
	}
	ok, why := try("[2001:db8:1:2:abcd::1]:5000")
	require.False(t, ok, "the same /64")
	require.Contains(t, why, "have not logged in yet")
	ts.log.wait(t, `"source":"2001:db8:1:2::/64"`)
	ok, _ = try("[2001:db8:1:3::1]:5000")
	require.True(t, ok, "another /64")

	// Logged in: no longer counted as pre-login, up to the total per source.
	s.loggedIn(open[0])
	ok, _ = try("[2001:db8:1:2::99]:5000")
	require.True(t, ok)
	for len(open) < maxConnsPerSource+1 {
		s.loggedIn(open[len(open)-1])
		ok, _ = try(fmt.Sprintf("[2001:db8:1:2::%d]:5000", 100+len(open)))
		require.True(t, ok)
	}
	s.loggedIn(open[len(open)-1])
	ok, why = try("[2001:db8:1:2::200]:5000")
	require.False(t, ok)
	require.Contains(t, why, "too many SSH connections from your address")

	// Every slot: refused with the total.
	for i := 0; len(open) < maxConns; i++ {
		ok, _ = try(fmt.Sprintf("192.0.2.%d:5000", i+1))
		require.True(t, ok)
	}
	ok, why = try("198.51.100.1:5000")
	require.False(t, ok)
	require.Contains(t, why, fmt.Sprintf("too many SSH connections (%d)", maxConns))

	for _, c := range open {
		s.untrack(c)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Empty(t, s.conns)
	require.Empty(t, s.sources)
}

// holdEOF is a client connection whose end (a read error) waits until
// seen is closed, and whose writes after the end are dropped: Go's SSH
// client then reads what the server sent before it closed.
type holdEOF struct {
	net.Conn
	seen <-chan struct{}
}

func (c holdEOF) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && n == 0 {
		select {
		case <-c.seen:
		case <-time.After(30 * time.Second):
		}
	}
	return n, err
}

func (c holdEOF) Write(p []byte) (int, error) {
	_, _ = c.Conn.Write(p)
	return len(p), nil
}

// stall opens a TCP connection from local that sends nothing and returns
// it with the first line the server sent: its SSH version, or the reason
// it refused the connection.
func stall(t *testing.T, ts *testServer, local string) (net.Conn, string) {
	t.Helper()
	d := net.Dialer{Timeout: 20 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", ts.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Time{}))
	return c, strings.TrimSpace(line)
}

// TestStalledHandshakes: 50 stalled handshakes from 5 addresses hold at
// most maxPreAuthPerSource slots each; the others are refused with a
// message; a 6th and 7th address still log in with a key and the
// password.
func TestStalledHandshakes(t *testing.T) {
	f := newSecFixture(t, func(cfg *Config) { cfg.preAuthTimeout = 10 * time.Minute })
	held := map[string]int{}
	for a := 1; a <= 5; a++ {
		addr := fmt.Sprintf("127.4.0.%d", a)
		for range 10 {
			_, line := stall(t, f.ts, addr)
			if line == ServerVersion {
				held[addr]++
				continue
			}
			require.Equal(t, fmt.Sprintf("qnetd pairing: connection refused: %d connections from your address have not logged in yet; each is closed 10m0s after it opened",
				maxPreAuthPerSource), line)
		}
	}
	for a := 1; a <= 5; a++ {
		require.Equal(t, maxPreAuthPerSource, held[fmt.Sprintf("127.4.0.%d", a)])
	}
	f.ts.log.wait(t, `"addr":"127.4.0.5"`)
	f.ts.log.wait(t, "pairing: connection refused")
	require.Equal(t, 5, strings.Count(warnings(f.ts.log.String()), "have not logged in yet"), "one warning per source")

	cl, _, err := f.ts.loginGo("127.4.0.6", ssh.PublicKeys(signerFromFile(t, f.c.key)))
	require.NoError(t, err, "a key login from a 6th address")
	out, err := f.goRun(t, cl, "exit")
	require.NoError(t, err, out)
	cl.Close()
	cl, _, err = f.ts.loginGo("127.4.0.7", ssh.Password("correct horse"))
	require.NoError(t, err, "a password login from a 7th address")
	cl.Close()
	// The real ssh client too.
	r := f.c.ssh(f.ts, []string{"-b", "127.4.0.8"}, "exit")
	require.Equal(t, 0, r.code, r.String())
}

// TestPreAuthDeadline: a connection that does not log in is closed at the
// deadline, whether it stalls before the key exchange or after it (then a
// banner says why), and counts as a failure of its address.
func TestPreAuthDeadline(t *testing.T) {
	const deadline = 3 * time.Second
	c := newClient(t)
	ts := startServer(t, func(cfg *Config) {
		cfg.AuthorizedKeys = []string{c.pub()}
		cfg.Password = "correct horse"
		cfg.preAuthTimeout = deadline
	})
	f := &secFixture{ts: ts, c: c}

	// Stalled before the key exchange: nothing sent.
	nc, line := stall(t, f.ts, "127.5.0.1")
	require.Equal(t, ServerVersion, line)
	t0 := time.Now()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(deadline+30*time.Second)))
	_, err := io.Copy(io.Discard, nc) // until the server closes it
	require.NoError(t, err, "closed by the server, not by the read deadline")
	took := time.Since(t0)
	require.Greater(t, took, deadline/2)
	require.Less(t, took, deadline+15*time.Second)
	f.ts.log.wait(t, `"addr":"127.5.0.1","timeout":3000,`)
	f.ts.log.wait(t, "connection closed: no login within the timeout")
	f.ts.s.limiter.mu.Lock()
	require.Equal(t, 1, f.ts.s.limiter.m["127.5.0.1"].failures, "counts against the address")
	f.ts.s.limiter.mu.Unlock()

	// Stalled after the key exchange, at the password prompt. Go's client
	// stops reading at the first error, so the end of the connection is
	// held back (holdEOF) until it has read the banner sent before it.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.5.0.2")}}
	raw, err := d.Dial("tcp", f.ts.addr)
	require.NoError(t, err)
	seen := make(chan struct{})
	var seenOnce sync.Once
	release := make(chan struct{})
	type res struct {
		banners []string
		err     error
	}
	done := make(chan res, 1)
	go func() {
		slow := ssh.PasswordCallback(func() (string, error) {
			<-release
			return "correct horse", nil
		})
		cl, banners, err := f.ts.loginConn(holdEOF{Conn: raw, seen: seen}, func(string) { seenOnce.Do(func() { close(seen) }) }, slow)
		if cl != nil {
			cl.Close()
		}
		done <- res{banners, err}
	}()
	f.ts.log.wait(t, `"addr":"127.5.0.2","timeout":3000,`)
	close(release)
	r := <-done
	require.Error(t, r.err, "the right password came too late")
	require.Equal(t, []string{"qnetd pairing: no login within 3s; the connection is closed.\n"}, r.banners)

	// An address that stalled can still log in.
	cl, _, err := f.ts.loginGo("127.5.0.1", ssh.PublicKeys(signerFromFile(t, f.c.key)))
	require.NoError(t, err)
	cl.Close()
	require.Equal(t, 0, f.ts.passwordChecks())
}
