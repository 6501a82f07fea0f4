package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/certname"
)

// MaxCSRSize bounds a certificate request file; real ones are ~1 KB.
const MaxCSRSize = 64 << 10

// ParseCSR reads a PKCS#10 request: binary DER as corosync-qdevice-net-certutil
// writes it, or PEM with a "CERTIFICATE REQUEST" or "NEW CERTIFICATE
// REQUEST" block. The signature must verify.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("certificate request is %d bytes, more than %d: not a certificate request", len(data), MaxCSRSize)
	}
	der := data
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("PEM block %q is not a certificate request", blk.Type)
		}
		der = blk.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#10 certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature does not verify: %w", err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	return csr, nil
}

func checkKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("unsupported key: %s; use RSA of at least 2048 bits or ECDSA", keyDescription(pub))
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key: %s; use RSA of at least 2048 bits or ECDSA", keyDescription(pub))
	}
	return nil
}

// ValidClusterName accepts the cluster names a client certificate may be
// signed for (see certname.Check): plain names of letters, digits, '.', '_'
// and '-', never a wildcard or the server's or the CA's name.
func ValidClusterName(name string) error { return certname.Check(name) }

// checkRequest refuses what must not be signed for cluster: an invalid or
// reserved name, or a request whose subject is not exactly that name.
func checkRequest(csr *x509.CertificateRequest, cluster string) error {
	if err := ValidClusterName(cluster); err != nil {
		return err
	}
	// The certificate keeps the request's subject, and TLS clients differ
	// in which of several common names they read: exactly one is allowed.
	var cns []string
	for _, atv := range csr.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			cns = append(cns, fmt.Sprint(atv.Value))
		}
	}
	if len(cns) > 1 {
		return fmt.Errorf("certificate request has %d common names (%s), not just %q; make the request with the subject CN=%s",
			len(cns), strings.Join(cns, ", "), cluster, cluster)
	}
	if cn := csr.Subject.CommonName; cn != cluster {
		return fmt.Errorf("certificate request is for %q (CN), not for cluster %q", cn, cluster)
	}
	return nil
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// Sign issues a client certificate for cluster from a request whose
// subject names that cluster, stores it as cluster-NAME.crt (DER) and
// returns the path. Nothing is written when anything is wrong. Sign is
// the local administrator's signing: it neither checks nor changes who
// owns the name (SignFor does, for pairing).
func (a *Authority) Sign(csr *x509.CertificateRequest, cluster string, now time.Time) (string, error) {
	if err := checkRequest(csr, cluster); err != nil {
		return "", err
	}
	return a.issue(csr, cluster, now)
}

// issue signs a checked request and stores the certificate.
func (a *Authority) issue(csr *x509.CertificateRequest, cluster string, now time.Time) (string, error) {
	serial, err := a.nextSerial()
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", cluster, err)
	}
	// clientAuth only: a TLS client (the nodes' NSS) then refuses this
	// certificate as a server's, whatever its name.
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		RawSubject:   csr.RawSubject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(0, Validity, 0),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CA, csr.PublicKey, a.CAKey)
	if err != nil {
		return "", fmt.Errorf("sign certificate for cluster %q: %w", cluster, err)
	}
	path := filepath.Join(a.Dir, ClientCertFile(cluster))
	if err := WriteFileAtomic(path, der, 0o644); err != nil {
		return "", fmt.Errorf("sign %s: %w", cluster, err)
	}
	return path, nil
}

// ClientCertNotAfter reads the end of validity of the certificate stored
// for cluster in dir.
func ClientCertNotAfter(dir, cluster string) (time.Time, error) {
	if err := ValidClusterName(cluster); err != nil {
		return time.Time{}, err
	}
	der, err := os.ReadFile(filepath.Join(dir, ClientCertFile(cluster)))
	if err != nil {
		return time.Time{}, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", ClientCertFile(cluster), err)
	}
	return c.NotAfter, nil
}

// Import replaces the authority in dir with a CA (and optionally a server
// certificate) exported from an upstream NSS database, so that certificates
// the nodes already have keep working. pemData holds PEM blocks: the CA
// certificate and its key, and optionally "Qnetd Server" with its key
// (a new server certificate is issued from the CA otherwise). Serials
// continue above every serial seen and above minSerial (upstream's
// serial.txt), plus a margin for certificates the old database issued.
func Import(dir string, pemData []byte, minSerial int, now time.Time) (*Authority, error) {
	keys, certs, err := parsePEM(pemData)
	if err != nil {
		return nil, err
	}
	a := &Authority{Dir: dir}
	for _, c := range certs {
		k := keyFor(c, keys)
		if c.IsCA && c.Subject.CommonName == CACommonName && k != nil {
			a.CA, a.CAKey = c, k
		}
	}
	if a.CA == nil {
		return nil, fmt.Errorf("no %q CA certificate with its private key in the import (export it with pk12util -n %q)", CACommonName, CACommonName)
	}
	serial := max(minSerial, firstSerial)
	for _, c := range certs {
		if c.SerialNumber.IsInt64() {
			serial = max(serial, int(c.SerialNumber.Int64()))
		}
		if !c.IsCA && c.Subject.CommonName == ServerCommonName && c.CheckSignatureFrom(a.CA) == nil {
			if k := keyFor(c, keys); k != nil {
				a.Server, a.ServerKey = c, k
			}
		}
	}
	serial += 1000 // room for certificates the old database issued that we never saw
	if err := os.MkdirAll(dir, 0o770); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if a.Server == nil {
		serial++
		if err := a.newServerCert(big.NewInt(int64(serial)), now); err != nil {
			return nil, err
		}
	}
	if err := a.save(serial); err != nil {
		return nil, err
	}
	return a, nil
}
