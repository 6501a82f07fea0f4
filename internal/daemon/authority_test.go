package daemon

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// TestLoadAuthorityUpgradesAndAudits: at start, a server certificate
// without Extended Key Usage (from an earlier version, or imported from
// upstream) is replaced by one with serverAuth from the same CA, and the
// log says so; cluster certificates an earlier version signed for the
// server's name or a wildcard are listed, with the file in a field.
func TestLoadAuthorityUpgradesAndAudits(t *testing.T) {
	now := time.Now()
	src, err := pki.Init(t.TempDir(), now)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(src.CAKey)
	require.NoError(t, err)
	var bundle bytes.Buffer
	bundle.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	bundle.Write(src.CAPEM())
	// An old-style certificate: no extensions at all.
	oldCert := func(cn string) ([]byte, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(len(cn))), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, src.CA, key.Public(), src.CAKey)
		require.NoError(t, err)
		return der, key
	}
	srvDER, srvKey := oldCert(pki.ServerCommonName)
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	require.NoError(t, err)
	bundle.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	bundle.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}))
	dir := t.TempDir()
	imported, err := pki.Import(dir, bundle.Bytes(), 0, now)
	require.NoError(t, err)
	require.Equal(t, srvDER, imported.Server.Raw, "the import keeps the old server certificate")
	posing, _ := oldCert(pki.ServerCommonName)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cluster-Qnetd Server.crt"), posing, 0o644))
	wild, _ := oldCert("*.lan")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cluster-*.lan.crt"), wild, 0o644))
	plain, _ := oldCert("pve")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cluster-pve.crt"), plain, 0o644))

	// The add-on's data belongs to the daemon's user, and the replacement
	// happens before the daemon drops root: the files keep their owner.
	const uid, gid = 4321, 4322
	asRoot := os.Geteuid() == 0
	if asRoot {
		for _, f := range []string{pki.BundleFile, pki.SerialFile} {
			require.NoError(t, os.Chown(filepath.Join(dir, f), uid, gid))
		}
	}

	var logs bytes.Buffer
	a, err := LoadAuthority(dir, zerolog.New(&logs))
	require.NoError(t, err)
	if asRoot {
		for _, f := range []string{pki.BundleFile, pki.SerialFile} {
			fi, err := os.Stat(filepath.Join(dir, f))
			require.NoError(t, err)
			st := fi.Sys().(*syscall.Stat_t)
			require.Equal(t, [2]uint32{uid, gid}, [2]uint32{st.Uid, st.Gid}, "%s keeps its owner", f)
		}
	}
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, a.Server.ExtKeyUsage)
	require.Equal(t, src.CAPEM(), a.CAPEM(), "same CA")
	require.NoError(t, a.Server.CheckSignatureFrom(src.CA), "the nodes' copy of the CA verifies it")
	require.Contains(t, logs.String(), `"old_serial":"`+imported.Server.SerialNumber.String()+`"`)
	require.Contains(t, logs.String(), "replaced the server certificate by one marked for TLS server use only")
	require.Contains(t, logs.String(), `{"level":"error","file":"`+filepath.Join(dir, "cluster-Qnetd Server.crt")+`","name":"Qnetd Server",`+
		`"message":"cluster certificate for the server's own name, signed by an earlier version: its holder can pose as this qnetd to every paired cluster;`)
	require.Contains(t, logs.String(), `{"level":"warn","file":"`+filepath.Join(dir, "cluster-*.lan.crt")+`","name":"*.lan",`+
		`"message":"cluster certificate for a wildcard name: qnetd refuses it at TLS time`)
	require.NotContains(t, logs.String(), "cluster-pve.crt")

	// The next start finds a current certificate: nothing replaced.
	logs.Reset()
	b, err := LoadAuthority(dir, zerolog.New(&logs))
	require.NoError(t, err)
	require.Equal(t, a.Server.Raw, b.Server.Raw)
	require.False(t, strings.Contains(logs.String(), "replaced the server certificate"))
}
