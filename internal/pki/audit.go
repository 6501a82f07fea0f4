package pki

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/certname"
)

// RefusedCert is a cluster certificate in the certificate directory that
// the server refuses at TLS time, because it names a wildcard or a reserved
// name; an earlier version signed such names.
type RefusedCert struct {
	File string // path
	Name string // the offending name
	// Reserved is the reserved name it equals ("" for a wildcard).
	Reserved string
	// PosesAsServer: it names the server and nothing in it forbids TLS
	// server use, so the nodes would accept its holder as this server.
	PosesAsServer bool
}

// RefusedClientCerts lists the cluster-*.crt files of dir whose
// certificate names a wildcard or a reserved name. Files that do not hold
// a certificate are skipped.
func RefusedClientCerts(dir string) ([]RefusedCert, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []RefusedCert
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), "cluster-") || !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		cert := readCert(path)
		if cert == nil {
			continue
		}
		// The names the TLS host name check reads (qnetd/engine certMismatch).
		names := []string{cert.Subject.CommonName}
		if hasSAN(cert) {
			names = cert.DNSNames
		}
		for _, n := range names {
			r, reserved := certname.Reserved(n)
			if !reserved && !certname.Wildcard(n) {
				continue
			}
			rc := RefusedCert{File: path, Name: n, Reserved: r}
			rc.PosesAsServer = r == certname.Server && (len(cert.ExtKeyUsage) == 0 ||
				slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny))
			out = append(out, rc)
			break
		}
	}
	return out, nil
}

// readCert reads a DER or PEM certificate of at most 1 MiB.
func readCert(path string) *x509.Certificate {
	const maxCert = 1 << 20
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > maxCert {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	if blk, _ := pem.Decode(data); blk != nil && blk.Type == "CERTIFICATE" {
		data = blk.Bytes
	}
	cert, err := x509.ParseCertificate(data)
	if err != nil {
		return nil
	}
	return cert
}

func hasSAN(c *x509.Certificate) bool {
	for _, ext := range c.Extensions {
		if ext.Id.Equal([]int{2, 5, 29, 17}) {
			return true
		}
	}
	return false
}
