package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/qnetd-addon/qnetd/internal/status"
)

// TestStatusPageOneTimePassword: the pairing card's button makes a
// one-time password through the status page; the card shows it; the SSH
// endpoint takes it once, to install a key; then the card says it is
// used up, by that key.
func TestStatusPageOneTimePassword(t *testing.T) {
	cfg := testConfig(t)
	d := serve(t, cfg)
	web := "http://" + d.WebAddr().String()

	card := func(r *http.Response) status.Pairing {
		t.Helper()
		defer r.Body.Close()
		require.Equal(t, http.StatusOK, r.StatusCode)
		var v status.View
		require.NoError(t, json.NewDecoder(r.Body).Decode(&v))
		require.NotNil(t, v.Pairing.OneTime)
		return v.Pairing
	}
	r, err := http.Get(web + "/api/status")
	require.NoError(t, err)
	require.Equal(t, "none", card(r).OneTime.State, "the daemon alone makes none: the add-on's first start does")

	r, err = http.Post(web+"/api/pairing/one-time-password", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	ot := card(r).OneTime
	require.Equal(t, "valid", ot.State)
	require.WithinDuration(t, time.Now().Add(time.Hour), ot.Expires, time.Minute)

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	sshPub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	cc := &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.Password(ot.Password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	cl, err := ssh.Dial("tcp", d.PairingAddr().String(), cc)
	require.NoError(t, err)
	defer cl.Close()
	sess, err := cl.NewSession()
	require.NoError(t, err)
	sess.Stdin = strings.NewReader(string(ssh.MarshalAuthorizedKey(sshPub)))
	out, err := sess.CombinedOutput(`exec sh -c 'cd ; umask 077 ; mkdir -p .ssh && cat >> .ssh/authorized_keys || exit 1'`)
	require.NoError(t, err, string(out))

	// The page refreshes on its own (every 2 s): await the change.
	var v status.View
	require.NoError(t, json.Unmarshal([]byte(pageEventWith(t, web+"/api/events", `"state":"used"`)), &v))
	ot = v.Pairing.OneTime
	require.Equal(t, "used", ot.State)
	require.Empty(t, ot.Password)
	require.Equal(t, ssh.FingerprintSHA256(sshPub), ot.UsedBy)
	_, err = ssh.Dial("tcp", d.PairingAddr().String(), cc)
	require.Error(t, err, "used up")
}
