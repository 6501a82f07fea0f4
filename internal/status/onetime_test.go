package status

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// phoneWidth is the width of a phone's screen in CSS pixels.
const phoneWidth = 390

// headless starts Debian's Chromium at phone size; the returned context
// drives it for at most a minute.
func headless(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
			t.Fatal("chromium is not installed (make test installs it)")
		}
		t.Skip("chromium is not installed (make test installs it)")
	}
	// Not t.TempDir: Chromium's helper processes may still write there
	// while the test's cleanup runs; removing it is best effort.
	profile, err := os.MkdirTemp("", "qnetd-chromium-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(profile) })
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(profile), chromedp.WindowSize(390, 844))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	bctx, tcancel := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(tcancel)
	// Chromium keeps its window at least 500 pixels wide: the phone's
	// width is set as the page's viewport instead.
	require.NoError(t, chromedp.Run(bctx, chromedp.EmulateViewport(phoneWidth, 844, chromedp.EmulateMobile)))
	return bctx
}

// oneTimeFake stands in for the pairing endpoint's one-time password.
type oneTimeFake struct {
	mu    sync.Mutex
	ot    OneTimePassword
	calls int
}

func (f *oneTimeFake) pairing() Pairing {
	f.mu.Lock()
	defer f.mu.Unlock()
	ot := f.ot
	return Pairing{Enabled: true, Host: "192.168.1.20", Port: 22, Command: "pvecm qdevice setup 192.168.1.20",
		Fingerprints: []string{"ED25519 key fingerprint is SHA256:W4z4D4Cd3T0E9mXzqB1bKq2m2gYp1dO6vV3i2fQx9kQ"}, OneTime: &ot}
}

func (f *oneTimeFake) renew() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.ot = OneTimePassword{State: "valid", Password: fmt.Sprintf("abcd-efgh-jkmn-pq%02d", f.calls), Expires: time.Now().Add(time.Hour)}
	return nil
}

func onetimePage(t *testing.T, f *oneTimeFake, renew bool) *httptest.Server {
	rec := NewRecorder(time.Now, time.Hour)
	srv, ln := startServer(t, rec)
	cfg := Config{Status: srv.Status, Address: ln.Addr().String(), Recorder: rec, Pairing: f.pairing}
	if renew {
		cfg.RenewOneTime = f.renew
	}
	page := New(cfg)
	mux := http.NewServeMux()
	page.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	return web
}

// TestOneTimeRenewNeedsThePagesRequest: only a JSON POST makes a password
// (a form on another site cannot send one), and none when pairing is off.
func TestOneTimeRenewNeedsThePagesRequest(t *testing.T) {
	f := &oneTimeFake{ot: OneTimePassword{State: "used"}}
	web := onetimePage(t, f, true)
	post := func(ct string) *http.Response {
		r, err := http.Post(web.URL+"/api/pairing/one-time-password", ct, strings.NewReader("{}"))
		require.NoError(t, err)
		t.Cleanup(func() { r.Body.Close() })
		return r
	}
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", ""} {
		require.Equal(t, http.StatusUnsupportedMediaType, post(ct).StatusCode, ct)
	}
	require.Zero(t, f.calls)
	r := post("application/json; charset=utf-8")
	require.Equal(t, http.StatusOK, r.StatusCode)
	require.Equal(t, "no-store", r.Header.Get("Cache-Control"))
	var v View
	require.NoError(t, json.NewDecoder(r.Body).Decode(&v))
	require.Equal(t, "valid", v.Pairing.OneTime.State)
	require.Equal(t, "abcd-efgh-jkmn-pq01", v.Pairing.OneTime.Password)
	require.Equal(t, 1, f.calls)
	g, err := http.Get(web.URL + "/api/pairing/one-time-password")
	require.NoError(t, err)
	g.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, g.StatusCode)

	off := onetimePage(t, &oneTimeFake{}, false)
	r2, err := http.Post(off.URL+"/api/pairing/one-time-password", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	defer r2.Body.Close()
	require.Equal(t, http.StatusConflict, r2.StatusCode)
}

// TestBrowserMakesOneTimePassword: the pairing card says the password was
// used, its button makes a new one, and the card shows it.
func TestBrowserMakesOneTimePassword(t *testing.T) {
	f := &oneTimeFake{ot: OneTimePassword{State: "used", UsedAt: time.Now().Add(-5 * time.Minute), UsedBy: "SHA256:usedkey"}}
	web := onetimePage(t, f, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := headless(t, ctx)
	var card, pw string
	require.NoError(t, chromedp.Run(b,
		chromedp.Navigate(web.URL+"/"),
		chromedp.WaitVisible(`#new-one-time`, chromedp.ByQuery),
		chromedp.Text("#pairing", &card, chromedp.ByQuery),
	))
	require.Contains(t, card, "was used 5 min ago to install the key SHA256:usedkey")
	require.Contains(t, card, "Make a one-time pairing password")
	require.NoError(t, chromedp.Run(b,
		chromedp.Click(`#new-one-time`, chromedp.ByQuery),
		chromedp.WaitVisible(`#one-time-password`, chromedp.ByQuery),
		chromedp.Text("#one-time-password", &pw, chromedp.ByQuery),
		chromedp.Text("#pairing", &card, chromedp.ByQuery),
	))
	require.Equal(t, "abcd-efgh-jkmn-pq01", strings.TrimSpace(pw))
	require.Contains(t, card, "the first node key it installs uses it up")
	require.Contains(t, card, "Make a new one")
	require.Equal(t, 1, f.calls)
}
