package adminipc

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Upstream's tlv_*_to_str names, including their texts for values the
// protocol does not define.

func tlsName(t wire.TLSSupported) string {
	switch t {
	case wire.TLSUnsupported, wire.TLSSupportedOn, wire.TLSRequired:
		return t.String()
	}
	return "Unhandled tls supported state"
}

func algorithmName(a wire.Algorithm) string {
	if a.Valid() {
		return a.String()
	}
	return "Unknown algorithm"
}

func heuristicsName(h wire.Heuristics) string {
	switch h {
	case wire.HeuristicsUndefined, wire.HeuristicsPass, wire.HeuristicsFail:
		return h.String()
	}
	return "Unknown heuristics type"
}

func voteName(v wire.Vote) string {
	switch v {
	case wire.VoteACK, wire.VoteNACK, wire.VoteAskLater, wire.VoteWaitForReply, wire.VoteNoChange:
		return v.String()
	}
	return "Unknown vote value"
}

// RenderStatus is the body of "status" / "status verbose" (qnetd_ipc_cmd_status).
func RenderStatus(s *engine.Status, info ServerInfo, verbose bool) string {
	var b strings.Builder
	host := info.Host
	if host == "" {
		host = "*"
	}
	fmt.Fprintf(&b, "QNetd address:\t\t\t%s:%d\n", cstr(host), uint16(info.Port))
	certReq := ""
	if s.TLS != wire.TLSUnsupported && s.ClientCertRequired {
		certReq = " (client certificate required)"
	}
	fmt.Fprintf(&b, "TLS:\t\t\t\t%s%s\n", tlsName(s.TLS), certReq)
	fmt.Fprintf(&b, "Connected clients:\t\t%d\n", s.Clients)
	fmt.Fprintf(&b, "Connected clusters:\t\t%d\n", len(s.Clusters))
	if !verbose {
		return b.String()
	}
	if info.MaxClients != 0 {
		fmt.Fprintf(&b, "Maximum allowed clients:\t%d\n", info.MaxClients)
	}
	// The sizes as given on the command line: the engine clamps them, but
	// upstream prints the setting.
	send, recv := info.MaxClientSendSize, info.MaxClientReceiveSize
	if send == 0 {
		send = int64(s.MaxSendSize)
	}
	if recv == 0 {
		recv = int64(s.MaxReceiveSize)
	}
	fmt.Fprintf(&b, "Maximum send/receive size:\t%d/%d bytes\n", send, recv)
	return b.String()
}

// RenderList is the body of "list [verbose] [cluster NAME]"
// (qnetd_ipc_cmd_list). cluster "" lists every cluster; otherwise only the
// one whose name is exactly cluster (compared as C strings, as upstream).
func RenderList(s *engine.Status, info ServerInfo, verbose bool, cluster string) string {
	var b strings.Builder
	mapped := dualStack(info.ListenAddr)
	filter := cstr(cluster)
	for _, cl := range s.Clusters {
		name := cstr(cl.Name)
		if filter != "" && filter != name {
			continue
		}
		fmt.Fprintf(&b, "Cluster \"%s\":\n", name)
		if len(cl.Nodes) > 0 {
			kap := ""
			if cl.KAP {
				kap = " (KAP Tie-breaker)"
			}
			fmt.Fprintf(&b, "    Algorithm:\t\t%s%s\n", algorithmName(cl.Algorithm), kap)
			b.WriteString("    Tie-breaker:\t")
			switch cl.TieBreaker.Mode {
			case wire.TieBreakerLowest, wire.TieBreakerHighest, wire.TieBreakerNodeID:
				b.WriteString(cl.TieBreaker.String())
			}
			b.WriteString("\n")
		}
		for i := range cl.Nodes {
			renderNode(&b, &cl.Nodes[i], mapped, verbose)
		}
	}
	return b.String()
}

func renderNode(b *strings.Builder, n *engine.NodeStatus, mapped, verbose bool) {
	fmt.Fprintf(b, "    Node ID %d:\n", n.NodeID)
	fmt.Fprintf(b, "        Client address:\t\t%s\n", upstreamAddr(n.Addr, mapped))
	if verbose {
		fmt.Fprintf(b, "        HB interval:\t\t%dms\n", n.HeartbeatMs)
	}
	if n.ConfigVersionSet {
		fmt.Fprintf(b, "        Configuration version:\t%d\n", n.ConfigVersion)
	}
	if len(n.ConfigNodes) > 0 {
		b.WriteString("        Configured node list:\t")
		writeNodeList(b, n.ConfigNodes)
		b.WriteString("\n")
	}
	if verbose {
		fmt.Fprintf(b, "        Ring ID:\t\t%x.%x\n", n.Ring.NodeID, n.Ring.Seq)
	}
	if len(n.MembershipNodes) > 0 {
		b.WriteString("        Membership node list:\t")
		writeNodeList(b, n.MembershipNodes)
		b.WriteString("\n")
	}
	if n.Heuristics != wire.HeuristicsUndefined || verbose {
		fmt.Fprintf(b, "        Heuristics:\t\t%s", heuristicsName(n.Heuristics))
		if verbose {
			fmt.Fprintf(b, " (membership: %s, regular: %s)",
				heuristicsName(n.MembershipHeuristics), heuristicsName(n.RegularHeuristics))
		}
		b.WriteString("\n")
	}
	if verbose {
		b.WriteString("        TLS active:\t\t")
		if n.TLSActive {
			b.WriteString("Yes")
			if n.CertVerified {
				b.WriteString(" (client certificate verified)")
			}
		} else {
			b.WriteString("No")
		}
		b.WriteString("\n")
	}
	if n.LastSentVote != wire.VoteUndefined {
		fmt.Fprintf(b, "        Vote:\t\t\t%s", voteName(n.LastSentVote))
		if n.LastSentAckNack != wire.VoteUndefined {
			fmt.Fprintf(b, " (%s)", voteName(n.LastSentAckNack))
		}
		b.WriteString("\n")
	}
}

// writeNodeList prints ids in message order, ", " between them, each
// followed by " (<data center id>)" when that is not 0.
func writeNodeList(b *strings.Builder, list []wire.NodeInfo) {
	for i, n := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatUint(uint64(n.NodeID), 10))
		if n.DataCenterID != 0 {
			fmt.Fprintf(b, " (%d)", n.DataCenterID)
		}
	}
}
