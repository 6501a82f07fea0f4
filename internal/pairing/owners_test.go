package pairing

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// goExec runs one command over a Go SSH client and returns its output and
// exit status.
func goExec(t *testing.T, cl *ssh.Client, cmd string) (string, string, int) {
	t.Helper()
	s, err := cl.NewSession()
	require.NoError(t, err)
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	code := 0
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitStatus()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

// TestPairingKeysOwnTheirClusters: over the pairing endpoint a cluster
// name belongs to the SSH key that first had it signed. The same key signs
// it again (pvecm qdevice setup --force); another key is refused with what
// to do, and cannot overwrite the certificate, forget the owner (-F) or
// sign wildcards or the server's name. Once the administrator forgets the
// cluster, the next key claims it, and the log says so.
func TestPairingKeysOwnTheirClusters(t *testing.T) {
	keyA, keyB := newSigner(t), newSigner(t)
	line := func(s ssh.Signer, comment string) string {
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " " + comment
	}
	ts := startServer(t, func(c *Config) {
		c.AuthorizedKeys = []string{line(keyA, "root@pve1"), line(keyB, "root@elsewhere")}
	})
	clA, err := ts.dialGo("", ssh.PublicKeys(keyA))
	require.NoError(t, err)
	defer clA.Close()
	clB, err := ts.dialGo("", ssh.PublicKeys(keyB))
	require.NoError(t, err)
	defer clB.Close()
	labelA := "ssh-ed25519 " + ssh.FingerprintSHA256(keyA.PublicKey()) + " (root@pve1)"
	labelB := "ssh-ed25519 " + ssh.FingerprintSHA256(keyB.PublicKey()) + " (root@elsewhere)"
	sign := func(cl *ssh.Client, cn, cluster string) (string, string, int) {
		t.Helper()
		require.NoError(t, os.WriteFile(ts.s.realTmp("qdevice-net-node.crq"), makeCSR(t, cn), 0o600))
		return goExec(t, cl, "corosync-qnetd-certutil -s -c /tmp/qdevice-net-node.crq -n '"+cluster+"'")
	}

	_, errs, code := goExec(t, clA, "corosync-qnetd-certutil -i")
	require.Equal(t, 0, code, errs)
	out, errs, code := sign(clA, "pve1", "pve1")
	require.Equal(t, 0, code, errs)
	require.Equal(t, "Signing cluster certificate\nCertificate stored in /etc/corosync/qnetd/nssdb/cluster-pve1.crt\n", out)
	ts.log.wait(t, `"key":"`+labelA+`","message":"pairing: signed certificate for a new cluster; this key owns the cluster name now"`)
	crt := filepath.Join(ts.pkiDir, "cluster-pve1.crt")
	signed, err := os.ReadFile(crt)
	require.NoError(t, err)

	// Key B: refused for pve1 in any case, with what to do.
	for _, name := range []string{"pve1", "PVE1"} {
		_, errs, code = sign(clB, name, name)
		require.Equal(t, 1, code)
		require.Equal(t, `corosync-qnetd-certutil: cluster name "`+name+`" belongs to another pairing key, which had it signed first (`+
			ts.clock.Now().UTC().Format("2006-01-02")+`); if this is your cluster, ask the Home Assistant admin to add "`+name+
			`" to the add-on's option forget_clusters and restart it (on a plain qnetd host: corosync-qnetd-certutil -F -n `+name+`), then run the setup again`+"\n", errs)
	}
	after, err := os.ReadFile(crt)
	require.NoError(t, err)
	require.Equal(t, signed, after, "key B did not overwrite key A's certificate")
	require.NoFileExists(t, filepath.Join(ts.pkiDir, "cluster-PVE1.crt"))
	ts.log.wait(t, `"owner":"`+labelA+`"`)
	require.Contains(t, ts.log.String(), `"cluster":"pve1","key":"`+labelB+`","owner":"`+labelA+`"`)
	require.Contains(t, ts.log.String(), "pairing: refused to sign a cluster name that another key owns")

	// Wildcards and reserved names, for any key.
	_, errs, code = sign(clB, "*.lan", "*.lan")
	require.Equal(t, 1, code)
	require.Contains(t, errs, `cluster name "*.lan" is a wildcard`)
	_, errs, code = sign(clA, "Qnetd Server", "Qnetd Server")
	require.Equal(t, 1, code)
	require.Contains(t, errs, `cluster name "Qnetd Server" is reserved`)
	require.NoFileExists(t, filepath.Join(ts.pkiDir, "cluster-Qnetd Server.crt"))

	// Forgetting is the administrator's, not a pairing key's.
	_, errs, code = goExec(t, clB, "corosync-qnetd-certutil -F -n pve1")
	require.Equal(t, ExitRefused, code)
	require.Contains(t, errs, "option -F is not available over SSH")
	owners, err := pki.Owners(ts.pkiDir)
	require.NoError(t, err)
	require.Len(t, owners, 1)

	// Key A again: pvecm qdevice setup --force from the same node.
	_, errs, code = sign(clA, "pve1", "pve1")
	require.Equal(t, 0, code, errs)
	ts.log.wait(t, "pairing: signed certificate again for a cluster this key owns")

	// Forgotten by the administrator: key B claims it.
	_, ok, err := pki.Forget(ts.pkiDir, "pve1")
	require.NoError(t, err)
	require.True(t, ok)
	_, errs, code = sign(clB, "pve1", "pve1")
	require.Equal(t, 0, code, errs)
	ts.log.wait(t, `"key":"`+labelB+`","message":"pairing: signed certificate for a cluster signed before owners were recorded; this key owns the cluster name now"`)
	_, _, code = sign(clA, "pve1", "pve1")
	require.Equal(t, 1, code, "key A lost it")
}
