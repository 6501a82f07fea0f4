package pki

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	keyA = Identity{ID: "ssh-key SHA256:AAAA", Label: "ssh-ed25519 SHA256:AAAA (root@pve1)"}
	keyB = Identity{ID: "ssh-key SHA256:BBBB", Label: "ssh-ed25519 SHA256:BBBB (root@other)"}
)

// signFor signs a fresh request for cluster on behalf of who.
func signFor(t *testing.T, a *Authority, cluster string, who Identity) (SignResult, error) {
	t.Helper()
	csr, err := ParseCSR(csrFor(t, cluster, rsaKey(t, 2048)))
	require.NoError(t, err)
	return a.SignFor(csr, cluster, who, now)
}

func fileOf(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}

// TestClusterNameBelongsToItsFirstSigner: the key that first had a name
// signed may sign it again; another key is refused, in any case of the
// name, with a message that says what to do, and the certificate on disk
// stays as it was.
func TestClusterNameBelongsToItsFirstSigner(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	res, err := signFor(t, a, "pve1", keyA)
	require.NoError(t, err)
	require.Equal(t, SignResult{Path: filepath.Join(a.Dir, "cluster-pve1.crt"), Claim: ClaimNew}, res)
	res, err = signFor(t, a, "pve1", keyA)
	require.NoError(t, err, "re-running the setup from the same node")
	require.Equal(t, ClaimSame, res.Claim)
	signed := fileOf(t, res.Path)

	for _, name := range []string{"pve1", "PVE1", "Pve1"} {
		_, err = signFor(t, a, name, keyB)
		var owned *OwnedError
		require.True(t, errors.As(err, &owned), "%s: %v", name, err)
		require.Equal(t, keyA.ID, owned.Owner.ID)
		require.Equal(t, fmt.Sprintf(`cluster name %q belongs to another pairing key, which had it signed first (2026-11-22); `+
			`if this is your cluster, ask the Home Assistant admin to add %q to the add-on's option forget_clusters and restart it `+
			`(on a plain qnetd host: corosync-qnetd-certutil -F -n %s), then run the setup again`, name, name, name), err.Error())
	}
	require.Equal(t, signed, fileOf(t, res.Path), "the owner's certificate is not overwritten")
	require.NoFileExists(t, filepath.Join(a.Dir, "cluster-PVE1.crt"))

	// Another name is free for key B; key A cannot take it.
	_, err = signFor(t, a, "pve2", keyB)
	require.NoError(t, err)
	_, err = signFor(t, a, "pve2", keyA)
	require.ErrorAs(t, err, new(*OwnedError))

	owners, err := Owners(a.Dir)
	require.NoError(t, err)
	require.Equal(t, []Owner{
		{Cluster: "pve1", ID: keyA.ID, Label: keyA.Label, Claimed: now},
		{Cluster: "pve2", ID: keyB.ID, Label: keyB.Label, Claimed: now},
	}, owners, "survives a reload: read from the file")
	st, err := os.Stat(filepath.Join(a.Dir, OwnersFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

// TestLegacyNameIsClaimedByTheFirstSigner: a certificate signed before
// owners were recorded (or locally by the administrator) has no owner; the
// first key that signs the name again owns it.
func TestLegacyNameIsClaimedByTheFirstSigner(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	csr, err := ParseCSR(csrFor(t, "old", rsaKey(t, 2048)))
	require.NoError(t, err)
	_, err = a.Sign(csr, "old", now)
	require.NoError(t, err)
	owners, err := Owners(a.Dir)
	require.NoError(t, err)
	require.Empty(t, owners, "local signing records no owner")

	res, err := signFor(t, a, "OLD", keyB)
	require.NoError(t, err)
	require.Equal(t, ClaimLegacy, res.Claim, "cluster-old.crt counts for OLD: names compare ignoring case")
	_, err = signFor(t, a, "old", keyA)
	require.ErrorAs(t, err, new(*OwnedError))
}

// TestLocalSigningIsTheAdministrators: signing without an identity (the
// local corosync-qnetd-certutil) may sign an owned name and leaves the
// owner as it is.
func TestLocalSigningIsTheAdministrators(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	_, err = signFor(t, a, "pve1", keyA)
	require.NoError(t, err)
	csr, err := ParseCSR(csrFor(t, "pve1", rsaKey(t, 2048)))
	require.NoError(t, err)
	_, err = a.Sign(csr, "pve1", now)
	require.NoError(t, err)
	owners, err := Owners(a.Dir)
	require.NoError(t, err)
	require.Len(t, owners, 1)
	require.Equal(t, keyA.ID, owners[0].ID)
}

// TestForget: after Forget, the name has no owner and the next key that
// signs it owns it; forgetting an unknown name reports so.
func TestForget(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	_, err = signFor(t, a, "pve1", keyA)
	require.NoError(t, err)
	_, err = signFor(t, a, "pve2", keyA)
	require.NoError(t, err)

	o, ok, err := Forget(a.Dir, "PVE1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, Owner{Cluster: "pve1", ID: keyA.ID, Label: keyA.Label, Claimed: now}, o)
	_, ok, err = Forget(a.Dir, "pve1")
	require.NoError(t, err)
	require.False(t, ok, "forgotten already")
	_, ok, err = Forget(a.Dir, "never-signed")
	require.NoError(t, err)
	require.False(t, ok)

	res, err := signFor(t, a, "pve1", keyB)
	require.NoError(t, err)
	require.Equal(t, ClaimLegacy, res.Claim, "its certificate is there, without an owner")
	_, err = signFor(t, a, "pve2", keyB)
	require.ErrorAs(t, err, new(*OwnedError), "only the forgotten name changed hands")
}

// TestOwnersBounded: the record holds at most maxOwners names; a new name
// beyond that is refused with what to do, a known one still signs.
func TestOwnersBounded(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	doc := &ownersDoc{}
	for i := range maxOwners {
		doc.Clusters = append(doc.Clusters, Owner{Cluster: fmt.Sprintf("c%d", i), ID: keyA.ID, Claimed: now})
	}
	require.NoError(t, saveOwners(a.Dir, doc))
	_, err = signFor(t, a, "one-more", keyA)
	require.EqualError(t, err, "sign one-more: 1024 cluster names are recorded, the most this qnetd keeps; "+
		"forget the clusters that no longer exist (corosync-qnetd-certutil -F -n NAME)")
	require.NoFileExists(t, filepath.Join(a.Dir, "cluster-one-more.crt"))
	_, err = signFor(t, a, "c7", keyA)
	require.NoError(t, err)
}

// TestDamagedOwnersFileSignsNothing: a record that cannot be read refuses
// pairing signatures with the file and the fix, rather than losing owners.
func TestDamagedOwnersFileSignsNothing(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	path := filepath.Join(a.Dir, OwnersFile)
	for name, data := range map[string]string{
		"not JSON":     "{",
		"bad name":     `{"clusters":[{"cluster":"*.lan","owner":"x"}]}`,
		"no owner":     `{"clusters":[{"cluster":"pve"}]}`,
		"unknown keys": `{"clusterz":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, []byte(data), 0o600))
			_, err := signFor(t, a, "pve", keyA)
			require.ErrorContains(t, err, "sign pve: "+path+" is damaged (")
			require.ErrorContains(t, err, "); restore it from a backup, or delete it")
			require.NoFileExists(t, filepath.Join(a.Dir, "cluster-pve.crt"))
		})
	}
	require.NoError(t, os.WriteFile(path, make([]byte, maxOwnersFile+1), 0o600))
	_, err = signFor(t, a, "pve", keyA)
	require.ErrorContains(t, err, "is damaged (more than 1048576 bytes)")
}

// TestFailedSigningReleasesTheClaim: when the certificate cannot be
// written, the name is not left claimed.
func TestFailedSigningReleasesTheClaim(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	// A directory where the certificate goes: the rename fails.
	require.NoError(t, os.Mkdir(filepath.Join(a.Dir, "cluster-pve.crt"), 0o700))
	_, err = signFor(t, a, "pve", keyA)
	require.ErrorContains(t, err, "sign pve: rename ")
	owners, err := Owners(a.Dir)
	require.NoError(t, err)
	require.Empty(t, owners)
}

// TestConcurrentClaims: two keys signing one new name at once: exactly one
// owns it.
func TestConcurrentClaims(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	csrs := map[string]*x509.CertificateRequest{}
	for _, who := range []Identity{keyA, keyB} {
		csr, err := ParseCSR(csrFor(t, "pve", rsaKey(t, 2048)))
		require.NoError(t, err)
		csrs[who.ID] = csr
	}
	for range 10 {
		_, _, err := Forget(a.Dir, "pve")
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, who := range []Identity{keyA, keyB} {
			wg.Go(func() {
				b, err := Load(a.Dir) // as separate processes would
				if err == nil {
					_, err = b.SignFor(csrs[who.ID], "pve", who, now)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		var ok, owned int
		for err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.As(err, new(*OwnedError)):
				owned++
			default:
				t.Fatal(err)
			}
		}
		require.Equal(t, [2]int{1, 1}, [2]int{ok, owned})
		owners, err := Owners(a.Dir)
		require.NoError(t, err)
		require.Len(t, owners, 1)
	}
	var doc map[string]any
	require.NoError(t, json.Unmarshal(fileOf(t, filepath.Join(a.Dir, OwnersFile)), &doc))
	require.Contains(t, doc["about"], "DOCS.md")
}

// TestRewriteKeepsTheOwner: root forgetting a cluster locally (in the
// add-on's container) must leave the record readable by the daemon's
// user, who owns it.
func TestRewriteKeepsTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	_, err = signFor(t, a, "pve1", keyA)
	require.NoError(t, err)
	_, err = signFor(t, a, "pve2", keyA)
	require.NoError(t, err)
	path := filepath.Join(a.Dir, OwnersFile)
	require.NoError(t, os.Chown(path, 4321, 4322))
	_, ok, err := Forget(a.Dir, "pve1")
	require.NoError(t, err)
	require.True(t, ok)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	require.Equal(t, [2]uint32{4321, 4322}, [2]uint32{st.Uid, st.Gid})
}

// TestClaimNames pins the words a claim is logged with.
func TestClaimNames(t *testing.T) {
	for c, want := range map[Claim]string{
		ClaimSame:   "same owner",
		ClaimNew:    "new",
		ClaimLegacy: "claimed, signed before owners were recorded",
		Claim(0):    "Claim(0)",
		Claim(4):    "Claim(4)",
	} {
		require.Equal(t, want, c.String())
	}
}
