package status

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

//go:embed assets
var assets embed.FS

// Pairing is what the page shows to pair a Proxmox cluster.
type Pairing struct {
	Enabled      bool     `json:"enabled"`
	Host         string   `json:"host"`
	Port         int      `json:"port"`
	Command      string   `json:"command"`
	Fingerprints []string `json:"fingerprints"`
	SSHConfig    string   `json:"ssh_config,omitempty"`
	// Problem, when set, says why pairing is not available and what to do.
	Problem string `json:"problem,omitempty"`
	// PasswordOption: the pairing_password option is set.
	PasswordOption bool `json:"password_option"`
	// OneTime is the one-time pairing password (nil when pairing is off).
	// Ingress shows the page only to Home Assistant's admins.
	OneTime *OneTimePassword `json:"one_time,omitempty"`
	// Pcs is the pcs endpoint's card (nil when it is off). With the SSH
	// endpoint off, OneTime and PasswordOption are still set: the
	// one-time password is pcs's then.
	Pcs *PcsPairing `json:"pcs,omitempty"`
}

// PcsPairing is what the page shows for pairing a RHEL cluster with pcs:
// the commands and the tokens `pcs host auth` made, each with the cluster
// names it owns, to be revoked from here.
type PcsPairing struct {
	Host     string     `json:"host"`
	Port     int        `json:"port"`
	Commands []string   `json:"commands"`
	Tokens   []PcsToken `json:"tokens"`
	// Problem, when set, says why the token list cannot be shown.
	Problem string `json:"problem,omitempty"`
}

// PcsToken is one pcs token: its id (never the token), when and from
// where it was made, whether with the one-time password, and the cluster
// names it owns.
type PcsToken struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Addr     string    `json:"addr"`
	OneTime  bool      `json:"one_time,omitempty"`
	Clusters []string  `json:"clusters"`
}

// OneTimePassword is the pairing card's one-time password: its state
// (none, valid, used, expired), the password while it is valid, and when
// it expires or was used up by which key.
type OneTimePassword struct {
	State    string    `json:"state"`
	Password string    `json:"password,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
	UsedAt   time.Time `json:"used_at,omitzero"`
	UsedBy   string    `json:"used_by,omitempty"`
}

// View is the page's JSON: everything it shows.
type View struct {
	Generated time.Time     `json:"generated"`
	Server    ServerView    `json:"server"`
	Clusters  []ClusterView `json:"clusters"`
	// Gone is the clusters whose last node left in the last GoneFor,
	// newest first, at most MaxGone; apart from Clusters, whose readers
	// count the connected ones.
	Gone    []ClusterView `json:"gone,omitempty"`
	History []Event       `json:"history"`
	Pairing Pairing       `json:"pairing"`
}

// ServerView is the qnetd side.
type ServerView struct {
	Address          string `json:"address"`
	TLS              string `json:"tls"`
	ConnectedClients int    `json:"connected_clients"`
}

// ClusterView is one cluster.
type ClusterView struct {
	// Name is the cluster's name as ShortName shows it.
	Name       string `json:"name"`
	Algorithm  string `json:"algorithm"`
	TieBreaker string `json:"tie_breaker"`
	KAP        bool   `json:"kap"`
	HasVote    bool   `json:"has_vote"` // some node holds the qdevice vote
	// State is one of engine.States or StateGone; StateReason says why in
	// words, StateTitle is the card's headline.
	State       string     `json:"state"`
	StateReason string     `json:"state_reason"`
	StateTitle  string     `json:"state_title"`
	Nodes       []NodeView `json:"nodes"`
	// GoneSince is when the last node left, for a gone cluster.
	GoneSince time.Time `json:"gone_since,omitzero"`
}

// A cluster whose last node left is shown as gone for a while: the
// question "does my cluster have the vote?" has an answer then too.
// Clients choose cluster names, so the list is bounded.
const (
	// GoneFor is how long a gone cluster is shown.
	GoneFor = time.Hour
	// MaxGone is the most gone clusters shown.
	MaxGone = 10
)

// NodeView is one node as qnetd sees it.
type NodeView struct {
	ID uint32 `json:"id"`
	// Address is the node's address as PlainAddr shows it.
	Address string `json:"address"`
	TLS     string `json:"tls"`
	// Ring is the ring id as corosync-qnetd-tool shows it (hex node id
	// and sequence); MembershipChange says the same in words.
	Ring             string   `json:"ring"`
	MembershipChange string   `json:"membership_change"`
	Membership       []uint32 `json:"membership"`
	Config           []uint32 `json:"config"`
	Heuristics       string   `json:"heuristics"`
	HeuristicsText   string   `json:"heuristics_text"`
	// Vote is ACK, NACK, "waiting" or "none yet"; VoteText is "has the
	// vote", "no vote" or "waiting".
	Vote      string    `json:"vote"`
	VoteText  string    `json:"vote_text"`
	VoteSince time.Time `json:"vote_since,omitzero"`
}

func ids(refs []wire.NodeInfo) []uint32 {
	out := make([]uint32, len(refs))
	for i, r := range refs {
		out[i] = r.NodeID
	}
	return out
}

// BuildView turns the engine's status into the page's view; addr is the
// qnetd address to show.
func BuildView(s *engine.Status, addr string, rec *Recorder, p Pairing, now time.Time) View {
	v := buildView(s, addr, rec, p, now)
	v.History = rec.History()
	return v
}

// buildView is BuildView without the history, which the page takes from
// the Recorder as JSON.
func buildView(s *engine.Status, addr string, rec *Recorder, p Pairing, now time.Time) View {
	v := View{Generated: now, Pairing: p, Clusters: []ClusterView{},
		Server: ServerView{Address: PlainAddr(addr), TLS: tlsWords(s.TLS), ConnectedClients: s.Clients}}
	if s.TLS != wire.TLSUnsupported && s.ClientCertRequired {
		v.Server.TLS += ", client certificate required"
	}
	for _, c := range s.Clusters {
		cv := ClusterView{Name: ShortName(c.Name), Algorithm: c.Algorithm.String(), TieBreaker: c.TieBreaker.String(), KAP: c.KAP,
			State: string(c.State), StateReason: c.StateReason, Nodes: []NodeView{}}
		var voting []uint32
		for _, n := range c.Nodes {
			nv := NodeView{ID: n.NodeID, Address: PlainAddr(n.Addr), Ring: n.Ring.String(), MembershipChange: membershipWords(n.Ring),
				Membership: ids(n.MembershipNodes), Config: ids(n.ConfigNodes), Heuristics: n.Heuristics.String(),
				HeuristicsText: heuristicsWords(n.Heuristics), Vote: voteWord(n)}
			nv.VoteText = voteText(nv.Vote)
			switch {
			case n.CertVerified:
				nv.TLS = "TLS, certificate verified"
			case n.TLSActive:
				nv.TLS = "TLS"
			default:
				nv.TLS = "plain"
			}
			if nv.Vote == "ACK" || nv.Vote == "NACK" {
				nv.VoteSince = rec.VoteSince(c.Name, n.NodeID)
			}
			if nv.Vote == "ACK" {
				cv.HasVote = true
				voting = append(voting, n.NodeID)
			}
			cv.Nodes = append(cv.Nodes, nv)
		}
		if len(c.Nodes) == 0 {
			cv.State, cv.StateReason = StateGone, "no node of this cluster is connected to qnetd"
		}
		cv.StateTitle = stateTitle(cv.State, voting)
		v.Clusters = append(v.Clusters, cv)
	}
	return v
}

// voteWord is the vote the node holds: the last ACK/NACK, unless the last
// answer told it to stop voting.
func voteWord(n engine.NodeStatus) string {
	switch {
	case !n.Waiting():
		return n.LastSentAckNack.String()
	case n.LastSentVote == wire.VoteAskLater || n.LastSentVote == wire.VoteWaitForReply:
		return "waiting"
	}
	return "none yet"
}

// Config wires the page to the daemon.
type Config struct {
	// Status reads the engine's state (server.Server.Status).
	Status func(context.Context) (*engine.Status, error)
	// Address is the qnetd address shown on the page (host:port).
	Address  string
	Recorder *Recorder
	Pairing  func() Pairing
	// RenewOneTime makes a new one-time pairing password (the pairing
	// card's button); nil when pairing is off.
	RenewOneTime func() error
	// RevokePcsToken revokes the pcs token with the id and returns the
	// cluster names it released (the pcs card's button); nil when the pcs
	// endpoint is off. An unknown id is ErrNoSuchToken.
	RevokePcsToken func(id string) ([]string, error)
	Now            func() time.Time
	// AliveEvery is how often the event stream says that it is alive when
	// nothing changed (default DefaultAliveEvery): the page counts its
	// "updated ... ago" from the last event of either kind.
	AliveEvery time.Duration
}

// DefaultAliveEvery is how often the event stream says it is alive.
const DefaultAliveEvery = 5 * time.Second

// Page serves the status page and keeps its view current.
type Page struct {
	cfg  Config
	mu   sync.Mutex
	cur  []byte // JSON of the current view
	cmp  []byte // the view's JSON without the time it was generated and the history
	hver uint64 // the history's version in cur
	subs map[chan []byte]struct{}

	gmu     sync.Mutex
	present map[string]bool // the clusters of the last refresh, by shown name
	gone    []ClusterView   // newest first
}

// New creates the page; Run keeps it current.
func New(cfg Config) *Page {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Pairing == nil {
		cfg.Pairing = func() Pairing { return Pairing{} }
	}
	if cfg.AliveEvery <= 0 {
		cfg.AliveEvery = DefaultAliveEvery
	}
	return &Page{cfg: cfg, subs: map[chan []byte]struct{}{}}
}

// pageState is what the page shows besides the time and the history.
type pageState struct {
	Server   ServerView    `json:"server"`
	Clusters []ClusterView `json:"clusters"`
	Gone     []ClusterView `json:"gone,omitempty"`
	Pairing  Pairing       `json:"pairing"`
}

// trackGone notes the clusters that left since the last refresh and
// returns the gone ones to show.
func (p *Page) trackGone(clusters []ClusterView, now time.Time) []ClusterView {
	p.gmu.Lock()
	defer p.gmu.Unlock()
	present := make(map[string]bool, len(clusters))
	for _, c := range clusters {
		present[c.Name] = true
	}
	var left []ClusterView
	for name := range p.present {
		if !present[name] {
			left = append(left, ClusterView{Name: name, State: StateGone, StateTitle: stateTitle(StateGone, nil),
				StateReason: "no node of this cluster is connected to qnetd", Nodes: []NodeView{}, GoneSince: now})
		}
	}
	p.present = present
	if len(left) == 0 && len(p.gone) == 0 {
		return nil
	}
	slices.SortFunc(left, func(a, b ClusterView) int { return strings.Compare(a.Name, b.Name) })
	gone := make([]ClusterView, 0, len(left)+len(p.gone))
	gone = append(gone, left...)
	for _, g := range p.gone {
		if !present[g.Name] && now.Sub(g.GoneSince) < GoneFor && !slices.ContainsFunc(left, func(c ClusterView) bool { return c.Name == g.Name }) {
			gone = append(gone, g)
		}
	}
	p.gone = gone[:min(len(gone), MaxGone)]
	return p.gone
}

// Refresh reads the engine's status and pushes it to every listener if it
// changed.
func (p *Page) Refresh(ctx context.Context) error {
	st, err := p.cfg.Status(ctx)
	if err != nil {
		return err
	}
	// The history comes ready as JSON with a version: it is compared by
	// version and copied into the page, never marshalled again here.
	hist, hver := p.cfg.Recorder.HistoryJSON()
	v := buildView(st, p.cfg.Address, p.cfg.Recorder, p.cfg.Pairing(), p.cfg.Now())
	v.Gone = p.trackGone(v.Clusters, v.Generated)
	// Compare without the timestamp, so an unchanged state is not pushed.
	cmp, err := json.Marshal(pageState{Server: v.Server, Clusters: v.Clusters, Gone: v.Gone, Pairing: v.Pairing})
	if err != nil {
		return fmt.Errorf("status page: %w", err)
	}
	gen, err := json.Marshal(v.Generated)
	if err != nil {
		return fmt.Errorf("status page time: %w", err)
	}
	p.mu.Lock()
	changed := p.cur == nil || hver != p.hver || !bytes.Equal(p.cmp, cmp)
	if changed {
		data := make([]byte, 0, len(cmp)+len(hist)+len(gen)+32)
		data = append(data, `{"generated":`...)
		data = append(data, gen...)
		data = append(data, ',')
		data = append(data, cmp[1:len(cmp)-1]...) // pageState's fields
		data = append(data, `,"history":`...)
		data = append(data, hist...)
		data = append(data, '}')
		p.cur, p.cmp, p.hver = data, cmp, hver
		for ch := range p.subs {
			// Each listener holds at most one pending view: a slow browser
			// skips intermediate states but always gets the latest.
			select {
			case <-ch:
			default:
			}
			ch <- data
		}
	}
	p.mu.Unlock()
	return nil
}

// Run refreshes on every engine event and every interval (connections
// coming and going are not engine events) until ctx ends.
func (p *Page) Run(ctx context.Context, interval time.Duration) {
	wake, cancel := p.cfg.Recorder.Subscribe()
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, c := context.WithTimeout(ctx, 5*time.Second)
		_ = p.Refresh(rctx)
		c()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// Register adds the page's handlers to mux. All links are relative, as
// Home Assistant's ingress serves the page under a path of its own.
func (p *Page) Register(handle func(pattern string, h http.Handler)) {
	static, _ := fs.Sub(assets, "assets")
	handle("GET /{$}", http.FileServerFS(static))
	handle("GET /app.js", http.FileServerFS(static))
	handle("GET /style.css", http.FileServerFS(static))
	handle("GET /api/status", http.HandlerFunc(p.serveJSON))
	handle("GET /api/events", http.HandlerFunc(p.serveEvents))
	handle("POST /api/pairing/one-time-password", http.HandlerFunc(p.renewOneTime))
	handle("POST /api/pcs/revoke-token", http.HandlerFunc(p.revokePcsToken))
}

// ErrNoSuchToken is RevokePcsToken's answer for an id it does not know.
var ErrNoSuchToken = errors.New("no pcs token with that id")

// maxRevokeBody bounds the revoke request: {"id":"..."} with a 12-digit id.
const maxRevokeBody = 1 << 10

// revokePcsToken is the pcs card's "revoke" button: {"id": "..."} as JSON
// (the same rule as renewOneTime: only the page's own script can send it).
func (p *Page) revokePcsToken(w http.ResponseWriter, r *http.Request) {
	if p.cfg.RevokePcsToken == nil {
		http.Error(w, "the pcs endpoint is off: switch on the option pcs_enabled to manage its tokens", http.StatusConflict)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "send the request from the status page (Content-Type: application/json)", http.StatusUnsupportedMediaType)
		return
	}
	var req struct {
		ID string `json:"id"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRevokeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.ID == "" {
		http.Error(w, "want {\"id\": \"<token id>\"}", http.StatusBadRequest)
		return
	}
	if _, err := p.cfg.RevokePcsToken(req.ID); err != nil {
		if errors.Is(err, ErrNoSuchToken) {
			http.Error(w, "no pcs token with that id (revoked already?)", http.StatusNotFound)
			return
		}
		http.Error(w, "cannot revoke the token: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_ = p.Refresh(r.Context())
	p.serveJSON(w, r)
}

// renewOneTime is the pairing card's "make a new one-time password"
// button. Only a request the page's own script can make is taken: a JSON
// body, which a form on another site cannot send without the browser
// asking this server first (and it never says yes).
func (p *Page) renewOneTime(w http.ResponseWriter, r *http.Request) {
	if p.cfg.RenewOneTime == nil {
		http.Error(w, "pairing is off: switch on the option pairing_enabled to make a one-time pairing password", http.StatusConflict)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "send the request from the status page (Content-Type: application/json)", http.StatusUnsupportedMediaType)
		return
	}
	if err := p.cfg.RenewOneTime(); err != nil {
		http.Error(w, "cannot make a one-time pairing password: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_ = p.Refresh(r.Context())
	p.serveJSON(w, r)
}

func (p *Page) current(ctx context.Context) []byte {
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	if cur == nil {
		if err := p.Refresh(ctx); err == nil {
			p.mu.Lock()
			cur = p.cur
			p.mu.Unlock()
		}
	}
	return cur
}

func (p *Page) serveJSON(w http.ResponseWriter, r *http.Request) {
	cur := p.current(r.Context())
	if cur == nil {
		http.Error(w, "qnetd engine did not answer", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(cur)
}

// serveEvents streams the view as server-sent events: the current one at
// once, then every change. Between changes an "alive" event every
// AliveEvery tells the page that what it shows is still current; its data
// is the interval in milliseconds, from which the page knows when a
// missing one means the add-on does not answer. It also keeps proxies
// such as the ingress from closing an idle stream.
func (p *Page) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	ch := make(chan []byte, 1)
	p.mu.Lock()
	p.subs[ch] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.subs, ch)
		p.mu.Unlock()
	}()
	var last []byte
	send := func(data []byte) bool {
		if bytes.Equal(data, last) {
			// The view current() made for this listener reaches it
			// again as a change, since it subscribed first.
			return true
		}
		last = data
		// One data line: JSON from encoding/json has no raw line breaks.
		_, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", data)
		fl.Flush()
		return err == nil
	}
	alive := fmt.Sprintf("event: alive\ndata: %d\n\n", p.cfg.AliveEvery.Milliseconds())
	sendAlive := func() bool {
		_, err := io.WriteString(w, alive)
		fl.Flush()
		return err == nil
	}
	// The first alive event at once: the page learns the interval before
	// it may have to tell that the add-on does not answer.
	if cur := p.current(r.Context()); cur != nil && !send(cur) || !sendAlive() {
		return
	}
	keepalive := time.NewTicker(p.cfg.AliveEvery)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case data := <-ch:
			if !send(data) {
				return
			}
		case <-keepalive.C:
			if !sendAlive() {
				return
			}
		}
	}
}

// tlsWords is the server's TLS mode as the page says it.
func tlsWords(t wire.TLSSupported) string {
	switch t {
	case wire.TLSUnsupported:
		return "off"
	case wire.TLSSupportedOn:
		return "offered"
	case wire.TLSRequired:
		return "required"
	}
	return t.String()
}
