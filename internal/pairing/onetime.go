package pairing

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// OneTimeValidity is how long a one-time pairing password may be used.
// An hour covers installing corosync-qdevice on the nodes and running
// pvecm once (DOCS.md, "Setting up the Proxmox cluster").
const OneTimeValidity = time.Hour

// oneTimeFile holds the one-time password in the data dir, so that a
// restart of the add-on shows the same password until it is used up or
// expires. Only the daemon's user may read it.
const oneTimeFile = "one-time-password.json"

// The password is typed by a person at ssh's prompt: four groups of four
// characters from an alphabet without look-alikes (no 0/o, 1/l/i). 16
// characters of 31 give 79 bits, far beyond what the login limits let
// anyone guess in an hour (limiter.go).
const (
	oneTimeAlphabet = "abcdefghjkmnpqrstuvwxyz23456789"
	oneTimeGroups   = 4
	oneTimeGroupLen = 4
)

// OneTimeState says what the status page shows about the one-time
// password.
type OneTimeState string

// The states of the one-time password.
const (
	OneTimeNone    OneTimeState = "none"    // never made
	OneTimeValid   OneTimeState = "valid"   // may be used until Expires
	OneTimeUsed    OneTimeState = "used"    // a key was installed with it
	OneTimeExpired OneTimeState = "expired" // not used within OneTimeValidity
)

// OneTimeView is the one-time password as the status page shows it. The
// password itself is set only while it is valid.
type OneTimeView struct {
	State    OneTimeState `json:"state"`
	Password string       `json:"password,omitempty"`
	Made     time.Time    `json:"made,omitzero"`
	Expires  time.Time    `json:"expires,omitzero"`
	UsedAt   time.Time    `json:"used_at,omitzero"`
	// UsedBy is the fingerprint of the key it installed.
	UsedBy string `json:"used_by,omitempty"`
}

// oneTimeRecord is the file's content.
type oneTimeRecord struct {
	Password string    `json:"password,omitempty"`
	Made     time.Time `json:"made"`
	Expires  time.Time `json:"expires"`
	UsedAt   time.Time `json:"used_at,omitzero"`
	UsedBy   string    `json:"used_by,omitempty"`
}

// Errors of the one-time password, as the pairing endpoint tells them.
var (
	ErrOneTimeUsed    = errors.New("the one-time pairing password was used up by another key; make a new one on the add-on's status page")
	ErrOneTimeExpired = errors.New("the one-time pairing password expired; make a new one on the add-on's status page")
)

// OneTime is the one-time pairing password: made on the add-on's first
// start and again only when the admin asks for it on the status page,
// valid for OneTimeValidity, used up by the first key it installs.
type OneTime struct {
	mu   sync.Mutex
	path string
	rec  *oneTimeRecord // nil: never made
}

// OpenOneTime loads the one-time password kept in dir, if any.
func OpenOneTime(dir string) (*OneTime, error) {
	o := &OneTime{path: filepath.Join(dir, oneTimeFile)}
	data, err := os.ReadFile(o.path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read one-time password: %w", err)
	}
	var rec oneTimeRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Made.IsZero() {
		// A damaged file holds no password anyone could use; it reads as
		// used, so that a new one is made only on the admin's request.
		return &OneTime{path: o.path, rec: &oneTimeRecord{Made: time.Unix(0, 0), UsedBy: "unreadable file"}}, nil
	}
	o.rec = &rec
	return o, nil
}

// Made reports whether a one-time password was ever made.
func (o *OneTime) Made() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rec != nil
}

// Renew makes a new one-time password, valid from now, replacing any
// earlier one (which stops working at once).
func (o *OneTime) Renew(now time.Time) (OneTimeView, error) {
	pw, err := newOneTimePassword()
	if err != nil {
		return OneTimeView{}, err
	}
	rec := &oneTimeRecord{Password: pw, Made: now.UTC(), Expires: now.Add(OneTimeValidity).UTC()}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.save(rec); err != nil {
		return OneTimeView{}, err
	}
	o.rec = rec
	return o.viewLocked(now), nil
}

// View returns the one-time password's state at now.
func (o *OneTime) View(now time.Time) OneTimeView {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.viewLocked(now)
}

func (o *OneTime) viewLocked(now time.Time) OneTimeView {
	if o.rec == nil {
		return OneTimeView{State: OneTimeNone}
	}
	v := OneTimeView{Made: o.rec.Made, Expires: o.rec.Expires, UsedAt: o.rec.UsedAt, UsedBy: o.rec.UsedBy}
	switch {
	case !o.rec.UsedAt.IsZero() || o.rec.UsedBy != "":
		v.State = OneTimeUsed
	case !now.Before(o.rec.Expires):
		v.State = OneTimeExpired
	default:
		v.State, v.Password = OneTimeValid, o.rec.Password
	}
	return v
}

// check compares pw with the one-time password in constant time. On a
// match it returns a ticket naming this password (its creation time), so
// that the key install can use up exactly this password and no newer one.
func (o *OneTime) check(pw []byte, now time.Time) (ticket string, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if v := o.viewLocked(now); v.State != OneTimeValid {
		return "", false
	}
	if subtle.ConstantTimeCompare(pw, []byte(o.rec.Password)) != 1 {
		return "", false
	}
	return strconv.FormatInt(o.rec.Made.UnixNano(), 10), true
}

// use runs install while the password the ticket names is still valid,
// and marks it used when install reports that it installed a key (whose
// fingerprint it returns). The lock makes two sessions that logged in
// with the same password install at most one key with it.
func (o *OneTime) use(ticket string, now time.Time, install func() (key string, err error)) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rec == nil || strconv.FormatInt(o.rec.Made.UnixNano(), 10) != ticket {
		return ErrOneTimeUsed // renewed since the login: the old one is gone
	}
	switch o.viewLocked(now).State {
	case OneTimeUsed:
		return ErrOneTimeUsed
	case OneTimeExpired:
		return ErrOneTimeExpired
	}
	key, err := install()
	if err != nil || key == "" {
		return err
	}
	rec := *o.rec
	rec.Password, rec.UsedAt, rec.UsedBy = "", now.UTC(), key
	if err := o.save(&rec); err != nil {
		// The key is in; the password must not work again even though
		// the file still says it does.
		o.rec = &rec
		return fmt.Errorf("key installed, but the one-time password's state was not saved: %w", err)
	}
	o.rec = &rec
	return nil
}

// save writes rec whole (temporary file, then rename) so that a crash
// leaves the old state or the new one.
func (o *OneTime) save(rec *oneTimeRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := o.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save one-time password: %w", err)
	}
	if err := os.Rename(tmp, o.path); err != nil {
		return fmt.Errorf("save one-time password: %w", err)
	}
	return nil
}

func newOneTimePassword() (string, error) {
	b := make([]byte, 0, oneTimeGroups*(oneTimeGroupLen+1))
	buf := make([]byte, 1)
	// Rejection sampling keeps every character equally likely: 31 does
	// not divide 256, so bytes from 248 up are drawn again.
	limit := byte(256 - 256%len(oneTimeAlphabet))
	for g := 0; g < oneTimeGroups; g++ {
		if g > 0 {
			b = append(b, '-')
		}
		for n := 0; n < oneTimeGroupLen; {
			if _, err := rand.Read(buf); err != nil {
				return "", fmt.Errorf("one-time password: %w", err)
			}
			if buf[0] >= limit {
				continue
			}
			b = append(b, oneTimeAlphabet[int(buf[0])%len(oneTimeAlphabet)])
			n++
		}
	}
	return string(b), nil
}
