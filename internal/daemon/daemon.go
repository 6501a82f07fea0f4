// Package daemon assembles a running qnetd from one Config: the protocol
// server and its certificate authority, the local IPC socket that
// corosync-qnetd-tool talks to, and, where the add-on asks for them, the
// status page with /health and /metrics and the SSH pairing endpoint.
// The corosync-qnetd command line and the add-on only translate their
// inputs (flags, options.json) into a Config, so that a fix here reaches
// both.
package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/haentities"
	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/pcsd"
	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/internal/status"
	"github.com/qnetd-addon/qnetd/internal/version"
	"github.com/qnetd-addon/qnetd/internal/web"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Config is everything a qnetd daemon needs, however it was started.
type Config struct {
	// Server is the protocol server: engine settings, listen address,
	// limits. Its Log, Hooks and Observer are set here.
	Server server.Config
	// Listener, optional, is an already bound qnetd socket; without it
	// Server's address is bound.
	Listener net.Listener
	// PKIDir holds the certificate authority, created on first start.
	// It is loaded unless TLS is off.
	PKIDir string
	// LockFile, optional, is upstream's pid file, locked while running.
	LockFile string
	// IPC is the local socket for corosync-qnetd-tool (Path is required).
	// Its Status, Shutdown and Log are set here, and so are the parts of
	// Info that follow from Server and the bound listener.
	IPC adminipc.Config
	// Web, optional: the status page, /health and /metrics.
	Web *WebConfig
	// Pairing, optional: the SSH endpoint for pvecm qdevice setup.
	Pairing *PairingConfig
	// Pcsd, optional: the pcsd-compatible endpoint for pcs (RHEL). It
	// shares the pairing endpoint's password check when both are on.
	Pcsd *PcsdConfig
	// Metrics, optional (needs Web): /metrics alone on a port of its own,
	// for Prometheus on the LAN.
	Metrics *MetricsConfig
	// Entities, optional: Home Assistant entities over MQTT discovery or
	// the REST API. Its Status, Wake and CertExpiry are set here.
	Entities *haentities.Config
	// StateHold is how long a cluster's state change must last before it
	// is a Home Assistant event (statewatch); every change is logged at
	// once.
	StateHold time.Duration
	// User, optional: the daemon switches to this user once every port is
	// bound (binding the pairing port 22 is all root is needed for).
	User string
	Log  zerolog.Logger
}

// WebConfig is the HTTP side: the status page with /health and /metrics.
type WebConfig struct {
	// Addr is the listen address (host:port); Listener, when set, is
	// used instead.
	Addr     string
	Listener net.Listener
	// HistoryFile, optional, keeps the page's decision history across
	// restarts (status.HistoryFile: written at most once a minute and at
	// shutdown).
	HistoryFile string
}

// MetricsConfig is the metrics port (add-on option metrics_port).
type MetricsConfig struct {
	// Port is where it listens on every address; Listener, when set, is
	// used instead.
	Port     int
	Listener net.Listener
	// Token, when set, is the bearer token every scrape must send.
	Token string
}

// PairingConfig is the SSH pairing endpoint.
type PairingConfig struct {
	// Endpoint is the endpoint's configuration; its Tool and Log are set
	// here.
	Endpoint pairing.Config
	// Port is where it listens on every address; Listener, when set, is
	// used instead.
	Port     int
	Listener net.Listener
}

// PcsdConfig is the pcsd-compatible endpoint.
type PcsdConfig struct {
	// Endpoint is the endpoint's configuration; its Authority, Gate and
	// Log are set here.
	Endpoint pcsd.Config
	// Port is where it listens on every address; Listener, when set, is
	// used instead.
	Port     int
	Listener net.Listener
	// PublicHost is the address the status page puts in the pcs
	// commands.
	PublicHost string
}

// Daemon is a started qnetd.
type Daemon struct {
	cfg  Config
	log  zerolog.Logger
	srv  *server.Server
	ln   net.Listener
	ipc  *adminipc.Server
	pair *pairing.Server
	pln  net.Listener
	pcs  *pcsd.Server
	cln  net.Listener
	gate *pairing.Gate
	web  *http.Server
	wln  net.Listener
	met  *http.Server
	mln  net.Listener
	page *status.Page
	rec  *status.Recorder
	hist *status.HistoryFile
	pki  *pki.Authority
	// pairingProblem says why pairing is off although it was asked for.
	pairingProblem string
	ipcStop        chan struct{}
	served         chan error
	undo           []func() // closes what Start opened, newest last
}

// Run starts the daemon and serves until ctx ends, a shutdown is asked
// for over the local socket, or the server fails.
func Run(ctx context.Context, cfg Config) error {
	d, err := Start(cfg)
	if err != nil {
		return err
	}
	return d.Wait(ctx)
}

// Start binds every socket, drops privileges and starts serving. On error
// everything it opened is closed again.
func Start(cfg Config) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: cfg.Log, ipcStop: make(chan struct{}), served: make(chan error, 1)}
	if err := d.start(); err != nil {
		d.closeAll()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start() error {
	cfg := d.cfg
	scfg := cfg.Server
	scfg.Log = cfg.Log
	authority, err := d.loadTLS(&scfg)
	if err != nil {
		return err
	}
	if err := d.lockAndRaiseLimits(); err != nil {
		return err
	}
	w, rec := d.newWeb(&scfg, authority)
	d.rec, d.pki = rec, authority
	if err := d.startServer(scfg); err != nil {
		return err
	}
	if err := d.startSides(w, rec, authority); err != nil {
		return err
	}
	if err := dropPrivileges(cfg.User, cfg.Log, cfg.IPC.Path); err != nil {
		return err
	}
	d.serve()
	d.logStarted(scfg)
	return nil
}

// loadTLS loads the certificate authority when TLS is on and puts its
// server configuration into scfg; optional TLS is warned about.
func (d *Daemon) loadTLS(scfg *server.Config) (*pki.Authority, error) {
	log := d.cfg.Log
	if scfg.Engine.TLS == wire.TLSSupportedOn {
		log.Warn().Str("tls", scfg.Engine.TLS.String()).
			Msg("TLS is optional: clients that do not start TLS are accepted without a certificate and may join any cluster; -s req refuses them")
	}
	if scfg.Engine.TLS == wire.TLSUnsupported {
		return nil, nil
	}
	a, err := LoadAuthority(d.cfg.PKIDir, log)
	if err != nil {
		return nil, fmt.Errorf("TLS with certificates in %s: %w", d.cfg.PKIDir, err)
	}
	scfg.TLS = a.TLSConfig(scfg.Engine.ClientCertRequired)
	return a, nil
}

// lockAndRaiseLimits takes the lock file and raises the open file limit
// (a failure to raise it is only logged).
func (d *Daemon) lockAndRaiseLimits() error {
	unlock, err := lockPIDFile(d.cfg.LockFile)
	if err != nil {
		return err
	}
	d.undo = append(d.undo, unlock)
	if limit, err := raiseFDLimit(); err != nil {
		d.cfg.Log.Warn().Err(err).Msg("cannot raise the open file limit")
	} else {
		d.cfg.Log.Info().Uint64("open_files", limit).Msg("open file limit")
	}
	return nil
}

// newWeb builds the web side when it is configured: it reads the server's
// status and feeds the server's hooks (through scfg), and the closure over
// d breaks that cycle. The decision history is loaded from its file.
func (d *Daemon) newWeb(scfg *server.Config, authority *pki.Authority) (*web.Web, *status.Recorder) {
	cfg, log := d.cfg, d.cfg.Log
	if cfg.Web == nil {
		return nil, nil
	}
	w := web.New(web.Config{Status: func(ctx context.Context) (*engine.Status, error) { return d.srv.Status(ctx) },
		PKIRequired: scfg.Engine.TLS != wire.TLSUnsupported, Log: log})
	w.SetPKILoaded(authority != nil)
	rec := status.NewRecorder(time.Now, time.Hour)
	scfg.Hooks, scfg.Observer = w.Metrics().Hooks(), rec
	if cfg.Web.HistoryFile != "" {
		hist := status.NewHistoryFile(cfg.Web.HistoryFile, rec, log)
		hist.Load()
		d.hist = hist
		// Undone after the server (newest first): the last save has
		// the decisions up to the end.
		d.undo = append(d.undo, func() {
			if err := hist.Save(time.Now()); err != nil {
				log.Warn().Err(err).Msg("cannot save the status page's decision history")
			}
		})
	}
	return w, rec
}

// startServer creates the qnetd server and its listener (unless the
// configuration brings one).
func (d *Daemon) startServer(scfg server.Config) error {
	d.srv = server.New(scfg)
	// The server first, so that its accept loop knows it is closing when
	// the listener goes; a listener it never served is closed after it.
	d.undo = append(d.undo, func() {
		d.srv.Shutdown()
		if d.ln != nil {
			d.ln.Close()
		}
	})
	d.ln = d.cfg.Listener
	if d.ln != nil {
		return nil
	}
	var err error
	d.ln, err = d.srv.Listen()
	return err
}

// startSides binds everything beside the qnetd port: the IPC socket, the
// pairing and pcsd endpoints, the status page and the metrics port.
func (d *Daemon) startSides(w *web.Web, rec *status.Recorder, authority *pki.Authority) error {
	if err := d.startIPC(); err != nil {
		return err
	}
	if err := d.startPairing(); err != nil {
		return err
	}
	if err := d.startPcsd(authority); err != nil {
		return err
	}
	if w == nil {
		if d.cfg.Metrics != nil {
			return errors.New("a metrics port needs the web side (Config.Web)")
		}
		return nil
	}
	if err := d.startWeb(w, rec); err != nil {
		return err
	}
	return d.startMetrics(w)
}

// serve starts serving on every socket bound.
func (d *Daemon) serve() {
	go func() { _ = d.ipc.Serve() }()
	if d.pair != nil {
		go func() { _ = d.pair.Serve(d.pln) }()
	}
	if d.pcs != nil {
		go func() { _ = d.pcs.Serve(d.cln) }()
	}
	if d.web != nil {
		go func() { _ = d.web.Serve(d.wln) }()
	}
	if d.met != nil {
		go func() { _ = d.met.Serve(d.mln) }()
	}
	go func() { d.served <- d.srv.Serve(d.ln) }()
}

// logStarted logs the start with every address the daemon serves on.
func (d *Daemon) logStarted(scfg server.Config) {
	ev := d.cfg.Log.Info().Str("version", version.Core).Str("addr", d.ln.Addr().String()).
		Str("tls", scfg.Engine.TLS.String()).Bool("client_cert_required", scfg.Engine.ClientCertRequired).
		Int("max_clients", scfg.MaxClients).Str("local_socket_file", d.cfg.IPC.Path)
	for _, side := range []struct {
		name string
		ln   net.Listener
	}{{"status_page", d.wln}, {"pairing", d.pln}, {"pcsd", d.cln}, {"metrics", d.mln}} {
		if side.ln != nil {
			ev = ev.Str(side.name, side.ln.Addr().String())
		}
	}
	ev.Msg("corosync-qnetd started")
}

func (d *Daemon) startIPC() error {
	c := d.cfg.IPC
	c.Status, c.Log = d.srv.Status, d.log
	c.Shutdown = func() { close(d.ipcStop) }
	c.Info.Host = d.cfg.Server.Host
	c.Info.Port = d.cfg.Server.Port
	if ta, ok := d.ln.Addr().(*net.TCPAddr); ok {
		c.Info.Port = ta.Port
	}
	c.Info.ListenAddr = d.ln.Addr()
	c.Info.MaxClients = int64(d.cfg.Server.MaxClients)
	ipc, err := adminipc.Listen(c)
	if err != nil {
		return fmt.Errorf("local IPC socket %s (local_socket_file): %w", c.Path, err)
	}
	d.ipc = ipc
	d.undo = append(d.undo, func() { ipc.Close() })
	return nil
}

func (d *Daemon) startPairing() error {
	pc := d.cfg.Pairing
	if pc == nil {
		return nil
	}
	// The port first: when it is taken, pairing stays off and nothing
	// else of it was made.
	ln, taken, err := bindEndpoint(pc.Listener, pc.Port, "pairing endpoint", "pairing_port")
	if err != nil {
		return err
	}
	if taken != nil {
		// The vote matters more than pairing: qnetd runs on, and the
		// log and the status page say what to do.
		d.pairingProblem = fmt.Sprintf("The pairing port %d is taken, most likely by an SSH add-on, so pairing is off. "+
			"Set the option pairing_port to a free port (for example 2222), restart this add-on, and add the "+
			"~/.ssh/config stanza it then shows to the Proxmox node before running pvecm qdevice setup.", pc.Port)
		d.log.Error().Int("pairing_port", pc.Port).Err(taken).
			Msg("pairing is off: its port is taken (an SSH add-on?); set pairing_port to a free port such as 2222 and restart; the status page shows the next steps")
		return nil
	}
	d.undo = append(d.undo, func() { ln.Close() })
	ec := pc.Endpoint
	ec.Log = d.log
	if ec.Gate == nil {
		g, err := d.passwordGate()
		if err != nil {
			return fmt.Errorf("pairing endpoint: %w", err)
		}
		ec.Gate = g
	}
	sock := d.cfg.IPC.Path
	ec.Tool = func(args []string, stdout, stderr io.Writer) int {
		return adminipc.ToolMain(append([]string{"-p", sock}, args...), stdout, stderr)
	}
	pair, err := pairing.New(ec)
	if err != nil {
		return fmt.Errorf("pairing endpoint: %w", err)
	}
	d.pair, d.pln = pair, ln
	d.undo = append(d.undo, func() { pair.Close() })
	return nil
}

// bindEndpoint binds an optional endpoint's port, unless given is already
// bound. taken is set when another program holds the port: the endpoint
// stays off and qnetd runs on; err is any other failure.
func bindEndpoint(given net.Listener, port int, what, option string) (ln net.Listener, taken, err error) {
	if given != nil {
		return given, nil, nil
	}
	ln, err = net.Listen("tcp", ":"+strconv.Itoa(port))
	switch {
	case err == nil:
		return ln, nil, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, err, nil
	}
	return nil, nil, fmt.Errorf("%s on port %d (option %s): %w", what, port, option, err)
}

// passwordGate is the password check the pairing and pcsd endpoints
// share, made once: one budget of failed passwords covers both.
func (d *Daemon) passwordGate() (*pairing.Gate, error) {
	if d.gate != nil {
		return d.gate, nil
	}
	var err error
	if pc := d.cfg.Pairing; pc != nil {
		d.gate, err = pairing.NewGate(pc.Endpoint.DataDir, pc.Endpoint.Password, pc.Endpoint.Now)
	} else {
		c := d.cfg.Pcsd.Endpoint
		d.gate, err = pairing.NewGate(c.DataDir, c.Password, c.Now)
	}
	return d.gate, err
}

// startPcsd binds the pcsd endpoint's port and makes the endpoint. Its
// TLS certificate is our CA's server certificate (authority, loaded here
// when qnetd itself runs without TLS).
func (d *Daemon) startPcsd(authority *pki.Authority) error {
	pc := d.cfg.Pcsd
	if pc == nil {
		return nil
	}
	ln, taken, err := bindEndpoint(pc.Listener, pc.Port, "pcsd endpoint", "pcs_port")
	if err != nil {
		return err
	}
	if taken != nil {
		// As for pairing: the vote matters more; the log says what to do.
		d.log.Error().Int("pcs_port", pc.Port).Err(taken).
			Msg("the pcsd endpoint for pcs is off: its port is taken; free it or set pcs_port to a free port (then pcs host auth needs addr=IP:PORT) and restart")
		return nil
	}
	d.undo = append(d.undo, func() { ln.Close() })
	if authority == nil {
		a, err := LoadAuthority(d.cfg.PKIDir, d.log)
		if err != nil {
			return fmt.Errorf("pcsd endpoint: certificates in %s: %w", d.cfg.PKIDir, err)
		}
		authority = a
	}
	ec := pc.Endpoint
	ec.Log, ec.Authority = d.log, authority
	if ec.Gate == nil {
		g, err := d.passwordGate()
		if err != nil {
			return fmt.Errorf("pcsd endpoint: %w", err)
		}
		ec.Gate = g
	}
	if d.gate == nil {
		d.gate = ec.Gate // the status page's one-time password when pairing is off
	}
	srv, err := pcsd.New(ec)
	if err != nil {
		return fmt.Errorf("pcsd endpoint: %w", err)
	}
	d.pcs, d.cln = srv, ln
	d.undo = append(d.undo, func() { srv.Close() })
	return nil
}

func (d *Daemon) startWeb(w *web.Web, rec *status.Recorder) error {
	wc := d.cfg.Web
	w.SetQnetdAddr(d.ln.Addr().String())
	sc := status.Config{Status: d.srv.Status, Address: d.ln.Addr().String(), Recorder: rec,
		Pairing: d.pairingInfo}
	switch {
	case d.pair != nil:
		sc.RenewOneTime = func() error {
			_, err := d.pair.RenewOneTime()
			return err
		}
	case d.pcs != nil:
		// pcs only: the one-time password is the pcs endpoint's
		sc.RenewOneTime = func() error {
			v, err := d.gate.OneTime().Renew(time.Now())
			if err == nil {
				d.log.Info().Time("expires", v.Expires).
					Msg("pcsd: made a new one-time pairing password at the admin's request; the status page shows it")
			}
			return err
		}
	}
	if d.pcs != nil {
		sc.RevokePcsToken = func(id string) ([]string, error) {
			released, err := d.pcs.Revoke(id)
			if errors.Is(err, pcsd.ErrNoSuchToken) {
				return nil, status.ErrNoSuchToken
			}
			return released, err
		}
	}
	d.page = status.New(sc)
	d.page.Register(w.Handle)
	d.wln = wc.Listener
	if d.wln == nil {
		var err error
		if d.wln, err = net.Listen("tcp", wc.Addr); err != nil {
			return fmt.Errorf("status page on %s: %w", wc.Addr, err)
		}
	}
	d.undo = append(d.undo, func() { d.wln.Close() })
	d.web = &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// startMetrics binds the metrics port: /metrics alone, bounded.
func (d *Daemon) startMetrics(w *web.Web) error {
	mc := d.cfg.Metrics
	if d.pki != nil {
		w.Metrics().SetCertificates(map[string]time.Time{"ca": d.pki.CA.NotAfter, "server": d.pki.Server.NotAfter})
	}
	w.Metrics().SetLabelVerifiedOnly(d.cfg.Server.Engine.TLS != wire.TLSUnsupported)
	if mc == nil {
		return nil
	}
	ln := mc.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", ":"+strconv.Itoa(mc.Port)); err != nil {
			return fmt.Errorf("metrics port %d (option metrics_port): %w", mc.Port, err)
		}
	}
	d.mln = web.LimitListener(ln, web.MaxScrapeConns)
	d.undo = append(d.undo, func() { d.mln.Close() })
	d.met = web.ScrapeServer(w.ScrapeHandler(mc.Token))
	if mc.Token == "" {
		d.log.Warn().Str("metrics", d.mln.Addr().String()).
			Msg("metrics port without a token: anyone on your network can read the cluster names and votes; set metrics_token")
	}
	return nil
}

// pairingInfo is what the status page shows for pairing a cluster.
func (d *Daemon) pairingInfo() status.Pairing {
	var pi status.Pairing
	if d.pair == nil {
		pi = status.Pairing{Fingerprints: []string{}, Problem: d.pairingProblem}
		if d.pcs != nil {
			// pcs only: its password is shown on its card
			pi.PasswordOption = d.cfg.Pcsd.Endpoint.Password != ""
			pi.OneTime = oneTimeView(d.gate.OneTime())
		}
	} else {
		pi = d.sshPairingInfo()
	}
	if d.pcs != nil {
		pi.Pcs = d.pcsInfo()
	}
	return pi
}

func oneTimeView(o *pairing.OneTime) *status.OneTimePassword {
	ot := o.View(time.Now())
	return &status.OneTimePassword{State: string(ot.State), Password: ot.Password, Expires: ot.Expires,
		UsedAt: ot.UsedAt, UsedBy: ot.UsedBy}
}

// pcsInfo is the pcs card: the two commands with this host's address and
// the tokens.
func (d *Daemon) pcsInfo() *status.PcsPairing {
	host := d.cfg.Pcsd.PublicHost
	if host == "" {
		host = "<home-assistant-ip>"
	}
	port := d.cfg.Pcsd.Port
	if ta, ok := d.cln.Addr().(*net.TCPAddr); ok {
		port = ta.Port
	}
	addr := ""
	if port != 2224 {
		addr = " addr=" + net.JoinHostPort(host, strconv.Itoa(port))
	}
	pi := &status.PcsPairing{Host: host, Port: port, Tokens: []status.PcsToken{}, Commands: []string{
		"pcs host auth " + host + addr + " -u hacluster",
		"pcs quorum device add model net host=" + host + " algorithm=ffsplit",
	}}
	tokens, err := d.pcs.Tokens()
	if err != nil {
		pi.Problem = "cannot list the pcs tokens: " + err.Error()
		return pi
	}
	for _, t := range tokens {
		pi.Tokens = append(pi.Tokens, status.PcsToken{ID: t.ID, Created: t.Created, Addr: t.Addr, OneTime: t.OneTime, Clusters: t.Clusters})
	}
	return pi
}

// sshPairingInfo is the Proxmox card.
func (d *Daemon) sshPairingInfo() status.Pairing {
	host := d.cfg.Pairing.Endpoint.PublicHost
	port := d.cfg.Pairing.Port
	if ta, ok := d.pln.Addr().(*net.TCPAddr); ok {
		port = ta.Port
	}
	pi := status.Pairing{Enabled: true, Host: host, Port: port, Command: "pvecm qdevice setup " + host,
		Fingerprints: d.pair.HostKeyFingerprints(), PasswordOption: d.cfg.Pairing.Endpoint.Password != "",
		OneTime: oneTimeView(d.pair.OneTime())}
	if port != 22 {
		pi.SSHConfig = pairing.SSHConfigStanza(host, port)
	}
	return pi
}

// Addr is the qnetd listener's address.
func (d *Daemon) Addr() net.Addr { return d.ln.Addr() }

// WebAddr is the status page's address (nil without one).
func (d *Daemon) WebAddr() net.Addr {
	if d.wln == nil {
		return nil
	}
	return d.wln.Addr()
}

// PairingAddr is the pairing endpoint's address (nil without one).
func (d *Daemon) PairingAddr() net.Addr {
	if d.pln == nil {
		return nil
	}
	return d.pln.Addr()
}

// PcsdAddr is the pcsd endpoint's address (nil without one).
func (d *Daemon) PcsdAddr() net.Addr {
	if d.cln == nil {
		return nil
	}
	return d.cln.Addr()
}

// Wait serves until ctx ends, a shutdown is asked for over the local
// socket, or the server fails; then it stops everything. A failed server
// is an error; the other two are a clean stop.
func (d *Daemon) Wait(ctx context.Context) error {
	pctx, stopPage := context.WithCancel(context.Background())
	defer stopPage()
	if d.page != nil {
		go d.page.Run(pctx, 2*time.Second)
	}
	if d.hist != nil {
		go d.hist.Run(pctx, time.Now)
	}
	entitiesDone := d.startEntities(pctx)
	watchDone := d.startWatch(pctx)
	var err error
	select {
	case <-ctx.Done():
		d.log.Info().Msg("shutting down")
	case <-d.ipcStop:
		d.log.Info().Msg("shutting down (requested over local IPC)")
	case err = <-d.served:
		if err != nil {
			err = fmt.Errorf("server stopped: %w", err)
		}
	}
	stopPage()
	for _, done := range []<-chan struct{}{entitiesDone, watchDone} {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	for _, hs := range []*http.Server{d.web, d.met} {
		if hs != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = hs.Shutdown(sctx)
			cancel()
		}
	}
	d.closeAll()
	return err
}

// startEntities publishes Home Assistant entities until ctx ends; the
// channel closes when it has (the entities marked unavailable).
func (d *Daemon) startEntities(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if d.cfg.Entities == nil {
		close(done)
		return done
	}
	ec := *d.cfg.Entities
	ec.Status = d.srv.Status
	if d.rec != nil {
		wake, cancel := d.rec.Subscribe()
		context.AfterFunc(ctx, cancel)
		ec.Wake = wake
	}
	if d.pki != nil {
		dir := d.pki.Dir
		ec.CertExpiry = func(cluster string) (time.Time, bool) {
			t, err := pki.ClientCertNotAfter(dir, cluster)
			return t, err == nil
		}
	}
	go func() {
		defer close(done)
		haentities.Run(ctx, ec)
	}()
	return done
}

// closeAll undoes Start, newest first.
func (d *Daemon) closeAll() {
	for i := len(d.undo) - 1; i >= 0; i-- {
		d.undo[i]()
	}
	d.undo = nil
}

// LoadAuthority loads the certificate authority from dir (upstream's
// nss_db_dir), creating one on first start.
func LoadAuthority(dir string, log zerolog.Logger) (*pki.Authority, error) {
	if dir == "" {
		return nil, errors.New("no certificate directory configured")
	}
	if !pki.Initialized(dir) {
		if _, err := pki.Init(dir, time.Now()); err != nil {
			return nil, fmt.Errorf("create certificate authority: %w", err)
		}
		log.Info().Str("dir", dir).Msg("created a new certificate authority and server certificate")
	}
	a, err := pki.Load(dir)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(a.CA.Raw)
	log.Info().Str("dir", dir).Str("ca_sha256", hex.EncodeToString(sum[:])).Time("ca_not_after", a.CA.NotAfter).
		Msg("certificate authority loaded")
	old := a.Server.SerialNumber.String()
	// A failed replacement keeps the old certificate, which the nodes still
	// accept: serving matters more than the upgrade.
	replaced, err := a.UpgradeServerCert(time.Now())
	if err != nil {
		log.Error().Str("dir", dir).Err(err).Msg("cannot replace the server certificate by one marked for TLS server use; serving with the old one")
	}
	if replaced {
		log.Info().Str("dir", dir).Str("old_serial", old).Str("new_serial", a.Server.SerialNumber.String()).
			Msg("replaced the server certificate by one marked for TLS server use only (Extended Key Usage serverAuth), " +
				"from the same certificate authority: the nodes keep trusting it, nothing to do on them")
	}
	logRefusedClientCerts(dir, log)
	return a, nil
}

// logRefusedClientCerts lists the cluster certificates an earlier version
// signed for names that the server now refuses at TLS time.
func logRefusedClientCerts(dir string, log zerolog.Logger) {
	refused, err := pki.RefusedClientCerts(dir)
	if err != nil {
		log.Warn().Str("dir", dir).Err(err).Msg("cannot list the cluster certificates")
		return
	}
	for _, r := range refused {
		switch {
		case r.PosesAsServer:
			log.Error().Str("file", r.File).Str("name", r.Name).
				Msg("cluster certificate for the server's own name, signed by an earlier version: its holder can pose as this qnetd to every paired cluster; " +
					"if you did not sign it yourself, create a new certificate authority and pair every cluster again (DOCS.md, \"Certificates for reserved names\")")
		case r.Reserved != "":
			log.Warn().Str("file", r.File).Str("name", r.Name).
				Msg("cluster certificate for a name reserved for this qnetd's own certificates: qnetd refuses it at TLS time; delete the file")
		default:
			log.Warn().Str("file", r.File).Str("name", r.Name).
				Msg("cluster certificate for a wildcard name: qnetd refuses it at TLS time (no cluster may use it); delete the file")
		}
	}
}

// SocketIn is the IPC socket's path in a run directory, as upstream names it.
func SocketIn(runDir string) string { return filepath.Join(runDir, "corosync-qnetd.sock") }
