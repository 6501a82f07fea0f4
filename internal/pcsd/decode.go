package pcsd

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// Bounds of a request's parameters. pcs sends at most two fields; a
// certificate request is about 1 KB, pki.MaxCSRSize at most, which is
// 4/3 of that in base64 and up to three times more once URL-encoded.
const (
	maxFields = 8
	// maxBody bounds a request body (and the query string).
	maxBody = 4*pki.MaxCSRSize + 64<<10
	// maxCSRBase64 bounds the base64 text of a certificate request.
	maxCSRBase64 = (pki.MaxCSRSize+2)/3*4 + pki.MaxCSRSize/57*2 + 2
)

// Errors of the decoders; their text is what pcs shows (400 bodies).
var (
	errTooManyFields = fmt.Errorf("more than %d form fields", maxFields)
	errDuplicate     = errors.New("a form field is given more than once")
)

// decodeForm parses an application/x-www-form-urlencoded body or query as
// pcs sends it (Python's urlencode). Every field is given once at most.
func decodeForm(raw string) (url.Values, error) {
	if len(raw) > maxBody {
		return nil, fmt.Errorf("form data of %d bytes, more than %d", len(raw), maxBody)
	}
	if raw == "" {
		return url.Values{}, nil
	}
	if strings.Count(raw, "&")+strings.Count(raw, ";") >= maxFields {
		return nil, errTooManyFields
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errors.New("form data is not URL-encoded")
	}
	for _, vals := range v {
		if len(vals) > 1 {
			return nil, errDuplicate
		}
	}
	return v, nil
}

// mergeForms joins the query's and the body's fields; a field in both is
// refused, so that no reader can see a value another did not.
func mergeForms(query, body url.Values) (url.Values, error) {
	out := url.Values{}
	for _, f := range []url.Values{query, body} {
		for k, vals := range f {
			if _, dup := out[k]; dup {
				return nil, errDuplicate
			}
			out[k] = vals
		}
	}
	if len(out) > maxFields {
		return nil, errTooManyFields
	}
	return out, nil
}

// decodeBase64 decodes standard base64 as pcs (one line) or pcsd (lines of
// 60) writes it. A client that did not escape '+' sends it as a space in
// the form, which is read back as '+'.
func decodeBase64(s string, limit int) ([]byte, error) {
	if len(s) > limit {
		return nil, fmt.Errorf("base64 text of %d bytes, more than %d", len(s), limit)
	}
	s = strings.Map(func(r rune) rune {
		switch r {
		case '\n', '\r':
			return -1
		case ' ':
			return '+'
		}
		return r
	}, s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, errors.New("not base64")
	}
	return b, nil
}

// decodeCSR reads the certificate_request field: base64 of a PKCS#10
// request, DER or PEM (corosync-qdevice-net-certutil writes either), whose
// signature verifies (pki.ParseCSR).
func decodeCSR(field string) (*x509.CertificateRequest, error) {
	if field == "" {
		return nil, errors.New("missing certificate_request")
	}
	data, err := decodeBase64(field, maxCSRBase64)
	if err != nil {
		return nil, fmt.Errorf("certificate_request: %w", err)
	}
	csr, err := pki.ParseCSR(data)
	if err != nil {
		return nil, fmt.Errorf("certificate_request: %w", err)
	}
	return csr, nil
}

// encode64 is base64 in lines of 60 characters, each ending in a newline,
// as pcsd sends the CA certificate (Ruby's Base64.encode64).
func encode64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var sb strings.Builder
	for len(s) > 60 {
		sb.WriteString(s[:60])
		sb.WriteByte('\n')
		s = s[60:]
	}
	sb.WriteString(s)
	sb.WriteByte('\n')
	return sb.String()
}
