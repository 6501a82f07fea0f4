package status

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/server/servertest"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// sse reads server-sent events into a channel.
func sse(t *testing.T, url string) <-chan View {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	ch := make(chan View, 64)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var v View
				if json.Unmarshal([]byte(data), &v) == nil {
					ch <- v
				}
			}
		}
	}()
	return ch
}

// votes renders a view's votes as "cluster: 1=ACK 2=NACK".
func votes(v View) string {
	var parts []string
	for _, c := range v.Clusters {
		var ns []string
		for _, n := range c.Nodes {
			ns = append(ns, strconv.Itoa(int(n.ID))+"="+n.Vote)
		}
		parts = append(parts, c.Name+": "+strings.Join(ns, " "))
	}
	return strings.Join(parts, "; ")
}

// awaitSSE waits for an event whose votes read want.
func awaitSSE(t *testing.T, ch <-chan View, want string) View {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case v := <-ch:
			if votes(v) == want {
				return v
			}
			seen = append(seen, votes(v))
		case <-deadline:
			t.Fatalf("no status event with votes %q; saw %q", want, seen)
		}
	}
}

func node(cluster string, id uint32) *client.Node {
	return client.NewNode(client.Settings{Cluster: cluster, NodeID: id, Algorithm: wire.AlgoFFSplit,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true})
}

// startServer runs a qnetd (TLS off) on loopback that tells rec its votes.
func startServer(t *testing.T, rec *Recorder) (*server.Server, net.Listener) {
	t.Helper()
	return servertest.Start(t, func(c *server.Config) { c.Observer = rec })
}

// TestSplitAndHealEverywhere drives a 2-node cluster through a split and a
// heal with the protocol client and checks, at each step, the
// corosync-qnetd-tool output and the page's JSON and event stream.
func TestSplitAndHealEverywhere(t *testing.T) {
	rec := NewRecorder(time.Now, time.Hour)
	srv, ln := startServer(t, rec)

	info := adminipc.ServerInfo{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, ListenAddr: ln.Addr()}
	page := New(Config{Status: srv.Status, Address: ln.Addr().String(), Recorder: rec,
		Pairing: func() Pairing {
			return Pairing{Enabled: true, Host: "192.0.2.10", Port: 22, Command: "pvecm qdevice setup 192.0.2.10", Fingerprints: []string{"SHA256:abc"}}
		}})
	mux := http.NewServeMux()
	page.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go page.Run(ctx, 100*time.Millisecond)
	events := sse(t, web.URL+"/api/events")

	ipcList := func() string {
		st, err := srv.Status(context.Background())
		require.NoError(t, err)
		return adminipc.RenderList(st, info, false, "")
	}

	// Both nodes join: both have the vote.
	conns := map[uint32]*client.Conn{}
	for _, id := range []uint32{1, 2} {
		c, err := client.Dial(ln.Addr().String(), node("pve", id), 5*time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Handshake(wire.RingID{NodeID: 1, Seq: 4}, nil))
		_, err = c.Call(c.Node.Config([]wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}, true, nil))
		require.NoError(t, err)
		conns[id] = c
	}
	for _, id := range []uint32{1, 2} {
		_, err := conns[id].Call(conns[id].Node.Membership(wire.RingID{NodeID: 1, Seq: 4}, []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}, wire.HeuristicsUndefined))
		require.NoError(t, err)
	}
	v := awaitSSE(t, events, "pve: 1=ACK 2=ACK")
	require.True(t, v.Clusters[0].HasVote)
	require.Equal(t, "Fifty-Fifty split", v.Clusters[0].Algorithm)
	require.Equal(t, "pvecm qdevice setup 192.0.2.10", v.Pairing.Command)
	require.Contains(t, ipcList(), "Cluster \"pve\":\n    Algorithm:\t\tFifty-Fifty split (KAP Tie-breaker)\n")

	// The link between the nodes breaks: node 1 (lowest id) keeps the vote.
	_, err := conns[1].Call(conns[1].Node.Membership(wire.RingID{NodeID: 1, Seq: 8}, []wire.NodeInfo{{NodeID: 1}}, wire.HeuristicsUndefined))
	require.NoError(t, err)
	_, err = conns[2].Call(conns[2].Node.Membership(wire.RingID{NodeID: 2, Seq: 8}, []wire.NodeInfo{{NodeID: 2}}, wire.HeuristicsUndefined))
	require.NoError(t, err)
	v = awaitSSE(t, events, "pve: 1=ACK 2=NACK")
	var texts []string
	for _, e := range v.History {
		texts = append(texts, e.Text)
	}
	require.Contains(t, texts, "partition {1} gets the vote: 50:50 split, equal scores; it holds the tie-breaker node 1 (node with lowest node id)")
	require.Contains(t, texts, "node 2 loses the vote (not in the quorate partition)")
	require.Contains(t, ipcList(), "    Node ID 2:\n        Client address:\t\t")
	require.Contains(t, ipcList(), "        Membership node list:\t2\n        Vote:\t\t\tNo change (NACK)\n")

	// Heal: both nodes have the vote again.
	for _, id := range []uint32{1, 2} {
		_, err := conns[id].Call(conns[id].Node.Membership(wire.RingID{NodeID: 1, Seq: 12}, []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}}, wire.HeuristicsUndefined))
		require.NoError(t, err)
	}
	awaitSSE(t, events, "pve: 1=ACK 2=ACK")
	require.Contains(t, ipcList(), "Vote:\t\t\tNo change (ACK)")

	// Everybody leaves.
	for _, c := range conns {
		c.Close()
	}
	awaitSSE(t, events, "")

	// The page itself and its JSON.
	resp, err := http.Get(web.URL + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `<script src="app.js"></script>`)
	require.NotContains(t, string(body), `src="/`, "links must be relative for ingress")
	resp, err = http.Get(web.URL + "/api/status")
	require.NoError(t, err)
	var cur View
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&cur))
	resp.Body.Close()
	require.Empty(t, cur.Clusters)
}

// TestNewListenerGetsTheFirstViewOnce: the view made for the first
// listener (no refresh before it) is sent to it once, not again as a
// change.
func TestNewListenerGetsTheFirstViewOnce(t *testing.T) {
	rec := NewRecorder(time.Now, time.Hour)
	srv, ln := startServer(t, rec)
	page := New(Config{Status: srv.Status, Address: ln.Addr().String(), Recorder: rec, AliveEvery: 50 * time.Millisecond})
	mux := http.NewServeMux()
	page.Register(func(p string, h http.Handler) { mux.Handle(p, h) })
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	resp, err := http.Get(web.URL + "/api/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	statuses, alives := 0, 0
	for alives < 3 && sc.Scan() {
		switch sc.Text() {
		case "event: status":
			statuses++
		case "event: alive":
			alives++
		}
	}
	require.Equal(t, 3, alives)
	require.Equal(t, 1, statuses, "nothing changed after the first view")
}
