package addon

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/pairing"
)

// TestInitMakesOneTimePasswordOnce: the first start makes a one-time
// pairing password and logs that it exists, without the secret; later
// starts keep it (a restart shows the same one) and make no other, and a
// first start with a key in authorized_keys makes none.
func TestInitMakesOneTimePasswordOnce(t *testing.T) {
	dir := t.TempDir()
	p := Paths{Options: filepath.Join(dir, "options.json"), Data: dir, Config: dir, RunDir: filepath.Join(dir, "run")}
	o := Defaults()
	var log strings.Builder
	require.NoError(t, Init(p, o, zerolog.New(&log)))
	ot, err := pairing.OpenOneTime(filepath.Join(dir, "ssh"))
	require.NoError(t, err)
	v := ot.View(time.Now())
	require.Equal(t, pairing.OneTimeValid, v.State)
	require.Contains(t, log.String(), "made a one-time pairing password for the first pairing")
	require.NotContains(t, log.String(), v.Password)

	log.Reset()
	require.NoError(t, Init(p, o, zerolog.New(&log)))
	again, err := pairing.OpenOneTime(filepath.Join(dir, "ssh"))
	require.NoError(t, err)
	require.Equal(t, v, again.View(time.Now()), "a restart keeps the same password")
	require.NotContains(t, log.String(), "made a one-time")

	withKey := t.TempDir()
	p.Data, p.Config = withKey, withKey
	o.AuthorizedKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxIv/2vaP4HcE7mnCOIfO38I5J0k+O6ZKbQCszuc7dP node1"}
	require.NoError(t, Init(p, o, zerolog.Nop()))
	none, err := pairing.OpenOneTime(filepath.Join(withKey, "ssh"))
	require.NoError(t, err)
	require.Equal(t, pairing.OneTimeNone, none.View(time.Now()).State)
}

// TestInitPcsOnlyMakesOneTimePassword: with the SSH pairing endpoint off
// and the pcs endpoint on, the first start makes the one-time password
// that `pcs host auth` uses (the status page shows it), once; with both
// off there is none.
func TestInitPcsOnlyMakesOneTimePassword(t *testing.T) {
	dir := t.TempDir()
	p := Paths{Options: filepath.Join(dir, "options.json"), Data: dir, Config: dir, RunDir: filepath.Join(dir, "run")}
	o := Defaults()
	o.PairingEnabled, o.PcsEnabled = false, true
	var log strings.Builder
	require.NoError(t, Init(p, o, zerolog.New(&log)))
	ot, err := pairing.OpenOneTime(filepath.Join(dir, "ssh"))
	require.NoError(t, err)
	v := ot.View(time.Now())
	require.Equal(t, pairing.OneTimeValid, v.State)
	require.Contains(t, log.String(), "pcsd: made a one-time pairing password for the first pcs host auth")
	require.NotContains(t, log.String(), v.Password)

	log.Reset()
	require.NoError(t, Init(p, o, zerolog.New(&log)))
	again, err := pairing.OpenOneTime(filepath.Join(dir, "ssh"))
	require.NoError(t, err)
	require.Equal(t, v, again.View(time.Now()), "a restart keeps the same password")
	require.NotContains(t, log.String(), "made a one-time")

	off := t.TempDir()
	p.Data, p.Config = off, off
	o.PcsEnabled = false
	require.NoError(t, Init(p, o, zerolog.Nop()))
	none, err := pairing.OpenOneTime(filepath.Join(off, "ssh"))
	require.NoError(t, err)
	require.Equal(t, pairing.OneTimeNone, none.View(time.Now()).State)
}
