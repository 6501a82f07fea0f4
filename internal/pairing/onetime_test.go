package pairing

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

var oneTimeShape = regexp.MustCompile(`^[a-hjkmnp-z2-9]{4}(-[a-hjkmnp-z2-9]{4}){3}$`)

func TestOneTimeLifecycle(t *testing.T) {
	dir := t.TempDir()
	o, err := OpenOneTime(dir)
	require.NoError(t, err)
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	require.False(t, o.Made())
	require.Equal(t, OneTimeView{State: OneTimeNone}, o.View(t0))

	v, err := o.Renew(t0)
	require.NoError(t, err)
	require.Equal(t, OneTimeValid, v.State)
	require.Regexp(t, oneTimeShape, v.Password)
	require.Equal(t, t0.Add(time.Hour), v.Expires)
	fi, err := os.Stat(filepath.Join(dir, oneTimeFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "only the daemon's user reads it")

	// A restart shows the same password.
	o2, err := OpenOneTime(dir)
	require.NoError(t, err)
	require.Equal(t, v, o2.View(t0.Add(time.Minute)))

	_, ok := o.check([]byte("wrong-pass-word-xxxx"), t0)
	require.False(t, ok)
	ticket, ok := o.check([]byte(v.Password), t0.Add(59*time.Minute))
	require.True(t, ok)
	_, ok = o.check([]byte(v.Password), t0.Add(time.Hour))
	require.False(t, ok, "valid for one hour only")
	require.Equal(t, OneTimeView{State: OneTimeExpired, Made: t0, Expires: t0.Add(time.Hour)}, o.View(t0.Add(time.Hour)))

	// A login just before expiry may not install after it.
	require.ErrorIs(t, o.use(ticket, t0.Add(time.Hour), func() (string, error) { t.Fatal("installed after expiry"); return "", nil }), ErrOneTimeExpired)

	// An install that adds no key (it was there already) uses nothing up.
	require.NoError(t, o.use(ticket, t0.Add(time.Minute), func() (string, error) { return "", nil }))
	require.Equal(t, OneTimeValid, o.View(t0.Add(time.Minute)).State)
	// A failed install uses nothing up either.
	boom := errors.New("boom")
	require.ErrorIs(t, o.use(ticket, t0.Add(time.Minute), func() (string, error) { return "", boom }), boom)
	require.Equal(t, OneTimeValid, o.View(t0.Add(time.Minute)).State)

	require.NoError(t, o.use(ticket, t0.Add(2*time.Minute), func() (string, error) { return "SHA256:first", nil }))
	used := o.View(t0.Add(3 * time.Minute))
	require.Equal(t, OneTimeView{State: OneTimeUsed, Made: t0, Expires: t0.Add(time.Hour), UsedAt: t0.Add(2 * time.Minute), UsedBy: "SHA256:first"}, used)
	require.ErrorIs(t, o.use(ticket, t0.Add(3*time.Minute), func() (string, error) { return "SHA256:second", nil }), ErrOneTimeUsed)
	_, ok = o.check([]byte(v.Password), t0.Add(3*time.Minute))
	require.False(t, ok, "used up")

	// Used stays used across a restart, and the file no longer holds it.
	data, err := os.ReadFile(filepath.Join(dir, oneTimeFile))
	require.NoError(t, err)
	require.NotContains(t, string(data), v.Password)
	o3, err := OpenOneTime(dir)
	require.NoError(t, err)
	require.Equal(t, used, o3.View(t0.Add(3*time.Minute)))

	// A new one replaces it; a ticket of the old one cannot use the new.
	v2, err := o.Renew(t0.Add(10 * time.Minute))
	require.NoError(t, err)
	require.NotEqual(t, v.Password, v2.Password)
	t2, ok := o.check([]byte(v2.Password), t0.Add(11*time.Minute))
	require.True(t, ok)
	_, err = o.Renew(t0.Add(12 * time.Minute))
	require.NoError(t, err)
	require.ErrorIs(t, o.use(t2, t0.Add(13*time.Minute), func() (string, error) { return "SHA256:x", nil }), ErrOneTimeUsed,
		"renewed since the login: the old password is gone")
}

func TestOneTimeDamagedFileReadsAsUsed(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, oneTimeFile), []byte("{not json"), 0o600))
	o, err := OpenOneTime(dir)
	require.NoError(t, err)
	require.True(t, o.Made(), "no new password is made on its own")
	require.Equal(t, OneTimeUsed, o.View(time.Now()).State)
	_, ok := o.check([]byte(""), time.Now())
	require.False(t, ok)
}

func TestOneTimePasswordsDiffer(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 2000 {
		p, err := newOneTimePassword()
		require.NoError(t, err)
		require.Regexp(t, oneTimeShape, p)
		require.False(t, seen[p])
		seen[p] = true
		for _, r := range strings.ReplaceAll(p, "-", "") {
			counts[r]++
		}
	}
	// 32,000 characters over 31 letters: about 1,032 each. A biased draw
	// (modulo without rejection) would not show at this size, but a
	// missing or stuck letter would.
	require.Len(t, counts, len(oneTimeAlphabet))
	for r, n := range counts {
		require.Greater(t, n, 800, "letter %q", r)
		require.Less(t, n, 1300, "letter %q", r)
	}
}

// TestFirstOneTime: made on the first start only, and not when a key may
// log in already.
func TestFirstOneTime(t *testing.T) {
	ts := startServer(t, nil)
	made, err := ts.s.FirstOneTime()
	require.NoError(t, err)
	require.True(t, made)
	v := ts.s.OneTime().View(ts.clock.Now())
	require.Equal(t, OneTimeValid, v.State)
	ts.log.wait(t, "made a one-time pairing password for the first pairing")
	require.NotContains(t, ts.log.String(), v.Password, "the log never holds the secret")
	made, err = ts.s.FirstOneTime()
	require.NoError(t, err)
	require.False(t, made, "only once")

	c := newClient(t)
	withKey := startServer(t, func(cfg *Config) { cfg.AuthorizedKeys = []string{c.pub()} })
	made, err = withKey.s.FirstOneTime()
	require.NoError(t, err)
	require.False(t, made, "a key may pair already")
}

// TestOneTimeWithSSHCopyID: the real ssh-copy-id installs a key with the
// one-time password, which is then used up: a second node cannot log in
// with it, and a password made later works again.
func TestOneTimeWithSSHCopyID(t *testing.T) {
	ts := startServer(t, nil)
	_, err := ts.s.FirstOneTime()
	require.NoError(t, err)
	pw := ts.s.OneTime().View(ts.clock.Now()).Password

	copyID := func(c *client) result {
		return c.run(nil, "ssh-copy-id", "-i", c.key, "-p", fmt.Sprint(ts.port), "-F", "/dev/null",
			"-o", "UserKnownHostsFile="+c.knownHosts, "-o", "IdentityAgent=none", "-o", "LogLevel=INFO", "root@127.0.0.1")
	}
	a := newClient(t)
	a.trust(ts)
	a.password = pw
	r := copyID(a)
	require.Equal(t, 0, r.code, r.String())
	require.Contains(t, r.stdout+r.stderr, "Number of key(s) added: 1")
	ts.log.wait(t, "logged in with the one-time pairing password")
	ts.log.wait(t, "the one-time pairing password is used up")
	v := ts.s.OneTime().View(ts.clock.Now())
	require.Equal(t, OneTimeUsed, v.State)
	require.Equal(t, ssh.FingerprintSHA256(signerFromFile(t, a.key).PublicKey()), v.UsedBy)
	// The installed key works on its own.
	r = a.ssh(ts, nil, "corosync-qnetd-certutil", "-i")
	require.Equal(t, 0, r.code, r.String())

	b := newClient(t)
	b.trust(ts)
	b.password = pw
	r = copyID(b)
	require.NotEqual(t, 0, r.code, r.String())
	require.Contains(t, r.stderr, "no one-time pairing password is valid", "ssh shows why")

	// The admin makes a new one on the status page.
	v, err = ts.s.RenewOneTime()
	require.NoError(t, err)
	b.password = v.Password
	r = copyID(b)
	require.Equal(t, 0, r.code, r.String())
	require.NotContains(t, ts.log.String(), pw)
	require.NotContains(t, ts.log.String(), v.Password)

	// An hour later a new one no longer works.
	v, err = ts.s.RenewOneTime()
	require.NoError(t, err)
	ts.clock.Advance(OneTimeValidity)
	_, err = ts.dialGo("", ssh.Password(v.Password))
	require.Error(t, err, "expired")
}

// TestOneTimeTwoLoginsOneKey: two connections logged in with the same
// one-time password; only the first key installs.
func TestOneTimeTwoLoginsOneKey(t *testing.T) {
	ts := startServer(t, nil)
	_, err := ts.s.FirstOneTime()
	require.NoError(t, err)
	pw := ts.s.OneTime().View(ts.clock.Now()).Password
	c1, err := ts.dialGo("", ssh.Password(pw))
	require.NoError(t, err)
	defer c1.Close()
	c2, err := ts.dialGo("127.0.0.2", ssh.Password(pw))
	require.NoError(t, err)
	defer c2.Close()
	install := func(cl *ssh.Client, c *client) (string, error) {
		s, err := cl.NewSession()
		require.NoError(t, err)
		defer s.Close()
		s.Stdin = strings.NewReader(c.pub() + "\n")
		out, err := s.CombinedOutput(`exec sh -c 'cd ; umask 077 ; mkdir -p .ssh && { [ -z "` + "`tail -1c .ssh/authorized_keys 2>/dev/null`" + `" ] || echo >> .ssh/authorized_keys || exit 1; } && cat >> .ssh/authorized_keys || exit 1'`)
		return string(out), err
	}
	out, err := install(c1, newClient(t))
	require.NoError(t, err, out)
	out, err = install(c2, newClient(t))
	require.Error(t, err)
	require.Contains(t, out, ErrOneTimeUsed.Error())
}
