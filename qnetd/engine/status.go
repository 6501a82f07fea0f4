package engine

import "github.com/qnetd-addon/qnetd/qnetd/wire"

// Status is a copy of everything readers outside the engine goroutine
// need: the IPC tool, the status page, metrics and Home Assistant. It
// shares no memory with the engine, so it may be kept and read freely
// while the engine goes on.
type Status struct {
	TLS                wire.TLSSupported
	ClientCertRequired bool
	MaxSendSize        uint32
	MaxReceiveSize     uint32
	// Clients counts every connected client, initialised or not.
	Clients int
	Stats   Stats
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
	// KAP is true when every client uses ffsplit with the keep active
	// partition tie-breaker on (upstream's "(KAP Tie-breaker)").
	KAP bool
	// QuoratePartition is the partition ffsplit last gave the vote to.
	QuoratePartition []wire.NodeInfo
	// Decision is ffsplit's last choice and why; zero before the first
	// decision and for the other algorithms, which decide per node.
	Decision Decision
	// State is the cluster's condition (state.go) and StateReason says
	// why, in words.
	State       State
	StateReason string
	// Nodes in node id order.
	Nodes []NodeStatus
}

// Decision is which partition of an ffsplit cluster got the vote.
type Decision struct {
	// Made is false until the cluster's first decision.
	Made bool
	// Winners are the node ids of the partition with the vote; nil when
	// no partition got it.
	Winners []uint32
	// Reason says why, in words.
	Reason string
}

// NodeStatus is one connected corosync-qdevice.
type NodeStatus struct {
	NodeID uint32
	// Addr is the client's address as the server gave it (host:port).
	Addr        string
	Algorithm   wire.Algorithm
	TieBreaker  wire.TieBreaker
	KAP         bool
	HeartbeatMs uint32

	ConfigVersion    uint64
	ConfigVersionSet bool
	ConfigNodes      []wire.NodeInfo
	Ring             wire.RingID
	MembershipNodes  []wire.NodeInfo
	QuorumNodes      []wire.NodeInfo
	Quorate          bool

	Heuristics           wire.Heuristics // the last one, membership or regular
	MembershipHeuristics wire.Heuristics
	RegularHeuristics    wire.Heuristics

	TLSActive    bool
	CertVerified bool

	// LastSentVote is the last vote sent (Undefined: none yet);
	// LastSentAckNack the last ACK or NACK.
	LastSentVote    wire.Vote
	LastSentAckNack wire.Vote
}

// Status copies the engine's state. Like every other method it must be
// called from the goroutine that drives the engine.
func (e *Engine) Status() *Status {
	s := &Status{
		TLS:                e.cfg.TLS,
		ClientCertRequired: e.cfg.ClientCertRequired,
		MaxSendSize:        e.cfg.MaxSendSize,
		MaxReceiveSize:     e.cfg.MaxReceiveSize,
		Clients:            len(e.clients),
		Stats:              e.stats,
		Clusters:           make([]ClusterStatus, 0, len(e.order)),
	}
	for _, cl := range e.order {
		s.Clusters = append(s.Clusters, cl.status())
	}
	return s
}

func (cl *Cluster) status() ClusterStatus {
	cs := ClusterStatus{
		Name:             cl.Name,
		QuoratePartition: cloneNodes(cl.QuoratePartition),
		Decision:         cl.decision,
		Nodes:            make([]NodeStatus, 0, len(cl.Clients)),
	}
	cs.Decision.Winners = append([]uint32(nil), cl.decision.Winners...)
	kap := true
	for i, c := range cl.Clients {
		if i == 0 {
			cs.Algorithm, cs.TieBreaker = c.Algorithm, c.TieBreaker
		}
		if c.Algorithm != wire.AlgoFFSplit || !c.KAP {
			kap = false
		}
		cs.Nodes = append(cs.Nodes, c.status())
	}
	// A cluster exists only while it has clients, so kap is never
	// vacuously true.
	cs.KAP = kap
	cs.assess()
	return cs
}

func (c *Client) status() NodeStatus {
	return NodeStatus{
		NodeID:               c.NodeID,
		Addr:                 c.Addr,
		Algorithm:            c.Algorithm,
		TieBreaker:           c.TieBreaker,
		KAP:                  c.KAP,
		HeartbeatMs:          c.Heartbeat,
		ConfigVersion:        c.ConfigVersion,
		ConfigVersionSet:     c.ConfigVersionSet,
		ConfigNodes:          cloneNodes(c.ConfigList),
		Ring:                 c.LastRingID,
		MembershipNodes:      cloneNodes(c.MembershipList),
		QuorumNodes:          cloneNodes(c.QuorumList),
		Quorate:              c.Quorate,
		Heuristics:           c.LastHeuristics,
		MembershipHeuristics: c.LastMembershipHeuristics,
		RegularHeuristics:    c.LastRegularHeuristics,
		TLSActive:            c.TLSActive,
		CertVerified:         c.CertVerified,
		LastSentVote:         c.LastSentVote,
		LastSentAckNack:      c.LastSentAckNack,
	}
}

func cloneNodes(list []wire.NodeInfo) []wire.NodeInfo {
	if len(list) == 0 {
		return nil
	}
	return append([]wire.NodeInfo(nil), list...)
}

// Cluster returns the cluster called name, or nil.
func (s *Status) Cluster(name string) *ClusterStatus {
	for i := range s.Clusters {
		if s.Clusters[i].Name == name {
			return &s.Clusters[i]
		}
	}
	return nil
}
