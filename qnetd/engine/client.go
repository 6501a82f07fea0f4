package engine

import (
	"strings"

	"github.com/qnetd-addon/qnetd/qnetd/certname"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Client is one connected corosync-qdevice (or anything that connected to
// the port). Exported fields are read-only for users of the engine.
type Client struct {
	ID   ClientID
	Addr string

	ClusterName  []byte
	TLSActive    bool
	CertVerified bool

	NodeID     uint32
	Algorithm  wire.Algorithm
	TieBreaker wire.TieBreaker
	Heartbeat  uint32 // ms
	KAP        bool

	ConfigList       []wire.NodeInfo
	ConfigVersion    uint64
	ConfigVersionSet bool
	MembershipList   []wire.NodeInfo
	QuorumList       []wire.NodeInfo
	Quorate          bool
	LastRingID       wire.RingID

	LastMembershipHeuristics wire.Heuristics
	LastRegularHeuristics    wire.Heuristics
	LastHeuristics           wire.Heuristics

	LastSentVote    wire.Vote
	LastSentAckNack wire.Vote

	engine      *Engine
	cluster     *Cluster
	preinitDone bool
	initDone    bool
	tlsStarting bool
	peerCert    *PeerCert
	dpdMs       uint32
	dropping    bool
	times       clientTimes // deadline.go

	// ffsplit
	ffState       ffClientState
	voteInfoSeq   uint32 // vote_info_expected_seq_num
	voteInfoRound uint64 // the cluster's decision round of that VOTE_INFO

	// lms, 2nodelms
	lastResult   wire.Vote
	timerVoteSeq uint32
}

// Initialised reports whether INIT succeeded.
func (c *Client) Initialised() bool { return c.initDone }

// Cluster returns the cluster the client joined (nil before INIT).
func (c *Client) Cluster() *Cluster { return c.cluster }

// DPDMs is the current dead-peer-detection interval.
func (c *Client) DPDMs() uint32 { return c.dpdMs }

// certMismatch checks a client certificate against the cluster name the
// client sent in PREINIT, as NSS's host name check does: when the
// certificate has a subjectAltName only its DNS names count, otherwise the
// subject CN, both case-insensitive. Unlike upstream, a certificate that
// carries a wildcard or a reserved name (the server's or the CA's, see
// qnetd/certname) is refused whatever the cluster: the signer refuses such
// names now, and one signed earlier must not let its holder join other
// clusters or pose as the server's name. It returns "" on success, else the
// reason in words.
func certMismatch(pc *PeerCert, cluster string) string {
	if pc == nil {
		return "client sent no certificate"
	}
	names, where := []string{pc.CommonName}, ""
	if pc.HasSAN {
		names, where = pc.DNSNames, " (subjectAltName)"
	}
	for _, n := range names {
		if certname.Wildcard(n) {
			return "certificate names the wildcard " + quote(n) + where + ", which qnetd does not accept from clients; " + pairAgain(cluster)
		}
		if r, ok := certname.Reserved(n); ok {
			return "certificate names " + quote(n) + where + ", a name reserved for this qnetd's " + quote(r) + " certificate; " + pairAgain(cluster)
		}
	}
	for _, n := range names {
		if strings.EqualFold(n, cluster) {
			return ""
		}
	}
	if pc.HasSAN {
		return "certificate names " + strings.Join(pc.DNSNames, ", ") + " (subjectAltName), not cluster " + quote(cluster)
	}
	return "certificate is for " + quote(pc.CommonName) + ", not for cluster " + quote(cluster)
}

func quote(s string) string { return "'" + s + "'" }

func pairAgain(cluster string) string {
	return "pair cluster " + quote(cluster) + " again to get a certificate for its own name"
}

// Cluster is every initialised client with the same (byte-exact) name.
type Cluster struct {
	Name    string
	Clients []*Client // ascending node id; equal ids after existing ones
	seq     uint64    // creation number: Engine.order is sorted by it

	// ffsplit
	ffState          ffClusterState
	ffRound          uint64 // counts decisions, to tell stale VOTE_INFO replies
	QuoratePartition []wire.NodeInfo
	decision         Decision
}

func (cl *Cluster) add(c *Client) {
	i := len(cl.Clients)
	for i > 0 && cl.Clients[i-1].NodeID > c.NodeID {
		i--
	}
	cl.Clients = append(cl.Clients, nil)
	copy(cl.Clients[i+1:], cl.Clients[i:])
	cl.Clients[i] = c
}

func (cl *Cluster) remove(c *Client) {
	for i, x := range cl.Clients {
		if x == c {
			cl.Clients = append(cl.Clients[:i], cl.Clients[i+1:]...)
			return
		}
	}
}

// joinError compares a joining client with the cluster's members in
// node-id order; the first one that differs decides.
func (cl *Cluster) joinError(c *Client) wire.ErrorCode {
	for _, o := range cl.Clients {
		switch {
		case o.TieBreaker.Mode != c.TieBreaker.Mode ||
			(c.TieBreaker.Mode == wire.TieBreakerNodeID && o.TieBreaker.NodeID != c.TieBreaker.NodeID):
			return wire.ErrTieBreakerDiffersFromOtherNodes
		case o.Algorithm != c.Algorithm:
			return wire.ErrAlgorithmDiffersFromOtherNodes
		case o.NodeID == c.NodeID:
			return wire.ErrDuplicateNodeID
		}
	}
	return 0
}

// byNodeID returns the first client of the cluster with that node id.
func (cl *Cluster) byNodeID(id uint32) *Client {
	for _, c := range cl.Clients {
		if c.NodeID == id {
			return c
		}
	}
	return nil
}

// KAPInForce reports whether every client has keep-active-partition on.
func (cl *Cluster) KAPInForce() bool {
	for _, c := range cl.Clients {
		if !c.KAP {
			return false
		}
	}
	return len(cl.Clients) > 0
}

func containsNode(list []wire.NodeInfo, id uint32) bool {
	for _, n := range list {
		if n.NodeID == id {
			return true
		}
	}
	return false
}

// algorithm is the per-algorithm hook set; each list/ask/heuristics hook
// returns an error code (sent as SERVER_ERROR) or the vote for the reply.
type algorithm interface {
	init(e *Engine, c *Client)
	configList(e *Engine, c *Client, nodes []wire.NodeInfo, initial bool) (wire.ErrorCode, wire.Vote)
	membership(e *Engine, c *Client, ring wire.RingID, nodes []wire.NodeInfo, h wire.Heuristics) (wire.ErrorCode, wire.Vote)
	quorum(e *Engine, c *Client, quorate bool, nodes []wire.NodeInfo) (wire.ErrorCode, wire.Vote)
	askForVote(e *Engine, c *Client) (wire.ErrorCode, wire.Vote)
	voteInfoReply(e *Engine, c *Client, seq uint32)
	heuristicsChange(e *Engine, c *Client, h wire.Heuristics) (wire.ErrorCode, wire.Vote)
	disconnect(e *Engine, c *Client, goingDown bool)
	timer(e *Engine, c *Client)
}

func algoFor(c *Client) algorithm {
	switch c.Algorithm {
	case wire.AlgoFFSplit:
		return ffsplit{}
	case wire.Algo2NodeLMS:
		return twoNodeLMS{}
	case wire.AlgoLMS:
		return lms{}
	}
	return testAlgo{}
}
