// Package pki is qnetd's certificate authority, compatible with the files
// and commands of upstream's NSS-based corosync-qnetd-certutil: a CA
// "CN=QNet CA" published as qnetd-cacert.crt (PEM), a server certificate
// "CN=Qnetd Server", and client certificates "cluster-NAME.crt" (DER)
// signed from the nodes' certificate requests, with serial numbers from
// serial.txt (first issued: 101).
//
// Every secret lives in one file, qnetd-pki.pem (mode 0600), written with
// temp file + fsync + rename: a crash at any moment leaves either the old
// complete set or the new complete set. The public files are exports of it,
// rewritten whenever they are missing or stale.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/certname"
)

// File names inside the PKI directory (upstream's, where upstream has one).
const (
	BundleFile = "qnetd-pki.pem"
	CAFile     = "qnetd-cacert.crt"
	SerialFile = "serial.txt"
	// MarkerFile tells pcs, which looks for NSS database files, that the
	// database is initialised.
	MarkerFile = "pkcs11.txt"
)

// Subjects and validity, as upstream's certutil script creates them.
const (
	CACommonName     = certname.CA
	ServerCommonName = certname.Server
	Validity         = 1200 // months
	firstSerial      = 100  // serial.txt starts here; the first issued is 101
)

// ClientCertFile is the file a signed client certificate is stored in.
func ClientCertFile(cluster string) string { return "cluster-" + cluster + ".crt" }

// ErrNotInitialized is returned when the directory holds no CA.
var ErrNotInitialized = errors.New("certificate database not initialised")

// Authority is a loaded CA with its server certificate.
type Authority struct {
	Dir       string
	CA        *x509.Certificate
	CAKey     crypto.Signer
	Server    *x509.Certificate
	ServerKey crypto.Signer
	caPEM     []byte
}

// Initialized reports whether dir holds a complete certificate set.
func Initialized(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, BundleFile))
	return err == nil
}

// Load reads the authority from dir and re-exports the public files if
// they are missing or differ.
func Load(dir string) (*Authority, error) {
	data, err := os.ReadFile(filepath.Join(dir, BundleFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotInitialized)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", BundleFile, err)
	}
	a, err := parseBundle(dir, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, BundleFile), err)
	}
	if err := a.export(); err != nil {
		return nil, err
	}
	return a, nil
}

// Init creates a new CA and server certificate in dir. It fails with
// ErrExists when dir already holds one.
func Init(dir string, now time.Time) (*Authority, error) {
	if Initialized(dir) {
		return nil, ErrExists
	}
	if err := os.MkdirAll(dir, 0o770); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial := firstSerial + 1
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(int64(serial)),
		Subject:               pkix.Name{CommonName: CACommonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(0, Validity, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	a := &Authority{Dir: dir, CA: ca, CAKey: caKey}
	if err := a.newServerCert(big.NewInt(int64(serial+1)), now); err != nil {
		return nil, err
	}
	if err := a.save(serial + 1); err != nil {
		return nil, err
	}
	return a, nil
}

// ErrExists is returned by Init when the directory is initialised already.
var ErrExists = errors.New("certificate database already exists")

func (a *Authority) newServerCert(serial *big.Int, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate server key: %w", err)
	}
	// serverAuth only: the nodes' NSS then accepts this certificate as the
	// server, and a TLS server refuses it as a client certificate.
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: ServerCommonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(0, Validity, 0),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CA, key.Public(), a.CAKey)
	if err != nil {
		return fmt.Errorf("create server certificate: %w", err)
	}
	a.Server, _ = x509.ParseCertificate(der)
	a.ServerKey = key
	return nil
}

// ServerCertCurrent reports whether the server certificate is marked for
// TLS server use (Extended Key Usage serverAuth), as this version issues it.
func (a *Authority) ServerCertCurrent() bool {
	return slices.Contains(a.Server.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
}

// UpgradeServerCert replaces a server certificate without Extended Key
// Usage serverAuth (issued by an earlier version, or imported from
// upstream) by one that has it, from the same CA: the nodes trust the CA,
// not the server certificate, so they accept the new one without any
// change. It reports whether it replaced the certificate.
func (a *Authority) UpgradeServerCert(now time.Time) (bool, error) {
	if a.ServerCertCurrent() {
		return false, nil
	}
	serial, err := a.nextSerial()
	if err != nil {
		return false, fmt.Errorf("replace server certificate: %w", err)
	}
	old, oldKey := a.Server, a.ServerKey
	if err := a.newServerCert(big.NewInt(serial), now); err != nil {
		return false, fmt.Errorf("replace server certificate: %w", err)
	}
	if err := a.save(int(serial)); err != nil {
		a.Server, a.ServerKey = old, oldKey
		return false, fmt.Errorf("replace server certificate: %w", err)
	}
	return true, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// save writes the bundle (the commit point), then the public exports.
func (a *Authority) save(serial int) error {
	caKey, err := x509.MarshalPKCS8PrivateKey(a.CAKey)
	if err != nil {
		return fmt.Errorf("encode CA key: %w", err)
	}
	srvKey, err := x509.MarshalPKCS8PrivateKey(a.ServerKey)
	if err != nil {
		return fmt.Errorf("encode server key: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("# qnetd certificate authority: CA key, CA certificate, server key, server certificate.\n# Keep secret. The CA certificate is exported as " + CAFile + ".\n")
	b.Write(pemBlock("PRIVATE KEY", caKey))
	b.Write(pemBlock("CERTIFICATE", a.CA.Raw))
	b.Write(pemBlock("PRIVATE KEY", srvKey))
	b.Write(pemBlock("CERTIFICATE", a.Server.Raw))
	// serial.txt first: a crash between the two leaves a serial that is
	// higher than needed, never one that is reused.
	if err := writeSerialIfHigher(a.Dir, serial); err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(a.Dir, BundleFile), b.Bytes(), 0o600); err != nil {
		return err
	}
	parsed, err := parseBundle(a.Dir, b.Bytes())
	if err != nil {
		return err
	}
	*a = *parsed
	return a.export()
}

// parsePEM returns the private keys and certificates in PEM data (other
// blocks, and text around them, are skipped).
func parsePEM(data []byte) ([]crypto.Signer, []*x509.Certificate, error) {
	var keys []crypto.Signer
	var certs []*x509.Certificate
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return keys, certs, nil
		}
		switch {
		case strings.HasSuffix(blk.Type, "PRIVATE KEY"):
			k, err := parseKey(blk)
			if err != nil {
				return nil, nil, err
			}
			keys = append(keys, k)
		case blk.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("parse certificate: %w", err)
			}
			certs = append(certs, c)
		}
	}
}

func parseBundle(dir string, data []byte) (*Authority, error) {
	keys, certs, err := parsePEM(data)
	if err != nil {
		return nil, err
	}
	a := &Authority{Dir: dir}
	for _, c := range certs {
		k := keyFor(c, keys)
		switch {
		case c.IsCA && a.CA == nil:
			a.CA, a.CAKey = c, k
		case !c.IsCA && a.Server == nil:
			a.Server, a.ServerKey = c, k
		}
	}
	switch {
	case a.CA == nil || a.CAKey == nil:
		return nil, errors.New("no CA certificate with its private key")
	case a.Server == nil || a.ServerKey == nil:
		return nil, errors.New("no server certificate with its private key")
	}
	if err := a.Server.CheckSignatureFrom(a.CA); err != nil {
		return nil, fmt.Errorf("server certificate is not signed by the CA: %w", err)
	}
	a.caPEM = pemBlock("CERTIFICATE", a.CA.Raw)
	return a, nil
}

func parseKey(blk *pem.Block) (crypto.Signer, error) {
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
	return s, nil
}

// keyFor returns the key whose public half is in c.
func keyFor(c *x509.Certificate, keys []crypto.Signer) crypto.Signer {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	for _, k := range keys {
		if pk, ok := k.Public().(equaler); ok && pk.Equal(c.PublicKey) {
			return k
		}
	}
	return nil
}

// export writes the public files if they are missing or differ.
func (a *Authority) export() error {
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAFile, a.caPEM, 0o644},
		{MarkerFile, []byte("# The qnetd certificate database is initialised; its keys are in " + BundleFile + ".\n"), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(a.Dir, f.name)
		if cur, err := os.ReadFile(p); err == nil && bytes.Equal(cur, f.data) {
			continue
		}
		if err := WriteFileAtomic(p, f.data, f.mode); err != nil {
			return err
		}
	}
	if _, err := readSerial(a.Dir); err != nil {
		return writeSerialIfHigher(a.Dir, maxSerial(a))
	}
	return nil
}

func maxSerial(a *Authority) int {
	m := firstSerial
	for _, c := range []*x509.Certificate{a.CA, a.Server} {
		if c.SerialNumber.IsInt64() && int(c.SerialNumber.Int64()) > m {
			m = int(c.SerialNumber.Int64())
		}
	}
	return m
}

// TLSConfig returns the server side of STARTTLS: the server certificate,
// and the CA to verify client certificates when they are required.
func (a *Authority) TLSConfig(clientCertRequired bool) *tls.Config {
	cert := tls.Certificate{Certificate: [][]byte{a.Server.Raw, a.CA.Raw}, PrivateKey: a.ServerKey, Leaf: a.Server}
	pool := x509.NewCertPool()
	pool.AddCert(a.CA)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.NoClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	if clientCertRequired {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

// CAPEM is the CA certificate as the nodes import it.
func (a *Authority) CAPEM() []byte { return a.caPEM }

func readSerial(dir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dir, SerialFile))
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", SerialFile, err)
	}
	return n, nil
}

func writeSerialIfHigher(dir string, n int) error {
	if cur, err := readSerial(dir); err == nil && cur >= n {
		return nil
	}
	return WriteFileAtomic(filepath.Join(dir, SerialFile), []byte(strconv.Itoa(n)+"\n"), 0o660)
}

// nextSerial takes the next serial number, as upstream's script does:
// read, increment, write back, use the new value.
func (a *Authority) nextSerial() (int64, error) {
	cur, err := readSerial(a.Dir)
	if err != nil {
		cur = maxSerial(a)
	}
	cur++
	if err := WriteFileAtomic(filepath.Join(a.Dir, SerialFile), []byte(strconv.Itoa(cur)+"\n"), 0o660); err != nil {
		return 0, err
	}
	return int64(cur), nil
}

// WriteFileAtomic writes data to path via a temporary file in the same
// directory: fsync, rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	// The temporary name is bounded so that a file whose own name is near
	// the 255-byte limit can still be written.
	base := filepath.Base(path)
	if len(base) > 64 {
		base = base[:64]
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	// A replaced file keeps its owner: root running a tool locally (in the
	// add-on's container, say) must not take a file away from the daemon's
	// user. Without the right to change the owner this fails, and the file
	// is the writer's, as before.
	if fi, err := os.Stat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			_ = f.Chown(int(st.Uid), int(st.Gid))
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// keyDescription names a public key for messages.
func keyDescription(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}
