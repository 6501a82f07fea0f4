package adminipc

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/client"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// rig drives an engine through the test harness's engine transport:
// encoded-and-decoded client messages, every server message to its node
// and the node's answers back.
type rig struct {
	t  *testing.T
	tr *client.EngineTransport
}

func newRig(t *testing.T, cfg engine.Config) *rig {
	return &rig{t: t, tr: client.NewEngineTransport(cfg)}
}

func (r *rig) connect(addr string, n *client.Node) {
	require.NoError(r.t, r.tr.OpenFrom(n, addr))
}

func (r *rig) send(n *client.Node, m *wire.Msg) {
	require.NoError(r.t, r.tr.Send(n, m))
}

// join runs the real client's start: PREINIT, [STARTTLS], INIT, SET_OPTION.
func (r *rig) join(addr string, s client.Settings, ring wire.RingID, tls bool) *client.Node {
	n := client.NewNode(s)
	r.connect(addr, n)
	r.send(n, n.Preinit())
	if tls {
		r.send(n, n.StartTLS())
	}
	r.send(n, n.Init(ring))
	require.Empty(r.t, n.Errors)
	r.send(n, n.SetOptionKAP())
	return n
}

func nodes(ids ...uint32) []wire.NodeInfo {
	out := make([]wire.NodeInfo, len(ids))
	for i, id := range ids {
		out[i] = wire.NodeInfo{NodeID: id}
	}
	return out
}

func u64(x uint64) *uint64 { return &x }

// buildState is a hand-made server with several clusters: ffsplit with
// KAP over TLS, a tie-breaker by node id with data center ids and
// heuristics, an LMS cluster, a cluster name with a NUL byte and a
// connection that never got past PREINIT.
func buildState(t *testing.T) *engine.Engine {
	cfg := engine.DefaultConfig() // TLS on, client certificate required
	r := newRig(t, cfg)
	ff := func(id uint32) client.Settings {
		return client.Settings{Cluster: "cl", NodeID: id, Algorithm: wire.AlgoFFSplit,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 8000, KAP: true}
	}
	ring := wire.RingID{NodeID: 1, Seq: 0x24}
	n2 := r.join("[::ffff:192.0.2.12]:40002", ff(2), ring, true)
	n1 := r.join("192.0.2.11:45102", ff(1), ring, true)
	r.send(n1, n1.Config(nodes(1, 2), true, u64(42)))
	r.send(n2, n2.Config(nodes(1, 2), true, u64(42)))
	r.send(n1, n1.Membership(ring, nodes(1, 2), wire.HeuristicsUndefined))
	r.send(n2, n2.Membership(ring, nodes(1, 2), wire.HeuristicsUndefined))

	// tie-breaker node 4, KAP off, plain text, data center ids, heuristics
	wd := func(id uint32) client.Settings {
		return client.Settings{Cluster: `we "ird" \name`, NodeID: id, Algorithm: wire.AlgoFFSplit,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerNodeID, NodeID: 4}, Heartbeat: 10000, KAP: false}
	}
	ring3 := wire.RingID{NodeID: 3, Seq: 0xabcdef0123}
	n3 := r.join("[2001:db8::3]:5001", wd(3), ring3, false)
	dc := []wire.NodeInfo{{NodeID: 3, DataCenterID: 7}, {NodeID: 4, DataCenterID: 0}, {NodeID: 10, DataCenterID: 9}}
	r.send(n3, n3.Config(dc, true, nil))
	r.send(n3, n3.Membership(ring3, []wire.NodeInfo{{NodeID: 3, DataCenterID: 7}}, wire.HeuristicsPass))

	// LMS, highest tie-breaker, heuristics changed after the membership
	lm := client.Settings{Cluster: "lms", NodeID: 5, Algorithm: wire.AlgoLMS,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerHighest}, Heartbeat: 12000, KAP: true}
	n5 := r.join("10.0.0.5:6000", lm, wire.RingID{NodeID: 5, Seq: 1}, false)
	r.send(n5, n5.Config(nodes(5, 6), true, nil))
	r.send(n5, n5.Membership(wire.RingID{NodeID: 5, Seq: 2}, nodes(5), wire.HeuristicsFail))
	r.send(n5, n5.HeuristicsChange(wire.HeuristicsPass))

	// a name with a NUL byte prints as C does; the node only did INIT
	r.join("10.0.0.9:6001", client.Settings{Cluster: "nul\x00hidden", NodeID: 9, Algorithm: wire.AlgoTest,
		TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, Heartbeat: 1000}, wire.RingID{}, false)

	// connected, never initialised
	pre := client.NewNode(client.Settings{Cluster: "cl"})
	r.connect("192.0.2.99:1", pre)
	r.send(pre, pre.Preinit())
	return r.tr.E
}

func TestRenderStatus(t *testing.T) {
	e := buildState(t)
	s, info := e.Status(), ServerInfo{Port: 5403}
	require.Equal(t, "QNetd address:\t\t\t*:5403\n"+
		"TLS:\t\t\t\tSupported (client certificate required)\n"+
		"Connected clients:\t\t6\n"+
		"Connected clusters:\t\t4\n", RenderStatus(s, info, false))
	require.Equal(t, "QNetd address:\t\t\t*:5403\n"+
		"TLS:\t\t\t\tSupported (client certificate required)\n"+
		"Connected clients:\t\t6\n"+
		"Connected clusters:\t\t4\n"+
		"Maximum send/receive size:\t32768/32768 bytes\n", RenderStatus(s, info, true))

	info = ServerInfo{Host: "qnetd.example", Port: 6000, MaxClients: 100, MaxClientSendSize: 1 << 40, MaxClientReceiveSize: 65536}
	s.TLS = wire.TLSRequired
	require.Equal(t, "QNetd address:\t\t\tqnetd.example:6000\n"+
		"TLS:\t\t\t\tRequired (client certificate required)\n"+
		"Connected clients:\t\t6\n"+
		"Connected clusters:\t\t4\n"+
		"Maximum allowed clients:\t100\n"+
		"Maximum send/receive size:\t1099511627776/65536 bytes\n", RenderStatus(s, info, true))
	s.TLS, s.ClientCertRequired = wire.TLSSupportedOn, false
	require.Contains(t, RenderStatus(s, info, false), "TLS:\t\t\t\tSupported\n")
	s.TLS, s.ClientCertRequired = wire.TLSUnsupported, true
	require.Contains(t, RenderStatus(s, info, false), "TLS:\t\t\t\tUnsupported\n", "the suffix only with TLS")
}

const wantListVerbose = "Cluster \"cl\":\n" +
	"    Algorithm:\t\tFifty-Fifty split (KAP Tie-breaker)\n" +
	"    Tie-breaker:\tNode with lowest node ID\n" +
	"    Node ID 1:\n" +
	"        Client address:\t\t192.0.2.11:45102\n" +
	"        HB interval:\t\t8000ms\n" +
	"        Configuration version:\t42\n" +
	"        Configured node list:\t1, 2\n" +
	"        Ring ID:\t\t1.24\n" +
	"        Membership node list:\t1, 2\n" +
	"        Heuristics:\t\tUndefined (membership: Undefined, regular: Undefined)\n" +
	"        TLS active:\t\tYes (client certificate verified)\n" +
	"        Vote:\t\t\tACK (ACK)\n" +
	"    Node ID 2:\n" +
	"        Client address:\t\t::ffff:192.0.2.12:40002\n" +
	"        HB interval:\t\t8000ms\n" +
	"        Configuration version:\t42\n" +
	"        Configured node list:\t1, 2\n" +
	"        Ring ID:\t\t1.24\n" +
	"        Membership node list:\t1, 2\n" +
	"        Heuristics:\t\tUndefined (membership: Undefined, regular: Undefined)\n" +
	"        TLS active:\t\tYes (client certificate verified)\n" +
	"        Vote:\t\t\tNo change (ACK)\n" +
	"Cluster \"we \"ird\" \\name\":\n" +
	"    Algorithm:\t\tFifty-Fifty split\n" +
	"    Tie-breaker:\tNode with node ID 4\n" +
	"    Node ID 3:\n" +
	"        Client address:\t\t2001:db8::3:5001\n" +
	"        HB interval:\t\t10000ms\n" +
	"        Configured node list:\t3 (7), 4, 10 (9)\n" +
	"        Ring ID:\t\t3.abcdef0123\n" +
	"        Membership node list:\t3 (7)\n" +
	"        Heuristics:\t\tPass (membership: Pass, regular: Undefined)\n" +
	"        TLS active:\t\tNo\n" +
	"        Vote:\t\t\tNo change (NACK)\n" +
	"Cluster \"lms\":\n" +
	"    Algorithm:\t\tLMS\n" +
	"    Tie-breaker:\tNode with highest node ID\n" +
	"    Node ID 5:\n" +
	"        Client address:\t\t10.0.0.5:6000\n" +
	"        HB interval:\t\t12000ms\n" +
	"        Configured node list:\t5, 6\n" +
	"        Ring ID:\t\t5.2\n" +
	"        Membership node list:\t5\n" +
	"        Heuristics:\t\tPass (membership: Fail, regular: Pass)\n" +
	"        TLS active:\t\tNo\n" +
	"        Vote:\t\t\tNo change (ACK)\n" +
	"Cluster \"nul\":\n" +
	"    Algorithm:\t\tTest\n" +
	"    Tie-breaker:\tNode with lowest node ID\n" +
	"    Node ID 9:\n" +
	"        Client address:\t\t10.0.0.9:6001\n" +
	"        HB interval:\t\t1000ms\n" +
	"        Ring ID:\t\t0.0\n" +
	"        Heuristics:\t\tUndefined (membership: Undefined, regular: Undefined)\n" +
	"        TLS active:\t\tNo\n"

func TestRenderList(t *testing.T) {
	e := buildState(t)
	s := e.Status()
	require.Equal(t, wantListVerbose, RenderList(s, ServerInfo{}, true, ""))
	dual := ServerInfo{ListenAddr: &net.TCPAddr{IP: net.IPv6unspecified, Port: 5403}}

	require.Equal(t, "Cluster \"cl\":\n"+
		"    Algorithm:\t\tFifty-Fifty split (KAP Tie-breaker)\n"+
		"    Tie-breaker:\tNode with lowest node ID\n"+
		"    Node ID 1:\n"+
		"        Client address:\t\t::ffff:192.0.2.11:45102\n"+
		"        Configuration version:\t42\n"+
		"        Configured node list:\t1, 2\n"+
		"        Membership node list:\t1, 2\n"+
		"        Vote:\t\t\tACK (ACK)\n"+
		"    Node ID 2:\n"+
		"        Client address:\t\t::ffff:192.0.2.12:40002\n"+
		"        Configuration version:\t42\n"+
		"        Configured node list:\t1, 2\n"+
		"        Membership node list:\t1, 2\n"+
		"        Vote:\t\t\tNo change (ACK)\n",
		RenderList(s, dual, false, "cl"), "a dual-stack listener shows IPv4 clients v4-mapped, as upstream")

	require.Equal(t, "Cluster \"lms\":\n"+
		"    Algorithm:\t\tLMS\n"+
		"    Tie-breaker:\tNode with highest node ID\n"+
		"    Node ID 5:\n"+
		"        Client address:\t\t10.0.0.5:6000\n"+
		"        Configured node list:\t5, 6\n"+
		"        Membership node list:\t5\n"+
		"        Heuristics:\t\tPass\n"+
		"        Vote:\t\t\tNo change (ACK)\n", RenderList(s, ServerInfo{}, false, "lms"))

	require.Equal(t, "", RenderList(s, dual, true, "LMS"), "the filter is case-sensitive")
	require.Equal(t, "", RenderList(s, dual, true, "c"))
	require.Contains(t, RenderList(s, dual, false, "nul"), "Cluster \"nul\":\n", "names compare as C strings")
	require.Contains(t, RenderList(s, dual, false, `we "ird" \name`), "Tie-breaker:\tNode with node ID 4\n")
}

// TestStatusKeepsRawNames: the engine's copy keeps a name with a NUL in
// it whole; only the rendering cuts it as upstream's C strings do.
func TestStatusKeepsRawNames(t *testing.T) {
	s := buildState(t).Status()
	require.Len(t, s.Clusters, 4)
	require.Equal(t, "nul\x00hidden", s.Clusters[3].Name)
	require.Contains(t, RenderList(s, ServerInfo{}, false, ""), "Cluster \"nul\":\n")
}
