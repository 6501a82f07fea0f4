package status

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// artifactDir is where the page's tests leave files for people to look
// at: $TEST_OUT/status, by default .test-out/status at the top of the
// repository.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("TEST_OUT")
	if dir == "" {
		dir = filepath.Join("..", "..", ".test-out")
	}
	dir = filepath.Join(dir, "status")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// colours is what the browser computed for a cluster card.
type colours struct {
	State  string `json:"state"`
	Border []int  `json:"border"` // the card's left border: the state colour
	Badge  []int  `json:"badge"`  // the state badge's background
	Text   []int  `json:"text"`   // the state badge's text
	Card   []int  `json:"card"`   // the card's background
	Title  []int  `json:"title"`  // the headline's text
	Reason []int  `json:"reason"` // the reason's text
}

// cardColours reads every cluster card's computed colours as RGB.
const cardColours = `[...document.querySelectorAll(".cluster")].map((c) => {
  const rgb = (s) => s.match(/[0-9.]+/g).slice(0, 3).map(Number);
  const st = (sel, prop) => rgb(getComputedStyle(c.querySelector(sel))[prop]);
  return { state: c.dataset.state, border: rgb(getComputedStyle(c).borderLeftColor),
    badge: st(".badge.state", "backgroundColor"), text: st(".badge.state", "color"),
    card: rgb(getComputedStyle(c).backgroundColor), title: st(".state-title", "color"), reason: st(".reason", "color") };
})`

// green: the colour reads as green (its green part well above the others).
func green(rgb []int) bool { return rgb[1] > rgb[0]+30 && rgb[1] > rgb[2]+30 }

// contrast is WCAG's contrast ratio of two colours.
func contrast(a, b []int) float64 {
	lum := func(c []int) float64 {
		var l [3]float64
		for i, v := range c[:3] {
			x := float64(v) / 255
			if x <= 0.03928 {
				l[i] = x / 12.92
			} else {
				l[i] = math.Pow((x+0.055)/1.055, 2.4)
			}
		}
		return 0.2126*l[0] + 0.7152*l[1] + 0.0722*l[2]
	}
	la, lb := lum(a), lum(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// TestBrowserSeesSplitLive loads the status page in headless Chromium at
// phone size, splits the cluster, and waits until the page shows it
// without a reload: the card turns from green to a colour that is not
// green and says which node holds the vote. The phone-width screenshot
// of the split is kept as a test artifact. Then the nodes leave and the
// card turns grey (gone), and the add-on stops answering: the page says
// so, and follows again once it answers.
func TestBrowserSeesSplitLive(t *testing.T) {
	rec := NewRecorder(time.Now, time.Hour)
	srv, ln := startServer(t, rec)
	page := New(Config{Status: srv.Status, Address: ln.Addr().String(), Recorder: rec, AliveEvery: 300 * time.Millisecond,
		Pairing: func() Pairing {
			return Pairing{Enabled: true, Host: "192.168.1.20", Port: 22, Command: "pvecm qdevice setup 192.168.1.20",
				Fingerprints: []string{"SHA256:W4z4D4Cd3T0E9mXzqB1bKq2m2gYp1dO6vV3i2fQx9kQ (ED25519)"}}
		}})
	mux := http.NewServeMux()
	page.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	addon := &switchable{h: mux}
	web := httptest.NewServer(addon)
	t.Cleanup(web.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go page.Run(ctx, 200*time.Millisecond)
	b := headless(t, ctx)

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

	var text, updated string
	var cards []colours
	require.NoError(t, chromedp.Run(b,
		chromedp.Navigate(web.URL+"/"),
		chromedp.Poll(`document.querySelector(".cluster")?.dataset.state === "healthy"`, nil),
		chromedp.Text("#clusters", &text, chromedp.ByQuery),
		chromedp.Text("#generated", &updated, chromedp.ByQuery),
		chromedp.Evaluate(cardColours, &cards),
	))
	require.Contains(t, text, "Healthy")
	require.Contains(t, text, "all 2 nodes connected, in one partition, holding the vote")
	require.Equal(t, 2, strings.Count(text, "has the vote"), text)
	require.Regexp(t, `^updated \d+ s ago$`, updated)
	require.Len(t, cards, 1)
	require.True(t, green(cards[0].Border), "healthy is green: %v", cards[0].Border)
	require.True(t, green(cards[0].Badge), "healthy is green: %v", cards[0].Badge)

	// The split, while the page is open.
	_, err := conns[1].Call(conns[1].Node.Membership(wire.RingID{NodeID: 1, Seq: 8}, []wire.NodeInfo{{NodeID: 1}}, wire.HeuristicsUndefined))
	require.NoError(t, err)
	_, err = conns[2].Call(conns[2].Node.Membership(wire.RingID{NodeID: 2, Seq: 8}, []wire.NodeInfo{{NodeID: 2}}, wire.HeuristicsUndefined))
	require.NoError(t, err)

	var shot []byte
	var history string
	require.NoError(t, chromedp.Run(b,
		chromedp.Poll(`document.querySelector(".cluster")?.dataset.state === "split" && document.querySelectorAll(".node .badge.bad").length === 1`, nil),
		chromedp.Text("#clusters", &text, chromedp.ByQuery),
		chromedp.Text("#history", &history, chromedp.ByQuery),
		chromedp.Evaluate(cardColours, &cards),
		chromedp.FullScreenshot(&shot, 100),
	))
	require.Contains(t, text, "Split: node 1 holds the vote")
	require.Contains(t, text, "split into {1} and {2}; {1} holds the vote")
	require.Contains(t, text, "has the vote")
	require.Contains(t, text, "no vote")
	require.NotContains(t, text, "ring", "the ring id is behind the details")
	require.NotContains(t, text, "ACK")
	require.NotContains(t, text, "::ffff:")
	require.Contains(t, history, "partition {1} gets the vote")
	require.Contains(t, history, "node 2 loses the vote")
	require.Len(t, cards, 1)
	require.Equal(t, "split", cards[0].State)
	require.False(t, green(cards[0].Border), "a split is not shown green: %v", cards[0].Border)
	require.False(t, green(cards[0].Badge), "a split is not shown green: %v", cards[0].Badge)
	out := filepath.Join(artifactDir(t), "split-phone.png")
	img, err := png.DecodeConfig(bytes.NewReader(shot))
	require.NoError(t, err, "a PNG screenshot")
	require.Equal(t, phoneWidth, img.Width, "a screenshot at phone width")
	require.NoError(t, os.WriteFile(out, shot, 0o644))
	abs, _ := filepath.Abs(out)
	t.Logf("phone-width (390 px) screenshot of the split: %s", abs)

	// Both nodes leave: the cluster is shown gone, in grey.
	for _, c := range conns {
		c.Close()
	}
	require.NoError(t, chromedp.Run(b,
		chromedp.Poll(`document.querySelector(".cluster")?.dataset.state === "gone"`, nil),
		chromedp.Text("#clusters", &text, chromedp.ByQuery),
		chromedp.Evaluate(cardColours, &cards),
	))
	require.Contains(t, text, "No cluster is connected.")
	require.Contains(t, text, "Gone: no node is connected")
	require.Regexp(t, `no node of this cluster is connected to qnetd, for \d+ s`, text)
	require.Len(t, cards, 1)
	require.False(t, green(cards[0].Badge), "gone is not green: %v", cards[0].Badge)
	require.Equal(t, cards[0].Badge[0], cards[0].Badge[1], "gone is grey: %v", cards[0].Badge)

	// The add-on stops answering: the page says for how long, and
	// follows again when it is back.
	addon.down(true)
	pctx, pcancel := context.WithTimeout(b, 10*time.Second)
	defer pcancel()
	err = chromedp.Run(pctx,
		chromedp.Poll(`/^not updated for [2-9] s: the add-on does not answer$/.test(document.getElementById("generated").textContent)`, nil),
	)
	require.NoError(t, chromedp.Run(b, chromedp.Text("#generated", &updated, chromedp.ByQuery)))
	require.NoError(t, err, "the footer says %q", updated)
	t.Logf("after the add-on stopped: %q", updated)
	addon.down(false)
	require.NoError(t, chromedp.Run(b,
		chromedp.Poll(`/^updated \d+ s ago$/.test(document.getElementById("generated").textContent)`, nil),
	))
}

// switchable is the add-on as the ingress proxy sees it: while down, it
// ends the open event streams and answers 502, as the proxy does while
// the add-on restarts.
type switchable struct {
	h    http.Handler
	mu   sync.Mutex
	off  bool
	stop chan struct{}
}

func (s *switchable) down(off bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off && !s.off && s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
	s.off = off
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.off {
		s.mu.Unlock()
		http.Error(w, "502: Bad Gateway", http.StatusBadGateway)
		return
	}
	if s.stop == nil {
		s.stop = make(chan struct{})
	}
	stop := s.stop
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.h.ServeHTTP(w, r.WithContext(ctx))
}

// TestBrowserStateColours shows a cluster in every state, in the light
// and the dark colour scheme: only healthy is green, every state has a
// colour of its own, and the badge, headline and reason stay readable
// (WCAG contrast of at least 4.5). Screenshots of both are kept.
func TestBrowserStateColours(t *testing.T) {
	node := func(id uint32, vote wire.Vote) engine.NodeStatus {
		return engine.NodeStatus{NodeID: id, Addr: "[::ffff:192.0.2.1]:4000" + string(rune('0'+id)), LastSentVote: vote, LastSentAckNack: vote,
			Ring: wire.RingID{NodeID: 1, Seq: 8}, MembershipNodes: []wire.NodeInfo{{NodeID: id}}}
	}
	st := &engine.Status{Clusters: []engine.ClusterStatus{
		{Name: "healthy", State: engine.StateHealthy, StateReason: "all 1 nodes connected, in one partition, holding the vote", Nodes: []engine.NodeStatus{node(1, wire.VoteACK)}},
		{Name: "degraded", State: engine.StateDegraded, StateReason: "node 2 not connected", Nodes: []engine.NodeStatus{node(1, wire.VoteACK)}},
		{Name: "split", State: engine.StateSplit, StateReason: "split into {1} and {2}; {1} holds the vote", Nodes: []engine.NodeStatus{node(1, wire.VoteACK), node(2, wire.VoteNACK)}},
		{Name: "no_vote", State: engine.StateNoVote, StateReason: "no node holds the vote", Nodes: []engine.NodeStatus{node(1, wire.VoteNACK)}},
		{Name: "waiting", State: engine.StateWaiting, StateReason: "a decision is pending for node 1", Nodes: []engine.NodeStatus{{NodeID: 1, LastSentVote: wire.VoteWaitForReply}}},
		{Name: "gone", State: engine.StateNoVote, StateReason: "no node is connected"},
	}}
	page := New(Config{Status: func(context.Context) (*engine.Status, error) { return st, nil }, Address: "[::]:5403",
		Recorder: NewRecorder(time.Now, time.Hour)})
	mux := http.NewServeMux()
	page.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := headless(t, ctx)
	require.NoError(t, chromedp.Run(b,
		chromedp.Navigate(web.URL+"/"),
		chromedp.Poll(`document.querySelectorAll(".cluster").length === 6`, nil),
	))
	for _, scheme := range []string{"light", "dark"} {
		var cards []colours
		var shot []byte
		require.NoError(t, chromedp.Run(b,
			emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}),
			chromedp.Poll(`matchMedia("(prefers-color-scheme: `+scheme+`)").matches`, nil),
			chromedp.Evaluate(cardColours, &cards),
			chromedp.FullScreenshot(&shot, 100),
		))
		require.Len(t, cards, 6)
		seen := map[string]string{}
		for i, c := range cards {
			want := st.Clusters[i].Name
			if want == "gone" {
				want = StateGone
			}
			require.Equal(t, want, c.State)
			require.Equal(t, c.Border, c.Badge, "%s: the border and the badge are the state's colour", c.State)
			require.Equal(t, c.State == "healthy", green(c.Badge), "%s %s: only healthy is green: %v", scheme, c.State, c.Badge)
			key := fmt.Sprint(c.Badge)
			require.NotContains(t, seen, key, "%s and %s share a colour", c.State, seen[key])
			seen[key] = c.State
			for what, fg := range map[string][]int{"badge": c.Text, "headline": c.Title, "reason": c.Reason} {
				bg := c.Card
				if what == "badge" {
					bg = c.Badge
				}
				require.GreaterOrEqual(t, contrast(fg, bg), 4.5, "%s %s: the %s's text %v on %v", scheme, c.State, what, fg, bg)
			}
		}
		out := filepath.Join(artifactDir(t), "states-"+scheme+".png")
		require.NoError(t, os.WriteFile(out, shot, 0o644))
		t.Logf("every state, %s: %s", scheme, out)
	}
}
