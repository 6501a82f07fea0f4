package adminipc

import (
	"context"
	"net"
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// ServerInfo is what the status output needs besides the engine: the
// daemon's command line as given.
type ServerInfo struct {
	// Host is the -l value; "" (not given) prints as "*".
	Host string
	Port int
	// ListenAddr is the bound TCP address, optional. When it is an IPv6
	// socket (dual stack), IPv4 clients are shown as ::ffff:a.b.c.d, as
	// upstream's NSPR socket reports them.
	ListenAddr net.Addr
	// MaxClients is -m (0 = unlimited, not shown).
	MaxClients int64
	// MaxClientSendSize and MaxClientReceiveSize are the advanced settings
	// as given; 0 means take the engine's.
	MaxClientSendSize    int64
	MaxClientReceiveSize int64
}

// Snapshot is a consistent copy of the server state, taken in the engine
// goroutine. It holds plain values only and may be kept and read freely.
type Snapshot struct {
	// Host is the -l value or "*".
	Host               string
	Port               int
	TLS                wire.TLSSupported
	ClientCertRequired bool
	// ConnectedClients counts every TCP connection, initialised or not.
	ConnectedClients int
	MaxClients       int64
	MaxSendSize      int64
	MaxReceiveSize   int64
	// Clusters in creation order.
	Clusters []ClusterStatus
}

// ClusterStatus is one cluster: every initialised client with its name.
type ClusterStatus struct {
	// Name is the raw cluster name (any bytes).
	Name string
	// Algorithm and TieBreaker are the first (lowest node id) client's.
	Algorithm  wire.Algorithm
	TieBreaker wire.TieBreaker
	// KAP is true when every client uses ffsplit with keep active
	// partition tie-breaker on (upstream's "(KAP Tie-breaker)").
	KAP bool
	// QuoratePartition is the partition ffsplit last gave the vote to.
	QuoratePartition []NodeRef
	// Nodes in node id order.
	Nodes []NodeStatus
}

// NodeRef is one entry of a node list.
type NodeRef struct {
	NodeID       uint32
	DataCenterID uint32 // 0 = none
	State        wire.NodeState
}

// NodeStatus is one connected corosync-qdevice.
type NodeStatus struct {
	NodeID uint32
	// Address is the client's address:port as upstream prints it (no
	// brackets around IPv6 addresses).
	Address     string
	Algorithm   wire.Algorithm
	TieBreaker  wire.TieBreaker
	KAP         bool
	HeartbeatMs uint32

	ConfigVersion    uint64
	ConfigVersionSet bool
	ConfigNodes      []NodeRef
	Ring             wire.RingID
	MembershipNodes  []NodeRef
	QuorumNodes      []NodeRef
	Quorate          bool

	Heuristics           wire.Heuristics // last (membership or regular)
	MembershipHeuristics wire.Heuristics
	RegularHeuristics    wire.Heuristics

	TLSActive    bool
	CertVerified bool

	// LastSentVote is the last vote sent (Undefined = none yet);
	// LastSentAckNack the last ACK or NACK.
	LastSentVote    wire.Vote
	LastSentAckNack wire.Vote
}

// Take copies the engine state. It must run in the engine goroutine.
func Take(e *engine.Engine, info ServerInfo) *Snapshot {
	cfg := e.Config()
	s := &Snapshot{
		Host:               info.Host,
		Port:               info.Port,
		TLS:                cfg.TLS,
		ClientCertRequired: cfg.ClientCertRequired,
		ConnectedClients:   e.NumClients(),
		MaxClients:         info.MaxClients,
		MaxSendSize:        info.MaxClientSendSize,
		MaxReceiveSize:     info.MaxClientReceiveSize,
	}
	if s.Host == "" {
		s.Host = "*"
	}
	if s.MaxSendSize == 0 {
		s.MaxSendSize = int64(cfg.MaxSendSize)
	}
	if s.MaxReceiveSize == 0 {
		s.MaxReceiveSize = int64(cfg.MaxReceiveSize)
	}
	mapped := dualStack(info.ListenAddr)
	for _, cl := range e.Clusters() {
		cs := ClusterStatus{Name: cl.Name, QuoratePartition: refs(cl.QuoratePartition)}
		kap := true
		for i, c := range cl.Clients {
			if i == 0 {
				cs.Algorithm, cs.TieBreaker = c.Algorithm, c.TieBreaker
			}
			if c.Algorithm != wire.AlgoFFSplit || !c.KAP {
				kap = false
			}
			cs.Nodes = append(cs.Nodes, NodeStatus{
				NodeID:               c.NodeID,
				Address:              upstreamAddr(c.Addr, mapped),
				Algorithm:            c.Algorithm,
				TieBreaker:           c.TieBreaker,
				KAP:                  c.KAP,
				HeartbeatMs:          c.Heartbeat,
				ConfigVersion:        c.ConfigVersion,
				ConfigVersionSet:     c.ConfigVersionSet,
				ConfigNodes:          refs(c.ConfigList),
				Ring:                 c.LastRingID,
				MembershipNodes:      refs(c.MembershipList),
				QuorumNodes:          refs(c.QuorumList),
				Quorate:              c.Quorate,
				Heuristics:           c.LastHeuristics,
				MembershipHeuristics: c.LastMembershipHeuristics,
				RegularHeuristics:    c.LastRegularHeuristics,
				TLSActive:            c.TLSActive,
				CertVerified:         c.CertVerified,
				LastSentVote:         c.LastSentVote,
				LastSentAckNack:      c.LastSentAckNack,
			})
		}
		// upstream's loop over an empty list finds nothing wrong; a cluster
		// without clients does not exist anyway
		cs.KAP = kap
		s.Clusters = append(s.Clusters, cs)
	}
	return s
}

// Collect takes a snapshot through do (the server's Do, which runs a
// function in the engine goroutine).
func Collect(ctx context.Context, do func(context.Context, func(*engine.Engine)) error, info ServerInfo) (*Snapshot, error) {
	var s *Snapshot
	if err := do(ctx, func(e *engine.Engine) { s = Take(e, info) }); err != nil {
		return nil, err
	}
	return s, nil
}

func refs(list []wire.NodeInfo) []NodeRef {
	if len(list) == 0 {
		return nil
	}
	out := make([]NodeRef, len(list))
	for i, n := range list {
		out[i] = NodeRef{NodeID: n.NodeID, DataCenterID: n.DataCenterID, State: n.State}
	}
	return out
}

// dualStack reports whether a listener bound to addr is an IPv6 socket, on
// which IPv4 peers arrive as v4-mapped addresses.
func dualStack(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP != nil && ta.IP.To4() == nil
}

// upstreamAddr formats "host:port" (Go's form, [v6]:port) as upstream's
// PR_NetAddrToString + ":port": no brackets, IPv4 on a dual-stack socket
// as ::ffff:a.b.c.d, no zone.
func upstreamAddr(addr string, mapped bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	if ip := net.ParseIP(host); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			if mapped || strings.Contains(host, ":") {
				host = "::ffff:" + v4.String()
			} else {
				host = v4.String()
			}
		} else {
			host = ip.String()
		}
	}
	return host + ":" + port
}
