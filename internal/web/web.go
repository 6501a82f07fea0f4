// Package web serves the add-on's HTTP side on the ingress port: /health
// (for Docker's HEALTHCHECK), /metrics (Prometheus) and the status page.
// Only loopback and the Supervisor's ingress proxy may connect: with host
// networking the port is reachable from the LAN otherwise.
package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/status"
	"github.com/qnetd-addon/qnetd/internal/version"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// IngressProxy is the address the Supervisor's ingress proxy connects from.
const IngressProxy = "172.30.32.2"

// Config wires the web side to the daemon.
type Config struct {
	// Status reads the engine's state (server.Server.Status).
	Status func(context.Context) (*engine.Status, error)
	// QnetdAddr is where the qnetd listener accepts (for the health check).
	QnetdAddr string
	// PKIRequired: TLS is on, so the certificate authority must be loaded.
	PKIRequired bool
	Log         zerolog.Logger
	// AllowAll lets any address in (tests); by default only loopback and
	// the ingress proxy.
	AllowAll bool
}

// Web is the HTTP handler set.
type Web struct {
	cfg       Config
	mux       *http.ServeMux
	reg       *prometheus.Registry
	pkiLoaded atomic.Bool
	qnetdAddr atomic.Value // string
	metrics   *Metrics
}

// New builds the handlers.
func New(cfg Config) *Web {
	w := &Web{cfg: cfg, mux: http.NewServeMux(), reg: prometheus.NewRegistry()}
	w.qnetdAddr.Store(cfg.QnetdAddr)
	w.metrics = newMetrics(cfg.Status)
	w.reg.MustRegister(w.metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w.mux.HandleFunc("GET /health", w.health)
	w.mux.Handle("GET /metrics", promhttp.HandlerFor(w.reg, promhttp.HandlerOpts{}))
	return w
}

// Metrics returns the counters the server's hooks feed.
func (w *Web) Metrics() *Metrics { return w.metrics }

// SetQnetdAddr sets the listener address the health check dials.
func (w *Web) SetQnetdAddr(addr string) { w.qnetdAddr.Store(addr) }

// SetPKILoaded records that the certificate authority is in use.
func (w *Web) SetPKILoaded(ok bool) { w.pkiLoaded.Store(ok) }

// Handle adds a handler (the status page registers itself here).
func (w *Web) Handle(pattern string, h http.Handler) { w.mux.Handle(pattern, h) }

// ServeHTTP applies the address filter.
func (w *Web) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if !w.cfg.AllowAll && !allowed(r.RemoteAddr) {
		http.Error(rw, "forbidden: only the Home Assistant ingress proxy and loopback may connect", http.StatusForbidden)
		return
	}
	w.mux.ServeHTTP(rw, r)
}

func allowed(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.Equal(net.ParseIP(IngressProxy)))
}

type healthReport struct {
	Status string            `json:"status"`
	Failed string            `json:"failed,omitempty"`
	Checks map[string]string `json:"checks"`
}

// health is 200 only when the listener accepts, the engine answers within
// a deadline and (with TLS) the certificate authority is loaded.
func (w *Web) health(rw http.ResponseWriter, r *http.Request) {
	rep := healthReport{Status: "ok", Checks: map[string]string{}}
	fail := func(check, why string) {
		rep.Checks[check] = why
		if rep.Failed == "" {
			rep.Status, rep.Failed = "fail", check
		}
	}
	var dialErr error
	for _, a := range dialable(w.qnetdAddr.Load().(string)) {
		var c net.Conn
		if c, dialErr = net.DialTimeout("tcp", a, 2*time.Second); dialErr == nil {
			c.Close()
			break
		}
	}
	if dialErr != nil {
		fail("listener", "qnetd port does not accept connections: "+dialErr.Error())
	} else {
		rep.Checks["listener"] = "ok"
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := w.cfg.Status(ctx); err != nil {
		fail("engine", "decision engine did not answer within 2s: "+err.Error())
	} else {
		rep.Checks["engine"] = "ok"
	}
	switch {
	case !w.cfg.PKIRequired:
		rep.Checks["pki"] = "not needed (TLS off)"
	case w.pkiLoaded.Load():
		rep.Checks["pki"] = "ok"
	default:
		fail("pki", "certificate authority not loaded")
	}
	rw.Header().Set("Content-Type", "application/json")
	if rep.Failed != "" {
		rw.WriteHeader(http.StatusServiceUnavailable)
		w.cfg.Log.Warn().Str("check", rep.Failed).Str("detail", rep.Checks[rep.Failed]).Msg("health check failed")
	}
	_ = json.NewEncoder(rw).Encode(rep)
}

// dialable turns a listen address into the addresses to dial, in order: a
// wildcard host becomes loopback. IPv4's loopback comes first even for
// "[::]", which Go binds for both families: a host or container with IPv6
// switched off has no ::1 (Docker's "--network none" has none), and ::1
// alone would report a listening daemon as down.
func dialable(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []string{addr}
	}
	ip := net.ParseIP(host)
	if host != "" && (ip == nil || !ip.IsUnspecified()) {
		return []string{addr}
	}
	if ip != nil && ip.To4() == nil {
		return []string{net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)}
	}
	return []string{net.JoinHostPort("127.0.0.1", port)}
}

// MaxLabelledClusters is how many clusters get series of their own, the
// oldest first. Without TLS any client can make up clusters; a series per
// made-up name would grow every scraper's database without bound.
const MaxLabelledClusters = 32

// Metrics is the Prometheus collector: engine state is read on scrape;
// server events are counted as they happen.
type Metrics struct {
	status        func(context.Context) (*engine.Status, error)
	tlsHandshakes *prometheus.CounterVec
	dpdTimeouts   prometheus.Counter
	badMessages   *prometheus.CounterVec
	buildInfo     *prometheus.Desc
	clients       *prometheus.Desc
	clusters      *prometheus.Desc
	unlabelled    *prometheus.Desc
	nodes         *prometheus.Desc
	votes         *prometheus.Desc
	decisions     *prometheus.Desc
	nackTimeouts  *prometheus.Desc
	certRefused   *prometheus.Desc
	serverErrors  *prometheus.Desc
	state         *prometheus.Desc
	hasVote       *prometheus.Desc
	nodeVote      *prometheus.Desc
	tlsMode       *prometheus.Desc
	tlsClients    *prometheus.Desc
	certExpiry    *prometheus.Desc
	// certs: the end of validity of the CA's and the server's certificate
	// (SetCertificates); verifiedOnly: label only clusters whose nodes all
	// showed a verified certificate (SetLabelVerifiedOnly).
	mu           sync.Mutex
	certs        map[string]time.Time
	verifiedOnly bool
	// last is the latest status copy and when it was taken: scrapes in a
	// loop (the metrics port is open to the LAN) share one copy a second
	// instead of each stopping the engine for one.
	last   *engine.Status
	lastAt time.Time
	now    func() time.Time
}

// statusEvery is how old a status copy a scrape may get.
const statusEvery = time.Second

// statusCopy is the engine's status, at most statusEvery old.
func (m *Metrics) statusCopy() (*engine.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.now != nil {
		now = m.now()
	}
	if m.last != nil && now.Sub(m.lastAt) < statusEvery && !now.Before(m.lastAt) {
		return m.last, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := m.status(ctx)
	if err != nil {
		return nil, err
	}
	m.last, m.lastAt = st, now
	return st, nil
}

// maxNodeSeries bounds the per-node series of one cluster.
const maxNodeSeries = 64

// SetCertificates gives the certificates' ends of validity, by name
// ("ca", "server").
func (m *Metrics) SetCertificates(notAfter map[string]time.Time) {
	m.mu.Lock()
	m.certs = notAfter
	m.mu.Unlock()
}

// SetLabelVerifiedOnly: with TLS, only clusters whose every node showed a
// certificate for the cluster get series of their own, so that a client
// without a paired certificate cannot put label values into the scrape.
func (m *Metrics) SetLabelVerifiedOnly(on bool) {
	m.mu.Lock()
	m.verifiedOnly = on
	m.mu.Unlock()
}

func newMetrics(status func(context.Context) (*engine.Status, error)) *Metrics {
	return &Metrics{
		status: status,
		tlsHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qnetd_tls_handshakes_total",
			Help: "TLS handshakes after STARTTLS, by result (ok, failed)."}, []string{"result"}),
		dpdTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "qnetd_heartbeat_timeouts_total",
			Help: "Clients dropped because they sent nothing within their dead peer interval."}),
		badMessages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qnetd_bad_messages_total",
			Help: "Messages refused before reaching the engine, by reason."}, []string{"reason"}),
		buildInfo: prometheus.NewDesc("qnetd_build_info", "Versions: add-on and the corosync-qnetd release the core matches.",
			[]string{"addon_version", "core_version"}, nil),
		clients:  prometheus.NewDesc("qnetd_connected_clients", "Open client connections, initialised or not.", nil, nil),
		clusters: prometheus.NewDesc("qnetd_clusters", "Clusters with at least one initialised node.", nil, nil),
		unlabelled: prometheus.NewDesc("qnetd_clusters_unlabelled",
			fmt.Sprintf("Clusters without series of their own: beyond the first %d, or shown under a name another cluster already has.", MaxLabelledClusters), nil, nil),
		nodes:        prometheus.NewDesc("qnetd_cluster_nodes", "Connected nodes per cluster.", []string{"cluster", "algorithm"}, nil),
		votes:        prometheus.NewDesc("qnetd_cluster_votes", "Nodes per cluster by the last ACK/NACK vote sent to them.", []string{"cluster", "vote"}, nil),
		decisions:    prometheus.NewDesc("qnetd_decisions_total", "Votes sent to nodes as VOTE_INFO.", nil, nil),
		nackTimeouts: prometheus.NewDesc("qnetd_nack_timeouts_total", "Nodes dropped for not acknowledging a NACK.", nil, nil),
		certRefused:  prometheus.NewDesc("qnetd_client_certificates_refused_total", "Clients whose certificate did not name their cluster.", nil, nil),
		serverErrors: prometheus.NewDesc("qnetd_server_errors_total", "SERVER_ERROR replies sent.", nil, nil),
		state: prometheus.NewDesc("qnetd_cluster_state", "The cluster's state (DOCS.md, Cluster states): 1 for the current one.",
			[]string{"cluster", "state"}, nil),
		hasVote: prometheus.NewDesc("qnetd_cluster_has_vote", "1 while a partition of the cluster holds the qdevice vote.",
			[]string{"cluster"}, nil),
		nodeVote: prometheus.NewDesc("qnetd_node_vote", "1 while the node holds the qdevice vote (its last answer was ACK).",
			[]string{"cluster", "node_id"}, nil),
		tlsMode: prometheus.NewDesc("qnetd_tls_mode", "The server's TLS mode (off, on, required): 1 for the current one.",
			[]string{"mode"}, nil),
		tlsClients: prometheus.NewDesc("qnetd_tls_clients", "Initialised clients by TLS: verified (a certificate for their cluster), tls (no certificate checked), plain.",
			[]string{"tls"}, nil),
		certExpiry: prometheus.NewDesc("qnetd_certificate_expiry_seconds", "End of validity of the add-on's certificates, in seconds since 1970.",
			[]string{"certificate"}, nil),
	}
}

// Hooks returns the server hooks that feed the counters.
func (m *Metrics) Hooks() server.Hooks {
	return server.Hooks{
		TLSHandshake: func(err error) {
			if err != nil {
				m.tlsHandshakes.WithLabelValues("failed").Inc()
			} else {
				m.tlsHandshakes.WithLabelValues("ok").Inc()
			}
		},
		BadMessage: func(reason string) { m.badMessages.WithLabelValues(reason).Inc() },
		DPDTimeout: func() { m.dpdTimeouts.Inc() },
	}
}

func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.tlsHandshakes.Describe(ch)
	m.dpdTimeouts.Describe(ch)
	m.badMessages.Describe(ch)
	for _, d := range []*prometheus.Desc{m.buildInfo, m.clients, m.clusters, m.unlabelled, m.nodes, m.votes, m.decisions, m.nackTimeouts, m.certRefused, m.serverErrors,
		m.state, m.hasVote, m.nodeVote, m.tlsMode, m.tlsClients, m.certExpiry} {
		ch <- d
	}
}

func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.tlsHandshakes.Collect(ch)
	m.dpdTimeouts.Collect(ch)
	m.badMessages.Collect(ch)
	ch <- prometheus.MustNewConstMetric(m.buildInfo, prometheus.GaugeValue, 1, version.AddOn, version.Core)
	st, err := m.statusCopy()
	if err != nil {
		return // the health check reports a stuck engine; metrics stay partial
	}
	ch <- prometheus.MustNewConstMetric(m.clients, prometheus.GaugeValue, float64(st.Clients))
	ch <- prometheus.MustNewConstMetric(m.clusters, prometheus.GaugeValue, float64(len(st.Clusters)))
	// Label values are names as the status page shows them: a raw name
	// may be 65 kB long or not UTF-8, which the exposition format refuses.
	// Two names can look alike once shortened; a repeated label set would
	// fail the whole scrape, so the second one is left out.
	m.mu.Lock()
	verifiedOnly, certs := m.verifiedOnly, m.certs
	m.mu.Unlock()
	for name, t := range certs {
		ch <- prometheus.MustNewConstMetric(m.certExpiry, prometheus.GaugeValue, float64(t.Unix()), name)
	}
	for _, mode := range []wire.TLSSupported{wire.TLSUnsupported, wire.TLSSupportedOn, wire.TLSRequired} {
		v := 0.0
		if st.TLS == mode {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.tlsMode, prometheus.GaugeValue, v, tlsModeName(mode))
	}
	byTLS := map[string]int{"verified": 0, "tls": 0, "plain": 0}
	labelled := make(map[string]bool, min(len(st.Clusters), MaxLabelledClusters))
	unlabelled := 0
	for i := range st.Clusters {
		cl := &st.Clusters[i]
		verified := true
		for _, n := range cl.Nodes {
			switch {
			case n.CertVerified:
				byTLS["verified"]++
			case n.TLSActive:
				byTLS["tls"]++
				verified = false
			default:
				byTLS["plain"]++
				verified = false
			}
		}
		name := status.ShortName(cl.Name)
		if len(labelled) >= MaxLabelledClusters || labelled[name] || (verifiedOnly && !verified) {
			unlabelled++
			continue
		}
		labelled[name] = true
		m.collectCluster(ch, name, cl)
	}
	for k, v := range byTLS {
		ch <- prometheus.MustNewConstMetric(m.tlsClients, prometheus.GaugeValue, float64(v), k)
	}
	ch <- prometheus.MustNewConstMetric(m.unlabelled, prometheus.GaugeValue, float64(unlabelled))
	stats := st.Stats
	ch <- prometheus.MustNewConstMetric(m.decisions, prometheus.CounterValue, float64(stats.Decisions))
	ch <- prometheus.MustNewConstMetric(m.nackTimeouts, prometheus.CounterValue, float64(stats.NackTimeouts))
	ch <- prometheus.MustNewConstMetric(m.certRefused, prometheus.CounterValue, float64(stats.CertRejected))
	ch <- prometheus.MustNewConstMetric(m.serverErrors, prometheus.CounterValue, float64(stats.ServerErrors))
}

// collectCluster sends one labelled cluster's series.
func (m *Metrics) collectCluster(ch chan<- prometheus.Metric, name string, cl *engine.ClusterStatus) {
	ack, nack, holders := 0, 0, 0
	for i := range cl.Nodes {
		n := &cl.Nodes[i]
		switch n.LastSentAckNack {
		case wire.VoteACK:
			ack++
		case wire.VoteNACK:
			nack++
		}
		v := 0.0
		if n.HoldsVote() {
			v = 1
			holders++
		}
		if i < maxNodeSeries {
			ch <- prometheus.MustNewConstMetric(m.nodeVote, prometheus.GaugeValue, v, name, strconv.FormatUint(uint64(n.NodeID), 10))
		}
	}
	ch <- prometheus.MustNewConstMetric(m.nodes, prometheus.GaugeValue, float64(len(cl.Nodes)), name, cl.Algorithm.String())
	ch <- prometheus.MustNewConstMetric(m.votes, prometheus.GaugeValue, float64(ack), name, "ACK")
	ch <- prometheus.MustNewConstMetric(m.votes, prometheus.GaugeValue, float64(nack), name, "NACK")
	has := 0.0
	if holders > 0 {
		has = 1
	}
	ch <- prometheus.MustNewConstMetric(m.hasVote, prometheus.GaugeValue, has, name)
	for _, s := range engine.States() {
		v := 0.0
		if cl.State == s {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, v, name, string(s))
	}
}

func tlsModeName(t wire.TLSSupported) string {
	switch t {
	case wire.TLSUnsupported:
		return "off"
	case wire.TLSSupportedOn:
		return "on"
	}
	return "required"
}
