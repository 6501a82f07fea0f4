package pcsd

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/pki"
)

// TestFirstOneTime: with the SSH endpoint off, the pcs endpoint's first
// start makes the one-time password, once: not again after a restart, and
// not when a token exists already (the add-on was paired before).
func TestFirstOneTime(t *testing.T) {
	dir := t.TempDir()
	gate, err := pairing.NewGate(dir, "", time.Now)
	require.NoError(t, err)
	logs := newSyncBuf()
	made, err := FirstOneTime(dir, gate, time.Now(), zerolog.New(logs))
	require.NoError(t, err)
	require.True(t, made)
	v := gate.OneTime().View(time.Now())
	require.Equal(t, pairing.OneTimeValid, v.State)
	require.NotEmpty(t, v.Password)
	require.Contains(t, logs.String(), "pcsd: made a one-time pairing password for the first pcs host auth")
	require.NotContains(t, logs.String(), v.Password, "the log never holds the password")

	// A restart: the same password, nothing new made.
	gate2, err := pairing.NewGate(dir, "", time.Now)
	require.NoError(t, err)
	made, err = FirstOneTime(dir, gate2, time.Now(), zerolog.Nop())
	require.NoError(t, err)
	require.False(t, made)
	require.Equal(t, v.Password, gate2.OneTime().View(time.Now()).Password)

	// Paired before (a token exists), never a one-time password made: none.
	dir3 := t.TempDir()
	ts, err := loadTokens(filepath.Join(dir3, "pcsd", TokensFile))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir3, "pcsd"), 0o700))
	_, _, err = ts.add("192.0.2.1", false, time.Now())
	require.NoError(t, err)
	gate3, err := pairing.NewGate(dir3, "pw", time.Now)
	require.NoError(t, err)
	made, err = FirstOneTime(dir3, gate3, time.Now(), zerolog.Nop())
	require.NoError(t, err)
	require.False(t, made)
	require.Equal(t, pairing.OneTimeNone, gate3.OneTime().View(time.Now()).State)

	// A damaged token file stops the start with the reason.
	dir4 := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir4, "pcsd"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir4, "pcsd", TokensFile), []byte("{"), 0o600))
	gate4, err := pairing.NewGate(dir4, "", time.Now)
	require.NoError(t, err)
	_, err = FirstOneTime(dir4, gate4, time.Now(), zerolog.Nop())
	require.ErrorContains(t, err, "damaged")
}

// TestRevoke: the status page lists each token with the clusters it owns;
// a revoked token is refused at once (401, as pcsd answers an unknown
// token), it is gone from tokens.json after a restart, and the cluster it
// owned can be paired by a new token; certificates already issued stay
// where they are. An unknown id changes nothing.
func TestRevoke(t *testing.T) {
	ts := startServer(t, testPassword, nil)
	t1, t2 := ts.token(), ts.token()
	require.Equal(t, 200, ts.sign(t1, "rhel-a", makeCSR(t, "rhel-a")).code)
	require.Equal(t, 200, ts.sign(t1, "rhel-b", makeCSR(t, "rhel-b")).code)
	require.Equal(t, 200, ts.sign(t2, "rhel-c", makeCSR(t, "rhel-c")).code)
	require.Equal(t, 400, ts.sign(t2, "rhel-a", makeCSR(t, "rhel-a")).code, "owned by t1")

	list, err := ts.s.Tokens()
	require.NoError(t, err)
	require.Len(t, list, 2)
	r1, _ := ts.s.tokens.lookup(t1)
	require.Equal(t, r1.ID, list[0].ID)
	require.Equal(t, "127.0.0.1", list[0].Addr)
	require.Equal(t, []string{"rhel-a", "rhel-b"}, list[0].Clusters)
	require.Equal(t, []string{"rhel-c"}, list[1].Clusters)

	_, err = ts.s.Revoke("nosuchid")
	require.ErrorIs(t, err, ErrNoSuchToken)
	list2, err := ts.s.Tokens()
	require.NoError(t, err)
	require.Equal(t, list, list2)

	released, err := ts.s.Revoke(r1.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"rhel-a", "rhel-b"}, released)
	require.Contains(t, ts.log.String(), "pcsd: revoked a pcs token at the admin's request")

	a := ts.do("GET", "/remote/qdevice_net_get_ca_certificate", t1, nil)
	require.Equal(t, 401, a.code)
	require.Equal(t, `{"notauthorized":"true"}`, a.body)
	require.Equal(t, 401, ts.sign(t1, "rhel-a", makeCSR(t, "rhel-a")).code)

	// The released name goes to the next token that signs it; the other
	// token's name is untouched.
	require.Equal(t, 200, ts.sign(t2, "rhel-a", makeCSR(t, "rhel-a")).code)
	owners, err := pki.Owners(ts.a.Dir)
	require.NoError(t, err)
	r2, _ := ts.s.tokens.lookup(t2)
	for _, o := range owners {
		require.Equal(t, r2.identity().ID, o.ID, o.Cluster)
	}
	_, err = os.Stat(filepath.Join(ts.a.Dir, "cluster-rhel-b.crt"))
	require.NoError(t, err, "a released name's certificate stays")

	// After a restart the revoked token is still gone.
	reloaded, err := loadTokens(filepath.Join(ts.dataDir, "pcsd", TokensFile))
	require.NoError(t, err)
	require.Equal(t, 1, reloaded.count())
	_, ok := reloaded.lookup(t1)
	require.False(t, ok)
	_, ok = reloaded.lookup(t2)
	require.True(t, ok)
}
