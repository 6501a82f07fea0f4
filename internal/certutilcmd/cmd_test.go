package certutilcmd

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

func run(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, map[string]string{"QNETD_NSS_DB_DIR": dir}, &out, &errb, func() time.Time { return time.Now() })
	return code, out.String(), errb.String()
}

func TestInitTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nssdb")
	code, out, _ := run(t, dir, "-i")
	require.Equal(t, 0, code)
	require.Equal(t, "QNetd CA certificate is exported as "+dir+"/qnetd-cacert.crt\n", out)
	code, _, errs := run(t, dir, "-i")
	require.Equal(t, 1, code)
	require.Equal(t, "Certificate database ("+dir+") already exists. Delete it to initialize new db\n", errs)
}

func TestInitRefusesAnUpstreamNSSDatabase(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cert9.db"), nil, 0o600))
	code, _, errs := run(t, dir, "-i")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "holds an NSS database from upstream corosync-qnetd")
}

func TestSignLikePvecm(t *testing.T) {
	dir := t.TempDir()
	code, _, _ := run(t, dir, "-i")
	require.Equal(t, 0, code)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "pve"}}, key)
	require.NoError(t, err)
	crq := filepath.Join(t.TempDir(), "qdevice-net-node.crq")
	require.NoError(t, os.WriteFile(crq, der, 0o644))

	code, out, errs := run(t, dir, "-s", "-c", crq, "-n", "pve")
	require.Equal(t, 0, code, errs)
	require.Equal(t, "Signing cluster certificate\nCertificate stored in "+dir+"/cluster-pve.crt\n", out)

	code, _, errs = run(t, dir, "-s", "-c", crq, "-n", "other")
	require.Equal(t, 1, code)
	require.Contains(t, errs, `certificate request is for "pve" (CN), not for cluster "other"`)
	require.NoFileExists(t, filepath.Join(dir, "cluster-other.crt"))

	garbage := filepath.Join(t.TempDir(), "garbage.crq")
	require.NoError(t, os.WriteFile(garbage, []byte("garbage"), 0o644))
	code, _, errs = run(t, dir, "-s", "-c", garbage, "-n", "garbage")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "not a PKCS#10 certificate request")
	require.NoFileExists(t, filepath.Join(dir, "cluster-garbage.crt"))
}

func TestUpstreamErrorsAndExitCodes(t *testing.T) {
	dir := t.TempDir()
	code, _, errs := run(t, dir, "-s", "-c", "/nonexistent.crq", "-n", "pve")
	require.Equal(t, 2, code)
	require.Equal(t, "Can't open certificate file /nonexistent.crq\n", errs)

	crq := filepath.Join(t.TempDir(), "x.crq")
	require.NoError(t, os.WriteFile(crq, []byte("x"), 0o644))
	code, _, errs = run(t, dir, "-s", "-c", crq)
	require.Equal(t, 2, code)
	require.Equal(t, "You have to specify cluster name\n", errs)

	code, _, errs = run(t, filepath.Join(dir, "missing"), "-s", "-c", crq, "-n", "pve")
	require.Equal(t, 1, code)
	require.Equal(t, "Certificate database doesn't exists. Use corosync-qnetd-certutil -i to create it\n", errs)

	code, _, errs = run(t, dir, "-x")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "Invalid option: -x\n")
	code, _, errs = run(t, dir, "-c")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "Option -c requires an argument.\n")

	code, out, _ := run(t, dir, "-h")
	require.Equal(t, 0, code)
	require.Contains(t, out, "corosync-qnetd-certutil: [-i|-s]")
	code, _, _ = run(t, dir)
	require.Equal(t, 0, code, "no operation prints the usage and exits 0, as upstream")
}

func TestDirOptionWins(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := Main([]string{"-d", dir, "-i"}, map[string]string{"QNETD_NSS_DB_DIR": "/nonexistent/x"}, &out, &errb, time.Now)
	require.Equal(t, 0, code, errb.String())
	require.FileExists(t, filepath.Join(dir, "qnetd-cacert.crt"))
}

func writeCSR(t *testing.T, cn string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	require.NoError(t, err)
	crq := filepath.Join(t.TempDir(), "qdevice-net-node.crq")
	require.NoError(t, os.WriteFile(crq, der, 0o644))
	return crq
}

// TestSignRefusesTheServersName: `-s -n 'Qnetd Server'` (any case) would
// make a certificate that poses as the server; it is refused with a
// message that names the value and what to give, and nothing is written.
func TestSignRefusesTheServersName(t *testing.T) {
	dir := t.TempDir()
	code, _, _ := run(t, dir, "-i")
	require.Equal(t, 0, code)
	for _, name := range []string{"Qnetd Server", "qnetd server", "QNet CA", "*.lan"} {
		code, out, errs := run(t, dir, "-s", "-c", writeCSR(t, name), "-n", name)
		require.Equal(t, 1, code, name)
		require.Equal(t, "Signing cluster certificate\n", out)
		require.Contains(t, errs, "corosync-qnetd-certutil: cluster name \""+name+"\" is ")
		require.Contains(t, errs, "give the cluster's own name (totem.cluster_name in corosync.conf)\n")
		require.NoFileExists(t, filepath.Join(dir, "cluster-"+name+".crt"))
	}
}

// TestPairingIdentityAndForget: run with a pairing identity, a name
// belongs to the identity that signed it first; another is refused with
// what to do, and the outcome says why. The local administrator's -F
// forgets the owner, after which the other identity may sign; -F is
// refused to a pairing identity.
func TestPairingIdentityAndForget(t *testing.T) {
	dir := t.TempDir()
	code, _, _ := run(t, dir, "-i")
	require.Equal(t, 0, code)
	a := &pki.Identity{ID: "ssh-key SHA256:A", Label: "ssh-ed25519 SHA256:A (root@pve1)"}
	b := &pki.Identity{ID: "ssh-key SHA256:B", Label: "ssh-ed25519 SHA256:B (root@elsewhere)"}
	as := func(who *pki.Identity, args ...string) (int, string, string, Outcome) {
		var out, errb bytes.Buffer
		var oc Outcome
		code := Run(args, map[string]string{"QNETD_NSS_DB_DIR": dir}, Options{Identity: who, Outcome: &oc}, &out, &errb, time.Now)
		return code, out.String(), errb.String(), oc
	}
	code, out, errs, oc := as(a, "-s", "-c", writeCSR(t, "pve"), "-n", "pve")
	require.Equal(t, 0, code, errs)
	require.Equal(t, "Signing cluster certificate\nCertificate stored in "+dir+"/cluster-pve.crt\n", out)
	require.Equal(t, pki.ClaimNew, oc.Result.Claim)

	code, _, errs, oc = as(b, "-s", "-c", writeCSR(t, "pve"), "-n", "pve")
	require.Equal(t, 1, code)
	require.Contains(t, errs, `corosync-qnetd-certutil: cluster name "pve" belongs to another pairing key`)
	require.Contains(t, errs, `ask the Home Assistant admin to add "pve" to the add-on's option forget_clusters`)
	var owned *pki.OwnedError
	require.ErrorAs(t, oc.Err, &owned)
	require.Equal(t, a.Label, owned.Owner.Label)

	code, _, errs, _ = as(b, "-F", "-n", "pve")
	require.Equal(t, 1, code)
	require.Equal(t, "corosync-qnetd-certutil: -F is for the administrator of this qnetd only\n", errs)

	code, out, _ = run(t, dir, "-F", "-n", "PVE")
	require.Equal(t, 0, code)
	require.Equal(t, "Forgot that cluster \"pve\" belongs to ssh-ed25519 SHA256:A (root@pve1): the next pairing key that signs it owns it\n", out)
	code, out, _ = run(t, dir, "-F", "-n", "pve")
	require.Equal(t, 0, code)
	require.Equal(t, "Cluster \"pve\" has no recorded owner: any pairing key may sign it\n", out)
	code, _, errs = run(t, dir, "-F")
	require.Equal(t, 2, code)
	require.Equal(t, "You have to specify cluster name\n", errs)

	code, _, errs, oc = as(b, "-s", "-c", writeCSR(t, "pve"), "-n", "pve")
	require.Equal(t, 0, code, errs)
	require.Equal(t, pki.ClaimLegacy, oc.Result.Claim)
}
