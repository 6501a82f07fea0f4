package pcsd

import (
	"encoding/base64"
	"net/url"
	"testing"
)

// FuzzDecodeForm: the form of every request is a client's text. Whatever
// it is, decoding answers without panicking, and what it accepts has each
// field once and no more than maxFields fields.
func FuzzDecodeForm(f *testing.F) {
	f.Add("username=hacluster&password=pw")
	f.Add("certificate_request=MIIB%2Bw%3D%3D&cluster_name=prod")
	f.Add("a=1&a=2")
	f.Add("a=%zz")
	f.Add("a;b;c=d")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := decodeForm(raw)
		if err != nil {
			return
		}
		if len(v) > maxFields {
			t.Fatalf("%d fields accepted", len(v))
		}
		for k, vals := range v {
			if len(vals) != 1 {
				t.Fatalf("field %q given %d times", k, len(vals))
			}
		}
		if _, err := mergeForms(v, url.Values{}); err != nil {
			t.Fatalf("an accepted form does not merge: %v", err)
		}
	})
}

// FuzzDecodeBase64: what decodes is what standard base64 of the same text
// (without line breaks) decodes to, and the bound holds.
func FuzzDecodeBase64(f *testing.F) {
	f.Add("AAAA")
	f.Add("AA==")
	f.Add("AA")
	f.Add("MIIB+w==\n")
	f.Add("MIIB w==")
	f.Add("!!")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := decodeBase64(s, 64)
		if err != nil {
			return
		}
		if len(s) > 64 {
			t.Fatal("bound not enforced")
		}
		if len(b) > 48 {
			t.Fatalf("%d bytes from %d characters", len(b), len(s))
		}
		// Re-encoding gives back a text that decodes to the same bytes.
		again, err := decodeBase64(base64.StdEncoding.EncodeToString(b), 1<<10)
		if err != nil || string(again) != string(b) {
			t.Fatal("round trip differs")
		}
	})
}

// FuzzDecodeCSR: the certificate_request field. Garbage never decodes to
// a request; what decodes has a verified signature.
func FuzzDecodeCSR(f *testing.F) {
	der := makeCSR(f, "prod")
	f.Add(base64.StdEncoding.EncodeToString(der))
	f.Add(base64.StdEncoding.EncodeToString(der[:len(der)/2]))
	f.Add("")
	f.Add("LS0tLS1CRUdJTiBORVcgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0t")
	f.Fuzz(func(t *testing.T, field string) {
		csr, err := decodeCSR(field)
		if err != nil {
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("a request with a bad signature decoded")
		}
	})
}
