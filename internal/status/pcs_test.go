package status

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// pcsFake stands in for the pcs endpoint with the SSH endpoint off.
type pcsFake struct {
	mu      sync.Mutex
	tokens  []PcsToken
	revoked []string
}

func (f *pcsFake) pairing() Pairing {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Pairing{Fingerprints: []string{},
		OneTime: &OneTimePassword{State: "used", UsedAt: time.Now().Add(-2 * time.Minute), UsedBy: "pcs token 0a1b2c3d4e5f"},
		Pcs: &PcsPairing{Host: "192.168.1.20", Port: 2224, Tokens: append([]PcsToken{}, f.tokens...), Commands: []string{
			"pcs host auth 192.168.1.20 -u hacluster", "pcs quorum device add model net host=192.168.1.20 algorithm=ffsplit"}}}
}

func (f *pcsFake) revoke(id string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, tk := range f.tokens {
		if tk.ID == id {
			f.tokens = append(f.tokens[:i:i], f.tokens[i+1:]...)
			f.revoked = append(f.revoked, id)
			return tk.Clusters, nil
		}
	}
	return nil, ErrNoSuchToken
}

func pcsPage(t *testing.T, f *pcsFake, on bool) *httptest.Server {
	rec := NewRecorder(time.Now, time.Hour)
	srv, ln := startServer(t, rec)
	cfg := Config{Status: srv.Status, Address: ln.Addr().String(), Recorder: rec, Pairing: f.pairing}
	if on {
		cfg.RevokePcsToken = f.revoke
	}
	page := New(cfg)
	mux := http.NewServeMux()
	page.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	return web
}

func twoTokens() []PcsToken {
	now := time.Now()
	return []PcsToken{
		{ID: "0a1b2c3d4e5f", Created: now.Add(-2 * time.Minute), Addr: "192.168.1.31", OneTime: true, Clusters: []string{"rhel-prod"}},
		{ID: "aabbccddeeff", Created: now.Add(-time.Minute), Addr: "192.168.1.32", Clusters: []string{}},
	}
}

// TestRevokePcsTokenNeedsThePagesRequest: only a JSON POST of {"id": ...}
// of at most 1 KiB revokes; an unknown id is 404, and with the pcs
// endpoint off nothing is revoked (409).
func TestRevokePcsTokenNeedsThePagesRequest(t *testing.T) {
	f := &pcsFake{tokens: twoTokens()}
	web := pcsPage(t, f, true)
	post := func(ct, body string) *http.Response {
		r, err := http.Post(web.URL+"/api/pcs/revoke-token", ct, strings.NewReader(body))
		require.NoError(t, err)
		t.Cleanup(func() { r.Body.Close() })
		return r
	}
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", ""} {
		require.Equal(t, http.StatusUnsupportedMediaType, post(ct, `{"id":"aabbccddeeff"}`).StatusCode, ct)
	}
	pad := strings.Repeat(" ", maxRevokeBody)
	for _, body := range []string{"", "{}", `{"id":""}`, `{"id":"aabbccddeeff","x":1}`, `{"id":"aabbccddeeff"` + pad + `}`, "[1]"} {
		require.Equal(t, http.StatusBadRequest, post("application/json", body).StatusCode, body)
	}
	require.Empty(t, f.revoked)
	// the bound itself: a body of exactly maxRevokeBody bytes is read
	exact := `{"id":"aabbccddeeff"}`
	exact = exact[:len(exact)-1] + strings.Repeat(" ", maxRevokeBody-len(exact)) + "}"
	require.Len(t, exact, maxRevokeBody)
	r := post("application/json", exact)
	require.Equal(t, http.StatusOK, r.StatusCode)
	var v View
	require.NoError(t, json.NewDecoder(r.Body).Decode(&v))
	require.Len(t, v.Pairing.Pcs.Tokens, 1, "the answer is the page after the revocation")
	require.Equal(t, []string{"aabbccddeeff"}, f.revoked)
	require.Equal(t, http.StatusNotFound, post("application/json", `{"id":"aabbccddeeff"}`).StatusCode)

	off := pcsPage(t, &pcsFake{tokens: twoTokens()}, false)
	r2, err := http.Post(off.URL+"/api/pcs/revoke-token", "application/json", strings.NewReader(`{"id":"aabbccddeeff"}`))
	require.NoError(t, err)
	defer r2.Body.Close()
	require.Equal(t, http.StatusConflict, r2.StatusCode)
}

// TestBrowserPcsCard: with the SSH endpoint off the page shows the pcs
// card alone: the commands, what became of the one-time password, each
// token with the clusters it owns; Revoke asks for a second click and
// then the token is gone from the card.
func TestBrowserPcsCard(t *testing.T) {
	f := &pcsFake{tokens: twoTokens()}
	web := pcsPage(t, f, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := headless(t, ctx)
	var card, button string
	require.NoError(t, chromedp.Run(b,
		chromedp.Navigate(web.URL+"/"),
		chromedp.WaitVisible(`#pcs button.revoke`, chromedp.ByQuery),
		chromedp.Text("#pairing", &card, chromedp.ByQuery),
	))
	require.NotContains(t, card, "Pair a Proxmox cluster")
	require.Contains(t, card, "Pair a RHEL cluster (pcs)")
	require.Contains(t, card, "pcs quorum device add model net host=192.168.1.20 algorithm=ffsplit")
	require.Contains(t, card, "used 2 min ago by pcs host auth (pcs token 0a1b2c3d4e5f)")
	require.Contains(t, card, "token 0a1b2c3d4e5f, made 2 min ago from 192.168.1.31 with the one-time password")
	require.Contains(t, card, "owns rhel-prod")
	require.Contains(t, card, "owns no cluster yet")
	first := `#pcs button.revoke[data-id="0a1b2c3d4e5f"]`
	require.NoError(t, chromedp.Run(b,
		chromedp.Click(first, chromedp.ByQuery),
		chromedp.Text(first, &button, chromedp.ByQuery),
	))
	require.Equal(t, "Click again to revoke", button)
	require.Empty(t, f.revoked, "one click revokes nothing")
	require.NoError(t, chromedp.Run(b,
		chromedp.Click(first, chromedp.ByQuery),
		chromedp.WaitNotPresent(first, chromedp.ByQuery),
		chromedp.Text("#pairing", &card, chromedp.ByQuery),
	))
	require.Equal(t, []string{"0a1b2c3d4e5f"}, f.revoked)
	require.NotContains(t, card, "owns rhel-prod")
	require.Contains(t, card, "token aabbccddeeff")
}

// FuzzRevokePcsToken: whatever body the revoke request has, the answer is
// 200 only for {"id": <a known token>} (which is then revoked), a client
// error otherwise, and nothing else is revoked.
func FuzzRevokePcsToken(f *testing.F) {
	for _, s := range []string{`{"id":"aabbccddeeff"}`, `{"id":"0a1b2c3d4e5f"}`, `{"id":""}`, `{}`, `{"id":1}`, `[`, `{"id":"aabbccddeeff","id":"x"}`, "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fake := &pcsFake{tokens: twoTokens()}
		page := New(Config{Pairing: fake.pairing, RevokePcsToken: fake.revoke,
			Status: func(context.Context) (*engine.Status, error) { return &engine.Status{}, nil }, Recorder: NewRecorder(time.Now, time.Hour)})
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/api/pcs/revoke-token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		page.revokePcsToken(w, r)
		switch w.Code {
		case http.StatusOK:
			require.Len(t, fake.revoked, 1)
			require.Contains(t, []string{"0a1b2c3d4e5f", "aabbccddeeff"}, fake.revoked[0])
		case http.StatusBadRequest, http.StatusNotFound:
			require.Empty(t, fake.revoked)
		default:
			t.Fatalf("answer %d for %q", w.Code, body)
		}
	})
}
