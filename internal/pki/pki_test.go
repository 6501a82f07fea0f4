package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func csrFor(t *testing.T, cn string, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	require.NoError(t, err)
	return der
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	require.NoError(t, err)
	return k
}

func TestInitMatchesUpstream(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, now)
	require.NoError(t, err)
	require.Equal(t, "CN=QNet CA", a.CA.Subject.String())
	require.True(t, a.CA.IsCA)
	require.True(t, a.CA.MaxPathLenZero)
	require.Equal(t, int64(101), a.CA.SerialNumber.Int64())
	require.Equal(t, now.AddDate(0, 1200, 0), a.CA.NotAfter)
	require.Equal(t, "CN=Qnetd Server", a.Server.Subject.String())
	require.Equal(t, "CN=QNet CA", a.Server.Issuer.String())
	require.Equal(t, int64(102), a.Server.SerialNumber.Int64())
	require.Empty(t, a.Server.DNSNames)
	require.NoError(t, a.Server.CheckSignatureFrom(a.CA))

	st, err := os.Stat(filepath.Join(dir, BundleFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "keys must be private")
	ca, err := os.ReadFile(filepath.Join(dir, CAFile))
	require.NoError(t, err)
	blk, _ := pem.Decode(ca)
	require.Equal(t, "CERTIFICATE", blk.Type)
	require.Equal(t, a.CA.Raw, blk.Bytes)
	serial, err := os.ReadFile(filepath.Join(dir, SerialFile))
	require.NoError(t, err)
	require.Equal(t, "102\n", string(serial))

	_, err = Init(dir, now)
	require.ErrorIs(t, err, ErrExists)
	b, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, a.CA.Raw, b.CA.Raw)
}

func TestLoadReexportsMissingPublicFiles(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, now)
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, CAFile)))
	require.NoError(t, os.Remove(filepath.Join(dir, SerialFile)))
	_, err = Load(dir)
	require.NoError(t, err)
	ca, err := os.ReadFile(filepath.Join(dir, CAFile))
	require.NoError(t, err)
	require.Equal(t, a.CAPEM(), ca)
	serial, _ := os.ReadFile(filepath.Join(dir, SerialFile))
	require.Equal(t, "102\n", string(serial))
}

func TestSignDERAndPEMRequests(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, now)
	require.NoError(t, err)
	key := rsaKey(t, 2048)
	der := csrFor(t, "pve", key)
	for i, data := range [][]byte{
		der,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der}),
	} {
		csr, err := ParseCSR(data)
		require.NoError(t, err)
		path, err := a.Sign(csr, "pve", now)
		require.NoError(t, err)
		require.Equal(t, filepath.Join(dir, "cluster-pve.crt"), path)
		out, err := os.ReadFile(path)
		require.NoError(t, err)
		cert, err := x509.ParseCertificate(out) // DER, as upstream writes it
		require.NoError(t, err)
		require.Equal(t, "CN=pve", cert.Subject.String())
		require.Equal(t, int64(103+i), cert.SerialNumber.Int64(), "serials continue from serial.txt")
		require.NoError(t, cert.CheckSignatureFrom(a.CA))
		require.True(t, cert.PublicKey.(*rsa.PublicKey).Equal(&key.PublicKey))
		_, err = cert.Verify(x509.VerifyOptions{Roots: a.TLSConfig(true).ClientCAs, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		require.NoError(t, err, "a TLS server accepts it as a client certificate")
		notAfter, err := ClientCertNotAfter(dir, "pve")
		require.NoError(t, err)
		require.Equal(t, cert.NotAfter, notAfter, "what the entities show as the certificate's expiry")
	}
	_, err = ClientCertNotAfter(dir, "other")
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = ClientCertNotAfter(dir, "../pve")
	require.Error(t, err, "a name that cannot name a file reads nothing")
}

func TestBadRequestsWriteNothing(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, now)
	require.NoError(t, err)
	good := csrFor(t, "pve", rsaKey(t, 2048))
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0xff
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		data    []byte
		cluster string
		want    string
	}{
		"garbage":         {[]byte("hello, I am not a request"), "pve", "not a PKCS#10 certificate request"},
		"empty":           {nil, "pve", "not a PKCS#10 certificate request"},
		"bad signature":   {tampered, "pve", "signature does not verify"},
		"wrong CN":        {good, "other", `certificate request is for "pve" (CN), not for cluster "other"`},
		"small RSA key":   {csrFor(t, "pve", rsaKey(t, 1024)), "pve", "unsupported key: RSA 1024 bits"},
		"1 MiB":           {make([]byte, 1<<20), "pve", "more than 65536"},
		"a certificate":   {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.CA.Raw}), "pve", `PEM block "CERTIFICATE" is not a certificate request`},
		"path in name":    {good, "../pve", `cluster name "../pve" has '/' at byte 3: a cluster name may only have letters, digits`},
		"ECDSA is fine ↓": {csrFor(t, "ec", ec), "ec", ""},
	} {
		t.Run(name, func(t *testing.T) {
			csr, err := ParseCSR(tc.data)
			if err == nil {
				_, err = a.Sign(csr, tc.cluster, now)
			}
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			_, statErr := os.Stat(filepath.Join(dir, ClientCertFile(tc.cluster)))
			require.True(t, os.IsNotExist(statErr), "nothing written for a refused request")
		})
	}
}

// TestRequestFromNSSCertutil signs a request made by NSS's certutil the
// way corosync-qdevice-net-certutil -r makes it (binary DER, CN=cluster).
func TestRequestFromNSSCertutil(t *testing.T) {
	certutil, err := exec.LookPath("certutil")
	if err != nil {
		if os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
			t.Fatal("NSS certutil (libnss3-tools) is not installed")
		}
		t.Skip("NSS certutil (libnss3-tools) not installed; make test installs it")
	}
	db := t.TempDir()
	run := func(args ...string) {
		out, err := exec.Command(certutil, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	require.NoError(t, os.WriteFile(filepath.Join(db, "pwd"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(db, "noise"), []byte("0123456789abcdef0123456789abcdef"), 0o600))
	run("-N", "-d", "sql:"+db, "-f", filepath.Join(db, "pwd"))
	crq := filepath.Join(db, "qdevice-net-node.crq")
	run("-R", "-s", "CN=realpeer", "-d", "sql:"+db, "-f", filepath.Join(db, "pwd"), "-z", filepath.Join(db, "noise"), "-o", crq)
	data, err := os.ReadFile(crq)
	require.NoError(t, err)
	a, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	csr, err := ParseCSR(data)
	require.NoError(t, err)
	path, err := a.Sign(csr, "realpeer", now)
	require.NoError(t, err)
	// NSS imports the signed certificate and matches it to its key.
	run("-A", "-d", "sql:"+db, "-n", "QNet CA", "-t", "CT,c,c", "-i", filepath.Join(a.Dir, CAFile))
	run("-A", "-d", "sql:"+db, "-n", "Cluster Cert", "-t", "u,u,u", "-i", path)
	run("-V", "-d", "sql:"+db, "-n", "Cluster Cert", "-u", "C")
	// NSS accepts the server certificate as an SSL server (what the nodes
	// check), and refuses the cluster certificate as one: its Extended Key
	// Usage is clientAuth only.
	srv := pemBlock("CERTIFICATE", a.Server.Raw)
	require.NoError(t, os.WriteFile(filepath.Join(db, "server.pem"), srv, 0o600))
	run("-A", "-d", "sql:"+db, "-n", "Server", "-t", ",,", "-a", "-i", filepath.Join(db, "server.pem"))
	run("-V", "-d", "sql:"+db, "-n", "Server", "-u", "V")
	out, err := exec.Command(certutil, "-V", "-d", "sql:"+db, "-n", "Cluster Cert", "-u", "V").CombinedOutput()
	require.Error(t, err, "NSS must refuse a cluster certificate as an SSL server: %s", out)
	require.Contains(t, string(out), "Certificate type not approved for application")
}

func TestImportKeepsTheCA(t *testing.T) {
	old, err := Init(t.TempDir(), now)
	require.NoError(t, err)
	csr, err := ParseCSR(csrFor(t, "pve", rsaKey(t, 2048)))
	require.NoError(t, err)
	nodeCertPath, err := old.Sign(csr, "pve", now)
	require.NoError(t, err)
	nodeCert, _ := os.ReadFile(nodeCertPath)

	caKey, err := x509.MarshalPKCS8PrivateKey(old.CAKey)
	require.NoError(t, err)
	export := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.CA.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: caKey})...)

	dir := t.TempDir()
	a, err := Import(dir, export, 140, now)
	require.NoError(t, err)
	require.Equal(t, old.CA.Raw, a.CA.Raw)
	require.NoError(t, a.Server.CheckSignatureFrom(a.CA))
	require.Greater(t, a.Server.SerialNumber.Int64(), int64(1140), "serials continue above the old database's")
	cert, _ := x509.ParseCertificate(nodeCert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: a.TLSConfig(true).ClientCAs, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err, "node certificates signed before the move keep working")

	_, err = Import(t.TempDir(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.CA.Raw}), 0, now)
	require.ErrorContains(t, err, "no \"QNet CA\" CA certificate with its private key")
}

// TestKillDuringWritesLeavesACompleteSet kills a process that keeps
// creating and importing certificate sets at random moments (20 times);
// every directory must then hold a complete old or new set, or none.
func TestKillDuringWritesLeavesACompleteSet(t *testing.T) {
	if dir := os.Getenv("QNETD_PKI_CHURN"); dir != "" {
		churn(dir)
		return
	}
	root := t.TempDir()
	for i := 0; i < 20; i++ {
		dir := filepath.Join(root, strconv.Itoa(i))
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWritesLeavesACompleteSet$")
		cmd.Env = append(os.Environ(), "QNETD_PKI_CHURN="+dir)
		require.NoError(t, cmd.Start())
		n, _ := rand.Int(rand.Reader, big.NewInt(40))
		time.Sleep(time.Duration(5+n.Int64()) * time.Millisecond) // a random moment is the point of this test
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			sub := filepath.Join(dir, e.Name())
			if !Initialized(sub) {
				continue
			}
			a, err := Load(sub)
			require.NoError(t, err, "kill %d left a broken set in %s", i, sub)
			require.NoError(t, a.Server.CheckSignatureFrom(a.CA))
		}
	}
}

// churn creates sets and re-imports them in place until killed.
func churn(root string) {
	for i := 0; ; i++ {
		dir := filepath.Join(root, fmt.Sprint(i%3))
		if !Initialized(dir) {
			if _, err := Init(dir, now); err != nil {
				panic(err)
			}
			continue
		}
		other, err := Init(filepath.Join(root, "src", fmt.Sprint(i)), now)
		if err != nil {
			panic(err)
		}
		key, _ := x509.MarshalPKCS8PrivateKey(other.CAKey)
		export := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.CA.Raw}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})...)
		if _, err := Import(dir, export, 0, now); err != nil {
			panic(err)
		}
	}
}
