package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSignRefusesNamesThatAreNotPlainClusterNames: a request for the
// server's or the CA's name (any case), a wildcard, or anything but 1 to
// MaxLen bytes of letters, digits, '.', '_' and '-' is refused with a
// message that names the value and what to give instead; nothing is
// written. Plain names, with SUSE's and RHEL's '.' and '_', are signed.
func TestSignRefusesNamesThatAreNotPlainClusterNames(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, now)
	require.NoError(t, err)
	key := rsaKey(t, 2048)
	long := strings.Repeat("a", 243)
	for _, tc := range []struct{ name, want string }{
		{"Qnetd Server", `cluster name "Qnetd Server" is reserved: "Qnetd Server" is the name of this qnetd's server certificate, and a cluster certificate with that name could pose as it; give the cluster's own name (totem.cluster_name in corosync.conf)`},
		{"qnetd server", `cluster name "qnetd server" is reserved: "Qnetd Server" is the name of this qnetd's server certificate`},
		{"QNETD SERVER", `cluster name "QNETD SERVER" is reserved`},
		{"QNet CA", `cluster name "QNet CA" is reserved: "QNet CA" is the name of this qnetd's certificate authority certificate`},
		{"qnet ca", `cluster name "qnet ca" is reserved`},
		{"*.lan", `cluster name "*.lan" is a wildcard: a certificate for it would match other clusters' names; give the cluster's own name`},
		{"*", `cluster name "*" is a wildcard`},
		{"pve 1", `cluster name "pve 1" has ' ' at byte 4: a cluster name may only have letters, digits, '.', '_' and '-'; give the cluster's own name`},
		{"pve/1", `cluster name "pve/1" has '/' at byte 4`},
		{"pvé", `cluster name "pvé" has 'é' at byte 3`},
		{"pve\n", `cluster name "pve\n" has '\n' at byte 4`},
		{long + "a", "cluster name of 244 bytes is longer than 243 (its certificate file cluster-NAME.crt must fit in 255 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := ParseCSR(csrFor(t, tc.name, key))
			require.NoError(t, err)
			_, err = a.Sign(csr, tc.name, now)
			require.ErrorContains(t, err, tc.want)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			for _, e := range entries {
				require.False(t, strings.HasPrefix(e.Name(), "cluster-"), "nothing written for %q: %s", tc.name, e.Name())
			}
		})
	}
	_, err = a.Sign(nil, "", now)
	require.EqualError(t, err, "cluster name is empty; give the cluster's own name (totem.cluster_name in corosync.conf)")

	for _, name := range []string{"pve", "PVE-2", "ha_cluster.example.com", "0", long} {
		csr, err := ParseCSR(csrFor(t, name, key))
		require.NoError(t, err)
		path, err := a.Sign(csr, name, now)
		require.NoError(t, err, name)
		require.Equal(t, filepath.Join(dir, "cluster-"+name+".crt"), path)
	}
}

// TestSignRefusesSeveralCommonNames: TLS clients differ in which of several
// CNs they read, so a request must carry exactly the cluster's.
func TestSignRefusesSeveralCommonNames(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: cn, Value: "Qnetd Server"}, {Type: cn, Value: "pve"}}}}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, rsaKey(t, 2048))
	require.NoError(t, err)
	csr, err := ParseCSR(der)
	require.NoError(t, err)
	require.Equal(t, "pve", csr.Subject.CommonName, "Go reads the last CN")
	_, err = a.Sign(csr, "pve", now)
	require.EqualError(t, err, `certificate request has 2 common names (Qnetd Server, pve), not just "pve"; make the request with the subject CN=pve`)
	require.NoFileExists(t, filepath.Join(a.Dir, ClientCertFile("pve")))
}

// TestExtendedKeyUsage: client certificates are for TLS clients only and
// the server certificate for TLS servers only, so a client certificate
// cannot serve as the server's whatever its name.
func TestExtendedKeyUsage(t *testing.T) {
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, a.Server.ExtKeyUsage)
	csr, err := ParseCSR(csrFor(t, "pve", rsaKey(t, 2048)))
	require.NoError(t, err)
	path, err := a.Sign(csr, "pve", now)
	require.NoError(t, err)
	der, err := os.ReadFile(path)
	require.NoError(t, err)
	client, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, client.ExtKeyUsage)

	roots := x509.NewCertPool()
	roots.AddCert(a.CA)
	verify := func(c *x509.Certificate, usage x509.ExtKeyUsage) error {
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	require.NoError(t, verify(client, x509.ExtKeyUsageClientAuth))
	require.Error(t, verify(client, x509.ExtKeyUsageServerAuth), "a client certificate is no server certificate")
	require.NoError(t, verify(a.Server, x509.ExtKeyUsageServerAuth))
	require.Error(t, verify(a.Server, x509.ExtKeyUsageClientAuth), "the server certificate is no client certificate")
}

// TestUpgradeServerCert: a server certificate from an earlier version (no
// Extended Key Usage) is replaced by one with serverAuth from the same CA,
// with a new serial, once; the replacement survives a reload.
func TestUpgradeServerCert(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, now)
	require.NoError(t, err)
	// What earlier versions wrote: the same subject, no extensions.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(102), Subject: pkix.Name{CommonName: ServerCommonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, Validity, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CA, a.ServerKey.Public(), a.CAKey)
	require.NoError(t, err)
	a.Server, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	require.NoError(t, a.save(102))
	caPEM := a.CAPEM()

	old, err := Load(dir)
	require.NoError(t, err)
	require.False(t, old.ServerCertCurrent())
	replaced, err := old.UpgradeServerCert(now)
	require.NoError(t, err)
	require.True(t, replaced)
	require.True(t, old.ServerCertCurrent())
	require.Equal(t, int64(103), old.Server.SerialNumber.Int64(), "a new serial")
	require.NoError(t, old.Server.CheckSignatureFrom(old.CA))
	require.Equal(t, ServerCommonName, old.Server.Subject.CommonName)

	b, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, old.Server.Raw, b.Server.Raw, "the replacement is stored")
	require.Equal(t, caPEM, b.CAPEM(), "same CA: the nodes keep trusting the server")
	ca, err := os.ReadFile(filepath.Join(dir, CAFile))
	require.NoError(t, err)
	require.Equal(t, caPEM, ca)
	replaced, err = b.UpgradeServerCert(now)
	require.NoError(t, err)
	require.False(t, replaced, "a current certificate stays")
	require.Equal(t, old.Server.Raw, b.Server.Raw)
}

// TestRefusedClientCerts: the start-up audit lists certificates an earlier
// version signed for wildcards and reserved names, and says which could
// pose as the server (no Extended Key Usage that forbids it).
func TestRefusedClientCerts(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, now)
	require.NoError(t, err)
	key := rsaKey(t, 2048)
	// Earlier versions: any name, no extensions.
	old := func(file, cn string, eku []x509.ExtKeyUsage, dns ...string) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(len(file))), Subject: pkix.Name{CommonName: cn},
			NotBefore: now, NotAfter: now.AddDate(1, 0, 0), ExtKeyUsage: eku, DNSNames: dns}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CA, key.Public(), a.CAKey)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, file), der, 0o644))
	}
	old("cluster-Qnetd Server.crt", "Qnetd Server", nil)
	old("cluster-qnetd server.crt", "qnetd server", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	old("cluster-*.lan.crt", "*.lan", nil)
	old("cluster-san.crt", "san", nil, "san", "*.example")
	old("cluster-QNet CA.crt", "QNet CA", nil)
	old("cluster-pve.crt", "pve", nil)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cluster-garbage.crt"), []byte("not a certificate"), 0o644))

	got, err := RefusedClientCerts(dir)
	require.NoError(t, err)
	require.ElementsMatch(t, []RefusedCert{
		{File: filepath.Join(dir, "cluster-Qnetd Server.crt"), Name: "Qnetd Server", Reserved: ServerCommonName, PosesAsServer: true},
		{File: filepath.Join(dir, "cluster-qnetd server.crt"), Name: "qnetd server", Reserved: ServerCommonName},
		{File: filepath.Join(dir, "cluster-*.lan.crt"), Name: "*.lan"},
		{File: filepath.Join(dir, "cluster-san.crt"), Name: "*.example"},
		{File: filepath.Join(dir, "cluster-QNet CA.crt"), Name: "QNet CA", Reserved: CACommonName},
	}, got)
}
