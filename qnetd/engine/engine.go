// Package engine is the qnetd decision engine: every protocol rule that
// does not need a socket. Events go in (a decoded message from a client, a
// disconnect, the time), a Batch comes out (send these messages, close
// those clients) with the engine's next deadline. It owns all
// cluster state and every client's deadlines (deadline.go), is driven by
// one goroutine and is deterministic: no sockets, clocks, goroutines or
// randomness. The server turns each batch into I/O and arms one timer
// for the next deadline.
//
// Where a vote is decided: ffsplit.go, lms.go, twonodelms.go, testalgo.go.
package engine

import (
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// ClientID names one TCP connection for the lifetime of the process.
type ClientID uint64

// Config holds the server settings the engine needs.
type Config struct {
	TLS                wire.TLSSupported // -s: off, on, req
	ClientCertRequired bool              // -c
	HeartbeatMin       uint32            // ms, inclusive
	HeartbeatMax       uint32            // ms, inclusive
	DPDEnabled         bool
	DPDCoefficient     float64
	MaxReceiveSize     uint32
	MaxSendSize        uint32
	KAPDefault         bool // keep_active_partition_tie_breaker before SET_OPTION
	// InitTimeout closes a connection that has not completed INIT that
	// long after it connected (0 = never; dead peer detection still
	// applies).
	InitTimeout time.Duration
}

// DefaultConfig is upstream's defaults.
func DefaultConfig() Config {
	return Config{
		TLS:                wire.TLSSupportedOn,
		ClientCertRequired: true,
		HeartbeatMin:       1000,
		HeartbeatMax:       120000,
		DPDEnabled:         true,
		DPDCoefficient:     1.5,
		MaxReceiveSize:     wire.DefaultMaxReceiveSize,
		MaxSendSize:        wire.DefaultMaxSendSize,
	}
}

// preInitHeartbeat is the heartbeat assumed before INIT: upstream uses this
// constant, not heartbeat_interval_max, so DPD is 180 s by default.
const preInitHeartbeat = 120000

// maxTimerMs is upstream's timer range; a larger DPD interval is refused.
const maxTimerMs = 18000000

// Batch is what the engine asks of the server after one event. The
// server sends first, then disconnects: every message to a client the
// engine drops was decided before the drop (later ones are not made).
type Batch struct {
	Sends       []Send
	Disconnects []Disconnect
	// StartTLS: the event's client sent STARTTLS and it was accepted; the
	// next bytes on its socket are a TLS ClientHello. Without it, a
	// STARTTLS message was refused.
	StartTLS bool
	// InitDone: the event's client completed INIT. The server limits how
	// many connections may be open without it.
	InitDone bool
	// Next is the engine's next deadline (0: none): the server calls Tick
	// then. Engine.Next says the same between events.
	Next time.Duration
}

// Send is one message to a client: Msg, or Raw when it is already
// encoded.
type Send struct {
	To  ClientID
	Msg *wire.Msg
	Raw []byte
}

// Disconnect closes a client's connection without a message.
type Disconnect struct {
	Client ClientID
	Reason DisconnectReason
}

// DisconnectReason says why the engine closes a connection.
type DisconnectReason uint8

const (
	// ReasonProtocol: the client broke a rule (STARTTLS where it is not
	// allowed, a certificate for another cluster).
	ReasonProtocol DisconnectReason = iota + 1
	// ReasonNackTimeout: an ffsplit NACK stayed unacknowledged past its
	// deadline.
	ReasonNackTimeout
	// ReasonDeadPeer: no message within the dead peer interval.
	ReasonDeadPeer
	// ReasonInitTimeout: no successful INIT within Config.InitTimeout.
	ReasonInitTimeout
	// ReasonShutdown: the server goes down.
	ReasonShutdown
)

// PeerCert is what the engine needs of a verified TLS client certificate.
type PeerCert struct {
	CommonName string
	DNSNames   []string // subjectAltName DNS names
	HasSAN     bool     // a subjectAltName extension is present
}

// Engine holds all clients and clusters.
type Engine struct {
	cfg      Config
	log      zerolog.Logger
	clients  map[ClientID]*Client
	clusters map[string]*Cluster
	order    []*Cluster // creation order, for status listings
	created  uint64     // clusters created so far: the next one's Cluster.seq
	out      Batch
	dropping []ClientID // disconnects decided during the current event
	now      time.Duration
	// deadlines orders the clients by their next deadline (deadline.go).
	deadlines deadlineHeap
	stats     Stats
	observer  Observer
}

// Stats counts what the engine did, for metrics.
type Stats struct {
	Decisions    uint64 // votes sent as VOTE_INFO
	NackTimeouts uint64
	DeadPeers    uint64
	CertRejected uint64
	ServerErrors uint64
}

// Observer is told about votes as they are sent and about ffsplit's
// partition choices; the status history and tests use it. It runs in the
// engine goroutine and must not call back into the engine; it gets plain
// values, never the engine's own state.
type Observer interface {
	VoteSent(cluster string, nodeID uint32, v wire.Vote, reason string)
	// Decided reports the partition an ffsplit cluster gave the vote to,
	// and why.
	Decided(cluster string, d Decision)
	// NodeLeft reports that a node left its cluster (its connection
	// closed or was dropped), after the votes its departure caused. What
	// an observer keeps per node must go with it: cluster names come from
	// clients, and an observer that never forgot them would grow with
	// every name ever seen.
	NodeLeft(cluster string, nodeID uint32)
}

// New creates an engine.
func New(cfg Config, log zerolog.Logger) *Engine {
	return &Engine{
		cfg:      cfg,
		log:      log,
		clients:  make(map[ClientID]*Client),
		clusters: make(map[string]*Cluster),
	}
}

// SetObserver installs o (nil removes it).
func (e *Engine) SetObserver(o Observer) { e.observer = o }

// Config returns the engine's settings.
func (e *Engine) Config() Config { return e.cfg }

func (e *Engine) take() Batch {
	e.finishDisconnects()
	out := e.out
	e.out = Batch{}
	out.Next, _ = e.Next()
	return out
}

func (e *Engine) send(c *Client, m *wire.Msg) {
	if !c.dropping {
		e.out.Sends = append(e.out.Sends, Send{To: c.ID, Msg: m})
	}
}

func (e *Engine) serverError(c *Client, req *wire.Msg, code wire.ErrorCode) {
	m := &wire.Msg{Type: wire.MsgServerError, ReplyErrorCode: code}
	m.Set(wire.OptReplyErrorCode)
	if req != nil && req.Has.Has(wire.OptSeq) {
		m.Seq = req.Seq
		m.Set(wire.OptSeq)
	}
	e.stats.ServerErrors++
	e.log.Debug().Str("addr", c.Addr).Uint16("code", uint16(code)).Str("error", code.String()).Msg("sending server error")
	e.send(c, m)
}

func (e *Engine) setDPD(c *Client, hb uint32) bool {
	if !e.cfg.DPDEnabled {
		return true
	}
	ms := uint64(e.cfg.DPDCoefficient * float64(hb))
	if ms < 1 || ms > maxTimerMs {
		return false
	}
	// A new interval starts over from now, as upstream's timer does.
	c.dpdMs = uint32(ms)
	e.alive(c)
	e.reschedule(c)
	return true
}

// armAlgo sets (or moves) the client's lms retry deadline.
func (e *Engine) armAlgo(c *Client, ms uint32) {
	c.times.algoAt = e.now + time.Duration(ms)*time.Millisecond
	e.reschedule(c)
}

func (e *Engine) stopAlgo(c *Client) {
	if c.times.algoAt != 0 {
		c.times.algoAt = 0
		e.reschedule(c)
	}
}

// armNack sets the client's ffsplit NACK deadline.
func (e *Engine) armNack(c *Client, d time.Duration) {
	c.times.nackAt = e.now + d
	e.reschedule(c)
}

func (e *Engine) stopNack(c *Client) {
	if c.times.nackAt != 0 {
		c.times.nackAt = 0
		e.reschedule(c)
	}
}

// scheduleDisconnect closes c once the current event is handled, so that
// votes queued to other clients in the same event still go out.
func (e *Engine) scheduleDisconnect(c *Client, r DisconnectReason, reason string) {
	if c.dropping {
		return
	}
	c.dropping = true
	e.log.Info().Str("addr", c.Addr).Str("cluster", string(c.ClusterName)).Uint32("node_id", c.NodeID).Str("reason", reason).Msg("disconnecting client")
	e.dropping = append(e.dropping, c.ID)
	e.reschedule(c)
	e.out.Disconnects = append(e.out.Disconnects, Disconnect{Client: c.ID, Reason: r})
}

func (e *Engine) finishDisconnects() {
	for len(e.dropping) > 0 {
		id := e.dropping[0]
		e.dropping = e.dropping[1:]
		if c := e.clients[id]; c != nil {
			e.remove(c, false)
		}
	}
}

// Connect registers a new TCP client. now is the clock's reading
// (deadline.go), as for every event.
func (e *Engine) Connect(now time.Duration, id ClientID, addr string) Batch {
	e.advance(now)
	c := &Client{ID: id, Addr: addr, Heartbeat: preInitHeartbeat, engine: e}
	c.KAP = e.cfg.KAPDefault
	e.clients[id] = c
	if e.cfg.InitTimeout > 0 {
		c.times.initBy = e.now + e.cfg.InitTimeout
	}
	e.setDPD(c, preInitHeartbeat)
	e.reschedule(c)
	return e.take()
}

// Disconnect handles a connection the server lost (EOF, error, full send
// queue). No message is sent to the client.
func (e *Engine) Disconnect(now time.Duration, id ClientID) Batch {
	e.advance(now)
	if c := e.clients[id]; c != nil {
		e.remove(c, false)
	}
	return e.take()
}

// Shutdown drops every client as upstream does when going down: the
// algorithms do not recompute votes.
func (e *Engine) Shutdown() Batch {
	ids := make([]ClientID, 0, len(e.clients))
	for id := range e.clients {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		e.out.Disconnects = append(e.out.Disconnects, Disconnect{Client: id, Reason: ReasonShutdown})
		e.remove(e.clients[id], true)
	}
	return e.take()
}

func (e *Engine) remove(c *Client, goingDown bool) {
	if c.initDone && c.cluster != nil {
		algoFor(c).disconnect(e, c, goingDown)
	}
	delete(e.clients, c.ID)
	e.deadlines.remove(c)
	if cl := c.cluster; cl != nil {
		// The counterpart of "client initialised": a node's connection is
		// an info line both ways (issue: node connects and disconnects).
		e.log.Info().Str("addr", c.Addr).Str("cluster", cl.Name).Uint32("node_id", c.NodeID).
			Bool("shutdown", goingDown).Msg("node disconnected")
		cl.remove(c)
		if e.observer != nil {
			e.observer.NodeLeft(cl.Name, c.NodeID)
		}
		if len(cl.Clients) == 0 {
			delete(e.clusters, cl.Name)
			e.unlist(cl)
		}
		c.cluster = nil
	}
	c.times = clientTimes{}
}

// unlist takes cl out of e.order in place. The order is by seq, so a
// binary search finds it: when thousands of clusters leave at once each
// costs a search and a move, not a scan and a new copy of the list.
func (e *Engine) unlist(cl *Cluster) {
	n := len(e.order)
	i := sort.Search(n, func(i int) bool { return e.order[i].seq >= cl.seq })
	if i == n || e.order[i] != cl {
		return
	}
	copy(e.order[i:], e.order[i+1:])
	e.order[n-1] = nil // not kept alive by the unused tail
	e.order = e.order[:n-1]
}

// FrameError reports a message the server skipped without decoding it
// (unknown type or too long): SERVER_ERROR with that code and no seq.
// A skipped message is no sign of life.
func (e *Engine) FrameError(now time.Duration, id ClientID, code wire.ErrorCode) Batch {
	e.advance(now)
	if c := e.clients[id]; c != nil {
		e.serverError(c, nil, code)
	}
	return e.take()
}

// DecodeError reports a framed message that failed to decode.
// It is a sign of life.
func (e *Engine) DecodeError(now time.Duration, id ClientID, derr *wire.DecodeError) Batch {
	e.advance(now)
	c := e.clients[id]
	if c == nil {
		return e.take()
	}
	e.alive(c)
	req := &wire.Msg{}
	if derr != nil && derr.SeqValid {
		req.Seq = derr.Seq
		req.Set(wire.OptSeq)
	}
	e.log.Debug().Str("addr", c.Addr).Err(derr).Msg("cannot decode message")
	e.serverError(c, req, wire.ErrErrorDecodingMsg)
	return e.take()
}

// TLSStarted records a completed TLS handshake; cert is nil when the client
// sent no certificate.
func (e *Engine) TLSStarted(now time.Duration, id ClientID, cert *PeerCert) Batch {
	e.advance(now)
	if c := e.clients[id]; c != nil {
		c.TLSActive = true
		c.peerCert = cert
		c.CertVerified = false
	}
	return e.take()
}

// Message handles one decoded message. raw is the whole received message
// (needed for the echo reply, which is a byte copy of the request).
func (e *Engine) Message(now time.Duration, id ClientID, m *wire.Msg, raw []byte) Batch {
	e.advance(now)
	c := e.clients[id]
	if c == nil {
		return e.take()
	}
	e.alive(c)
	switch {
	case m.Type == wire.MsgPreinit:
		e.preinit(c, m)
	case m.Type == wire.MsgStartTLS:
		e.startTLS(c, m)
	case m.Type.ServerOnly():
		e.serverError(c, m, wire.ErrUnexpectedMessage)
	default:
		if !e.tlsGate(c, m) {
			break
		}
		switch m.Type {
		case wire.MsgInit:
			e.init(c, m)
		case wire.MsgSetOption:
			e.setOption(c, m)
		case wire.MsgEchoRequest:
			e.echo(c, m, raw)
		case wire.MsgNodeList:
			e.nodeList(c, m)
		case wire.MsgAskForVote:
			e.askForVote(c, m)
		case wire.MsgVoteInfoReply:
			e.voteInfoReply(c, m)
		case wire.MsgHeuristicsChange:
			e.heuristicsChange(c, m)
		}
	}
	return e.take()
}

func (e *Engine) preinit(c *Client, m *wire.Msg) {
	if !m.Has.Has(wire.OptClusterName) {
		e.serverError(c, m, wire.ErrDoesntContainRequiredOption)
		return
	}
	c.ClusterName = m.ClusterName
	c.preinitDone = true
	r := &wire.Msg{Type: wire.MsgPreinitReply, TLSSupported: e.cfg.TLS}
	if e.cfg.ClientCertRequired {
		r.TLSClientCertRequired = 1
	}
	if m.Has.Has(wire.OptSeq) {
		r.Seq = m.Seq
		r.Set(wire.OptSeq)
	}
	r.Set(wire.OptTLSSupported).Set(wire.OptTLSClientCertRequired)
	e.send(c, r)
}

func (e *Engine) startTLS(c *Client, m *wire.Msg) {
	switch {
	case !c.preinitDone:
		e.serverError(c, m, wire.ErrPreinitRequired)
	case e.cfg.TLS == wire.TLSUnsupported:
		e.scheduleDisconnect(c, ReasonProtocol, "STARTTLS but TLS is off on this server")
	case c.TLSActive || c.tlsStarting:
		e.scheduleDisconnect(c, ReasonProtocol, "STARTTLS inside TLS")
	default:
		c.tlsStarting = true
		e.out.StartTLS = true
	}
}

// tlsGate applies the TLS rules to every message after PREINIT/STARTTLS.
// It returns false when the message must not be handled.
func (e *Engine) tlsGate(c *Client, m *wire.Msg) bool {
	switch e.cfg.TLS {
	case wire.TLSUnsupported:
		return true
	case wire.TLSRequired:
		if !c.TLSActive {
			e.serverError(c, m, wire.ErrTLSRequired)
			return false
		}
	}
	if c.TLSActive && e.cfg.ClientCertRequired && !c.CertVerified {
		if reason := certMismatch(c.peerCert, string(c.ClusterName)); reason != "" {
			e.stats.CertRejected++
			e.log.Warn().Str("addr", c.Addr).Str("cluster", string(c.ClusterName)).Str("reason", reason).Msg("client certificate refused")
			e.scheduleDisconnect(c, ReasonProtocol, reason)
			return false
		}
		c.CertVerified = true
	}
	return true
}

// init answers INIT: the client joins its cluster, or the reply says why
// not.
func (e *Engine) init(c *Client, m *wire.Msg) {
	code, hbOK := e.initError(c, m)
	// A second INIT on an initialised connection collides with itself
	// upstream (17). We answer the same but leave the client's state alone:
	// upstream overwrites node id and ring of a client already in a cluster.
	if c.initDone {
		if code == 0 {
			code = wire.ErrDuplicateNodeID
		}
	} else {
		if hbOK {
			c.Heartbeat = m.HeartbeatInterval
			e.setDPD(c, c.Heartbeat)
		}
		if code == 0 {
			code = e.join(c, m)
		}
	}
	if code != 0 {
		e.log.Info().Str("addr", c.Addr).Str("cluster", string(c.ClusterName)).Uint32("node_id", m.NodeID).
			Str("error", code.String()).Msg("init refused")
	}
	e.send(c, e.initReply(m, code))
}

// initError checks an INIT as upstream does: in a fixed order where the
// heartbeat and algorithm checks overwrite an earlier error (kept for
// fidelity). hbOK says the heartbeat is usable, which counts even when the
// INIT is refused.
func (e *Engine) initError(c *Client, m *wire.Msg) (code wire.ErrorCode, hbOK bool) {
	if !c.preinitDone {
		code = wire.ErrPreinitRequired
	}
	if code == 0 && (!m.Has.Has(wire.OptNodeID) || !m.Has.Has(wire.OptRingID)) {
		code = wire.ErrDoesntContainRequiredOption
	}
	switch hb := m.HeartbeatInterval; {
	case !m.Has.Has(wire.OptHeartbeatInterval):
		if code == 0 {
			code = wire.ErrDoesntContainRequiredOption
		}
	case hb < e.cfg.HeartbeatMin || hb > e.cfg.HeartbeatMax || !e.dpdFits(hb):
		code = wire.ErrInvalidHeartbeatInterval
	default:
		hbOK = true
	}
	if code == 0 && !m.Has.Has(wire.OptTieBreaker) {
		code = wire.ErrDoesntContainRequiredOption
	}
	switch {
	case !m.Has.Has(wire.OptAlgorithm):
		if code == 0 {
			code = wire.ErrDoesntContainRequiredOption
		}
	case !m.Algorithm.Valid():
		code = wire.ErrUnsupportedDecisionAlgorithm
	}
	return code, hbOK
}

// join puts a client whose INIT is valid into its cluster, creating the
// cluster for its first node, unless the cluster refuses it.
func (e *Engine) join(c *Client, m *wire.Msg) wire.ErrorCode {
	c.NodeID, c.LastRingID, c.TieBreaker, c.Algorithm = m.NodeID, m.RingID, m.TieBreaker, m.Algorithm
	c.KAP = e.cfg.KAPDefault
	cl := e.clusters[string(c.ClusterName)]
	if cl == nil {
		cl = &Cluster{Name: string(c.ClusterName), seq: e.created}
		e.created++
		e.clusters[cl.Name] = cl
		e.order = append(e.order, cl)
	} else if code := cl.joinError(c); code != 0 {
		return code
	}
	cl.add(c)
	c.cluster = cl
	algoFor(c).init(e, c)
	c.initDone = true
	c.times.initBy = 0
	e.reschedule(c)
	e.out.InitDone = true
	e.log.Info().Str("addr", c.Addr).Str("cluster", cl.Name).Uint32("node_id", c.NodeID).
		Str("algorithm", c.Algorithm.String()).Str("tie_breaker", c.TieBreaker.String()).
		Uint32("heartbeat_ms", c.Heartbeat).Bool("tls", c.TLSActive).Bool("cert_verified", c.CertVerified).Msg("client initialised")
	return 0
}

// initReply is INIT_REPLY with code; the lists of messages and options are
// sent only to a client that sent its own.
func (e *Engine) initReply(m *wire.Msg, code wire.ErrorCode) *wire.Msg {
	r := &wire.Msg{Type: wire.MsgInitReply, ReplyErrorCode: code,
		ServerMaxRequestSize: e.cfg.MaxReceiveSize, ServerMaxReplySize: e.cfg.MaxSendSize,
		SupportedAlgorithms: wire.AllAlgorithms()}
	r.Set(wire.OptReplyErrorCode).Set(wire.OptServerMaxRequestSize).Set(wire.OptServerMaxReplySize).Set(wire.OptSupportedAlgorithms)
	if m.Has.Has(wire.OptSupportedMessages) {
		r.SupportedMessages = wire.AllMsgTypes()
		r.Set(wire.OptSupportedMessages)
	}
	if m.Has.Has(wire.OptSupportedOptions) {
		r.SupportedOptions = wire.AllOpts()
		r.Set(wire.OptSupportedOptions)
	}
	if m.Has.Has(wire.OptSeq) {
		r.Seq = m.Seq
		r.Set(wire.OptSeq)
	}
	return r
}

func (e *Engine) dpdFits(hb uint32) bool {
	if !e.cfg.DPDEnabled {
		return true
	}
	ms := uint64(e.cfg.DPDCoefficient * float64(hb))
	return ms >= 1 && ms <= maxTimerMs
}

func (e *Engine) setOption(c *Client, m *wire.Msg) {
	if !c.initDone {
		e.serverError(c, m, wire.ErrInitRequired)
		return
	}
	if m.Has.Has(wire.OptHeartbeatInterval) {
		hb := m.HeartbeatInterval
		if hb < e.cfg.HeartbeatMin || hb > e.cfg.HeartbeatMax || !e.dpdFits(hb) {
			e.serverError(c, m, wire.ErrInvalidHeartbeatInterval)
			return
		}
		c.Heartbeat = hb
		e.setDPD(c, hb)
	}
	if m.Has.Has(wire.OptKAPTieBreaker) {
		c.KAP = m.KAPTieBreaker != 0
	}
	r := &wire.Msg{Type: wire.MsgSetOptionReply}
	if m.Has.Has(wire.OptSeq) {
		r.Seq = m.Seq
		r.Set(wire.OptSeq)
	}
	if m.Has.Has(wire.OptHeartbeatInterval) {
		r.HeartbeatInterval = c.Heartbeat
		r.Set(wire.OptHeartbeatInterval)
	}
	if m.Has.Has(wire.OptKAPTieBreaker) {
		if c.KAP {
			r.KAPTieBreaker = 1
		}
		r.Set(wire.OptKAPTieBreaker)
	}
	e.send(c, r)
}

func (e *Engine) echo(c *Client, m *wire.Msg, raw []byte) {
	if !c.initDone {
		e.serverError(c, m, wire.ErrInitRequired)
		return
	}
	out := append([]byte(nil), raw...)
	out[0], out[1] = 0, byte(wire.MsgEchoReply)
	e.out.Sends = append(e.out.Sends, Send{To: c.ID, Raw: out})
}

// storeVote records the vote a message carries, as upstream's message
// layer does. A vote that differs from the node's previous ACK or NACK is
// a decision: it is logged at info and told to the observer; why says
// what the vote answers.
func (e *Engine) storeVote(c *Client, v wire.Vote, why string) {
	c.LastSentVote = v
	if v != wire.VoteACK && v != wire.VoteNACK {
		return
	}
	prev := c.LastSentAckNack
	c.LastSentAckNack = v
	if prev == v {
		return
	}
	ev := e.log.Info().Str("cluster", string(c.ClusterName)).Uint32("node_id", c.NodeID).Str("addr", c.Addr).
		Str("algorithm", c.Algorithm.String()).Str("reason", why)
	if v == wire.VoteNACK {
		ev.Msg("node loses the qdevice vote")
	} else {
		ev.Msg("node gets the qdevice vote")
	}
	if e.observer != nil {
		e.observer.VoteSent(string(c.ClusterName), c.NodeID, v, why)
	}
}

func (e *Engine) nodeList(c *Client, m *wire.Msg) {
	switch {
	case !c.initDone:
		e.serverError(c, m, wire.ErrInitRequired)
		return
	case !m.Has.Has(wire.OptNodeListType), !m.Has.Has(wire.OptSeq):
		e.serverError(c, m, wire.ErrDoesntContainRequiredOption)
		return
	case m.NodeListType == wire.ListMembership && !m.Has.Has(wire.OptRingID),
		m.NodeListType == wire.ListQuorum && !m.Has.Has(wire.OptQuorate):
		e.serverError(c, m, wire.ErrDoesntContainRequiredOption)
		return
	}
	a := algoFor(c)
	var code wire.ErrorCode
	var vote wire.Vote
	heur := wire.HeuristicsUndefined
	if m.Has.Has(wire.OptHeuristics) {
		heur = m.Heuristics
	}
	switch m.NodeListType {
	case wire.ListInitialConfig, wire.ListChangedConfig:
		code, vote = a.configList(e, c, m.Nodes, m.NodeListType == wire.ListInitialConfig)
	case wire.ListMembership:
		code, vote = a.membership(e, c, m.RingID, m.Nodes, heur)
	case wire.ListQuorum:
		code, vote = a.quorum(e, c, m.Quorate != 0, m.Nodes)
	}
	if code != 0 {
		e.serverError(c, m, code)
		return
	}
	switch m.NodeListType {
	case wire.ListInitialConfig, wire.ListChangedConfig:
		c.ConfigList = m.Nodes
		c.ConfigVersion, c.ConfigVersionSet = m.ConfigVersion, m.Has.Has(wire.OptConfigVersion)
	case wire.ListMembership:
		c.MembershipList = m.Nodes
		c.LastRingID = m.RingID
		c.LastMembershipHeuristics, c.LastHeuristics = heur, heur
	case wire.ListQuorum:
		c.QuorumList = m.Nodes
		c.Quorate = m.Quorate != 0
	}
	e.storeVote(c, vote, listWhy[m.NodeListType])
	r := &wire.Msg{Type: wire.MsgNodeListReply, Seq: m.Seq, NodeListType: m.NodeListType, RingID: c.LastRingID, Vote: vote}
	r.Set(wire.OptSeq).Set(wire.OptNodeListType).Set(wire.OptRingID).Set(wire.OptVote)
	e.send(c, r)
}

func (e *Engine) askForVote(c *Client, m *wire.Msg) {
	switch {
	case !c.initDone:
		e.serverError(c, m, wire.ErrInitRequired)
		return
	case !m.Has.Has(wire.OptSeq):
		e.serverError(c, m, wire.ErrDoesntContainRequiredOption)
		return
	}
	code, vote := algoFor(c).askForVote(e, c)
	if code != 0 {
		e.serverError(c, m, code)
		return
	}
	e.storeVote(c, vote, "its request for a vote")
	r := &wire.Msg{Type: wire.MsgAskForVoteReply, Seq: m.Seq, Vote: vote, RingID: c.LastRingID}
	r.Set(wire.OptSeq).Set(wire.OptVote).Set(wire.OptRingID)
	e.send(c, r)
}

func (e *Engine) voteInfoReply(c *Client, m *wire.Msg) {
	switch {
	case !c.initDone:
		e.serverError(c, m, wire.ErrInitRequired)
		return
	case !m.Has.Has(wire.OptSeq):
		e.serverError(c, m, wire.ErrDoesntContainRequiredOption)
		return
	}
	algoFor(c).voteInfoReply(e, c, m.Seq)
}

func (e *Engine) heuristicsChange(c *Client, m *wire.Msg) {
	switch {
	case !c.initDone:
		e.serverError(c, m, wire.ErrInitRequired)
		return
	case !m.Has.Has(wire.OptSeq), !m.Has.Has(wire.OptHeuristics):
		e.serverError(c, m, wire.ErrDoesntContainRequiredOption)
		return
	}
	code, vote := algoFor(c).heuristicsChange(e, c, m.Heuristics)
	if code != 0 {
		e.serverError(c, m, code)
		return
	}
	e.storeVote(c, vote, "its heuristics change")
	c.LastRegularHeuristics, c.LastHeuristics = m.Heuristics, m.Heuristics
	r := &wire.Msg{Type: wire.MsgHeuristicsChangeReply, Seq: m.Seq, Vote: vote, RingID: c.LastRingID, Heuristics: m.Heuristics}
	r.Set(wire.OptSeq).Set(wire.OptVote).Set(wire.OptRingID).Set(wire.OptHeuristics)
	e.send(c, r)
}

// sendVoteInfo sends a server-initiated vote and records it as sent.
func (e *Engine) sendVoteInfo(c *Client, seq uint32, v wire.Vote, ring wire.RingID, reason string) {
	m := &wire.Msg{Type: wire.MsgVoteInfo, Seq: seq, Vote: v, RingID: ring}
	m.Set(wire.OptSeq).Set(wire.OptVote).Set(wire.OptRingID)
	e.stats.Decisions++
	e.log.Debug().Str("cluster", string(c.ClusterName)).Uint32("node_id", c.NodeID).Str("addr", c.Addr).
		Str("vote", v.String()).Str("ring", ring.String()).Str("reason", reason).Msg("vote info")
	e.storeVote(c, v, reason)
	e.send(c, m)
}

// listWhy says what a node list reply's vote answers, for logs and the
// history.
var listWhy = map[wire.NodeListType]string{
	wire.ListInitialConfig: "its configuration",
	wire.ListChangedConfig: "its changed configuration",
	wire.ListMembership:    "its membership",
	wire.ListQuorum:        "its quorum",
}
