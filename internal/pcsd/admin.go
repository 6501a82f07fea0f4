package pcsd

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/pki"
)

// What the admin does with the endpoint from the status page: the first
// one-time password when pcs is the only way to pair, the list of tokens
// and their revocation.

// FirstOneTime makes the one-time pairing password on the endpoint's first
// start when the SSH pairing endpoint, which otherwise makes it
// (pairing.Server.FirstOneTime), is off: when none was ever made and no
// pcs token exists yet, so that `pcs host auth` works without an option
// set first. It reports whether it made one.
func FirstOneTime(dataDir string, gate *pairing.Gate, now time.Time, log zerolog.Logger) (bool, error) {
	if gate.OneTime().Made() {
		return false, nil
	}
	ts, err := loadTokens(filepath.Join(dataDir, "pcsd", TokensFile))
	if err != nil {
		return false, fmt.Errorf("pcsd: %w", err)
	}
	if ts.count() > 0 {
		return false, nil
	}
	v, err := gate.OneTime().Renew(now)
	if err != nil {
		return false, fmt.Errorf("pcsd: one-time pairing password: %w", err)
	}
	log.Info().Time("expires", v.Expires).
		Msg("pcsd: made a one-time pairing password for the first pcs host auth; the status page shows it")
	return true, nil
}

// TokenView is a token as the status page lists it: never the token
// itself (only its hash is kept), its id, when and from where `pcs host
// auth` made it, and the cluster names it owns.
type TokenView struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Addr     string    `json:"addr"`
	OneTime  bool      `json:"one_time,omitempty"`
	Clusters []string  `json:"clusters"`
}

// Tokens lists the tokens, oldest first, with the cluster names each owns.
func (s *Server) Tokens() ([]TokenView, error) {
	owners, err := pki.Owners(s.cfg.Authority.Dir)
	if err != nil {
		return nil, fmt.Errorf("pcsd: %w", err)
	}
	s.tokens.mu.Lock()
	recs := slices.Clone(s.tokens.recs)
	s.tokens.mu.Unlock()
	out := make([]TokenView, 0, len(recs))
	for _, r := range recs {
		out = append(out, TokenView{ID: r.ID, Created: r.Created, Addr: r.Addr, OneTime: r.OneTime,
			Clusters: ownedBy(owners, r.identity().ID)})
	}
	return out, nil
}

func ownedBy(owners []pki.Owner, id string) []string {
	names := []string{}
	for _, o := range owners {
		if o.ID == id {
			names = append(names, o.Cluster)
		}
	}
	return names
}

// ErrNoSuchToken: Revoke found no token with that id.
var ErrNoSuchToken = errors.New("no pcs token with that id")

// Revoke deletes the token with the given id, so that it works no more
// (the next request with it is answered 401), and forgets the owner of
// each cluster name it owns, so that the cluster can be paired again with
// a new `pcs host auth` (as the option forget_clusters would). The
// certificates it had signed stay valid: the nodes keep voting. It
// returns the names it released.
func (s *Server) Revoke(id string) ([]string, error) {
	// Signing holds signMu from its owner check to its claim: a request
	// of this token that is being signed now either claims before the
	// names are released here, or finds the token gone (signLocked).
	s.signMu.Lock()
	defer s.signMu.Unlock()
	rec, err := s.tokens.remove(id)
	if err != nil {
		return nil, err
	}
	owners, err := pki.Owners(s.cfg.Authority.Dir)
	if err != nil {
		return nil, fmt.Errorf("pcsd: token %s revoked, but its cluster names were not released: %w", id, err)
	}
	released := []string{}
	for _, name := range ownedBy(owners, rec.identity().ID) {
		if _, _, err := pki.Forget(s.cfg.Authority.Dir, name); err != nil {
			return released, fmt.Errorf("pcsd: token %s revoked, but cluster name %q was not released: %w", id, name, err)
		}
		released = append(released, name)
	}
	s.log.Info().Str("token", rec.ID).Str("token_addr", rec.Addr).Strs("released_clusters", released).
		Msg("pcsd: revoked a pcs token at the admin's request; the cluster names it owned may be paired again")
	return released, nil
}

// remove deletes the record with the id and saves the store.
func (ts *tokenStore) remove(id string) (tokenRecord, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	i := slices.IndexFunc(ts.recs, func(r tokenRecord) bool { return r.ID == id })
	if i < 0 {
		return tokenRecord{}, ErrNoSuchToken
	}
	rec := ts.recs[i]
	recs := slices.Delete(slices.Clone(ts.recs), i, i+1)
	if err := ts.save(recs); err != nil {
		return tokenRecord{}, err
	}
	ts.recs = recs
	return rec, nil
}
