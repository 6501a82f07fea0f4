package pcsd

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/qnetd-addon/qnetd/internal/pki"
)

// TokensFile holds the tokens that `pcs host auth` received, in the
// endpoint's data directory. Only their SHA-256 is kept: a copy of the
// data directory (a backup) lets nobody in.
const TokensFile = "tokens.json"

// Bounds of the token store: maxTokens tokens (each `pcs host auth` makes
// one; a token owns the cluster names it had signed, so none is dropped to
// make room), and the file's size when read.
const (
	maxTokens     = 64
	maxTokensFile = 1 << 20
)

// tokenRecord is one token as stored.
type tokenRecord struct {
	// ID names the token in logs, in owners.json and on the one-time
	// password's record; it is not the token.
	ID      string    `json:"id"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
	Addr    string    `json:"addr"`
	// OneTime: made with the one-time pairing password.
	OneTime bool `json:"one_time,omitempty"`
}

// identity is the pairing identity of a token (pki.SignFor): the owner of
// the cluster names it had signed.
func (r tokenRecord) identity() pki.Identity {
	return pki.Identity{ID: "pcs-token " + r.ID,
		Label: fmt.Sprintf("pcs token %s (pcs host auth from %s, %s)", r.ID, r.Addr, r.Created.UTC().Format(time.DateOnly))}
}

type tokensDoc struct {
	About  string        `json:"about"`
	Tokens []tokenRecord `json:"tokens"`
}

const tokensAbout = "Tokens of `pcs host auth` (SHA-256 only); see DOCS.md, \"RHEL / pcs\". Revoke one on the status page."

// errTokensFull refuses a new token when the store is full.
var errTokensFull = fmt.Errorf("%d pcs tokens are stored, the most this endpoint keeps", maxTokens)

// tokenStore is the set of tokens, kept in a file rewritten whole.
type tokenStore struct {
	mu   sync.Mutex
	path string
	recs []tokenRecord
}

func loadTokens(path string) (*tokenStore, error) {
	ts := &tokenStore{path: path}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return ts, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokensFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxTokensFile {
		return nil, fmt.Errorf("%s is more than %d bytes: damaged; delete it (every pcs host auth must then be run again)", path, maxTokensFile)
	}
	var doc tokensDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); delete it (every pcs host auth must then be run again)", path, err)
	}
	for _, r := range doc.Tokens {
		if h, err := hex.DecodeString(r.SHA256); err != nil || len(h) != sha256.Size || r.ID == "" {
			return nil, fmt.Errorf("%s is damaged (record %q); delete it (every pcs host auth must then be run again)", path, r.ID)
		}
	}
	ts.recs = doc.Tokens
	return ts, nil
}

// newToken makes a token as pcsd does: a random UUID (version 4), 36
// characters, far below pcs's limit of 256 bytes, and only characters a
// cookie may hold.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make a token: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

func tokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// add makes and stores a new token; it returns the token and its record.
func (ts *tokenStore) add(addr string, oneTime bool, now time.Time) (string, tokenRecord, error) {
	token, err := newToken()
	if err != nil {
		return "", tokenRecord{}, err
	}
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", tokenRecord{}, fmt.Errorf("make a token: %w", err)
	}
	rec := tokenRecord{ID: hex.EncodeToString(id[:]), SHA256: hex.EncodeToString(tokenHash(token)),
		Created: now.UTC().Truncate(time.Second), Addr: addr, OneTime: oneTime}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.recs) >= maxTokens {
		return "", tokenRecord{}, errTokensFull
	}
	recs := append(ts.recs[:len(ts.recs):len(ts.recs)], rec)
	if err := ts.save(recs); err != nil {
		return "", tokenRecord{}, err
	}
	ts.recs = recs
	return token, rec, nil
}

// lookup finds the record of token. Every record is compared, each in
// constant time, so the time taken says nothing about which one matched.
func (ts *tokenStore) lookup(token string) (tokenRecord, bool) {
	if token == "" || len(token) > maxTokenLen {
		return tokenRecord{}, false
	}
	h := []byte(hex.EncodeToString(tokenHash(token)))
	ts.mu.Lock()
	defer ts.mu.Unlock()
	found := -1
	for i, r := range ts.recs {
		if subtle.ConstantTimeCompare(h, []byte(r.SHA256)) == 1 {
			found = i
		}
	}
	if found < 0 {
		return tokenRecord{}, false
	}
	return ts.recs[found], true
}

// has reports whether a token with the id is stored.
func (ts *tokenStore) has(id string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.ContainsFunc(ts.recs, func(r tokenRecord) bool { return r.ID == id })
}

func (ts *tokenStore) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.recs)
}

func (ts *tokenStore) save(recs []tokenRecord) error {
	doc := tokensDoc{About: tokensAbout, Tokens: recs}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(ts.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save pcs tokens: %w", err)
	}
	return nil
}
