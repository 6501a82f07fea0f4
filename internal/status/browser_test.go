package status

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// artifactDir is where tests leave files for people to look at.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("QNETD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".test-out")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// TestBrowserSeesSplitLive loads the status page in headless Chromium at
// phone size, splits the cluster, and waits until the page shows it
// without a reload; the screenshot is kept as a test artifact.
func TestBrowserSeesSplitLive(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
			t.Fatal("chromium is not installed (make test installs it)")
		}
		t.Skip("chromium is not installed (make test installs it)")
	}
	rec := NewRecorder(time.Now, time.Hour)
	srv, ln := startServer(t, rec)
	page := New(Config{Status: srv.Status, Address: ln.Addr().String(), Recorder: rec, Pairing: func() Pairing {
		return Pairing{Enabled: true, Host: "192.168.1.20", Port: 22, Command: "pvecm qdevice setup 192.168.1.20",
			Fingerprints: []string{"SHA256:W4z4D4Cd3T0E9mXzqB1bKq2m2gYp1dO6vV3i2fQx9kQ (ED25519)"}}
	}})
	mux := http.NewServeMux()
	page.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go page.Run(ctx, 200*time.Millisecond)

	conns := map[uint32]*client.Conn{}
	all := []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}
	for _, id := range []uint32{1, 2} {
		c, err := client.Dial(ln.Addr().String(), node("pve", id), 5*time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil))
		_, err = c.Call(c.Node.Config(all, true, nil))
		require.NoError(t, err)
		conns[id] = c
	}
	for _, id := range []uint32{1, 2} {
		_, err := conns[id].Call(conns[id].Node.Membership(wire.RingID{NodeID: 1, Seq: 4}, all, wire.HeuristicsUndefined))
		require.NoError(t, err)
	}

	// Not t.TempDir: Chromium's helper processes may still write there
	// while the test's cleanup runs; removing it is best effort.
	profile, err := os.MkdirTemp("", "qnetd-chromium-")
	require.NoError(t, err)
	defer os.RemoveAll(profile)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(profile), chromedp.WindowSize(390, 844))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	bctx, tcancel := context.WithTimeout(bctx, 60*time.Second)
	defer tcancel()

	var text string
	require.NoError(t, chromedp.Run(bctx,
		chromedp.Navigate(web.URL+"/"),
		chromedp.WaitVisible(`.card h2`, chromedp.ByQuery),
		chromedp.Poll(`document.querySelectorAll(".badge.ok").length >= 3`, nil),
		chromedp.Text("#clusters", &text, chromedp.ByQuery),
	))
	require.Contains(t, text, "quorate with the qdevice vote")

	// The split, while the page is open.
	_, err = conns[1].Call(conns[1].Node.Membership(wire.RingID{NodeID: 1, Seq: 8}, []wire.NodeInfo{{NodeID: 1}}, wire.HeuristicsUndefined))
	require.NoError(t, err)
	_, err = conns[2].Call(conns[2].Node.Membership(wire.RingID{NodeID: 2, Seq: 8}, []wire.NodeInfo{{NodeID: 2}}, wire.HeuristicsUndefined))
	require.NoError(t, err)

	var shot []byte
	var history string
	require.NoError(t, chromedp.Run(bctx,
		chromedp.Poll(`document.querySelectorAll(".node .badge.bad").length === 1 && document.querySelectorAll(".node .badge.ok").length === 1`, nil),
		chromedp.Text("#history", &history, chromedp.ByQuery),
		chromedp.FullScreenshot(&shot, 100),
	))
	require.Contains(t, history, "partition {1} gets the vote")
	require.Contains(t, history, "node 2 loses the vote")
	out := filepath.Join(artifactDir(t), "status-page-split.png")
	require.NoError(t, os.WriteFile(out, shot, 0o644))
	t.Logf("screenshot: %s", out)
	require.True(t, strings.HasPrefix(string(shot), "\x89PNG"), "a PNG screenshot")
}
