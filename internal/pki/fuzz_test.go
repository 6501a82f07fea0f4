package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
)

// FuzzParseCSR: a certificate request comes from a pairing client (an
// upload to the pairing endpoint). Whatever the bytes, parsing and the
// name check answer without panicking, and what parses has a verified
// signature and an accepted key.
func FuzzParseCSR(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "pve"}}, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der[:len(der)/2]}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("a request with a bad signature parsed")
		}
		if checkKey(csr.PublicKey) != nil {
			t.Fatal("a request with a refused key parsed")
		}
		_ = checkRequest(csr, csr.Subject.CommonName)
	})
}
