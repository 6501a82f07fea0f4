package addon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/internal/qnetdcmd"
	"github.com/qnetd-addon/qnetd/internal/status"
	"github.com/qnetd-addon/qnetd/internal/version"
	"github.com/qnetd-addon/qnetd/internal/web"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Paths are where the add-on keeps things; the defaults are the
// container's, tests point them elsewhere through the environment.
type Paths struct {
	Options     string `env:"QNETD_ADDON_OPTIONS" envDefault:"/data/options.json"`
	Data        string `env:"QNETD_ADDON_DATA" envDefault:"/data"`
	Config      string `env:"QNETD_ADDON_CONFIG" envDefault:"/config"`
	RunDir      string `env:"QNETD_ADDON_RUN" envDefault:"/var/run/corosync-qnetd"`
	User        string `env:"QNETD_ADDON_USER" envDefault:"coroqnetd"`
	IngressAddr string `env:"QNETD_ADDON_INGRESS_ADDR"`
	// NSSLink is upstream's certificate path, linked to the data dir so
	// that tools run inside the container find the files there.
	NSSLink string `env:"QNETD_ADDON_NSS_LINK" envDefault:"/etc/corosync/qnetd/nssdb"`
	// SupervisorToken and SupervisorAPI reach Home Assistant's API.
	SupervisorToken string `env:"SUPERVISOR_TOKEN"`
	SupervisorAPI   string `env:"QNETD_ADDON_HA_API" envDefault:"http://supervisor/core/api"`
}

// PKIDir is the certificate directory in the data dir.
func (p Paths) PKIDir() string { return filepath.Join(p.Data, "nssdb") }

// ImportFile is where a user drops an export of an upstream CA.
func (p Paths) ImportFile() string { return filepath.Join(p.Config, "qnetd-import.pem") }

// LoadPaths reads the paths from the environment.
func LoadPaths(environ map[string]string) (Paths, error) {
	var p Paths
	err := env.ParseWithOptions(&p, env.Options{Environment: environ})
	if p.IngressAddr == "" {
		p.IngressAddr = ":" + strconv.Itoa(IngressPort)
	}
	return p, err
}

// Main runs "qnetd addon init|run|healthcheck".
func Main(args []string, environ map[string]string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: qnetd addon init|run|healthcheck")
		return 2
	}
	paths, err := LoadPaths(environ)
	if err != nil {
		fmt.Fprintln(stderr, "qnetd addon:", err)
		return 1
	}
	if args[0] == "healthcheck" {
		return healthcheck(paths, stdout, stderr)
	}
	opts, err := LoadOptions(paths.Options)
	if err != nil {
		// The log level is unknown yet: say it plainly, at error level.
		l := NewLogger(stderr, "info")
		l.Error().Msg(err.Error())
		return 1
	}
	log := NewLogger(stderr, opts.LogLevel)
	switch args[0] {
	case "init":
		if err := Init(paths, opts, log); err != nil {
			log.Error().Err(err).Msg("add-on initialisation failed")
			return 1
		}
		return 0
	case "run":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := Run(ctx, paths, opts, log); err != nil {
			log.Error().Err(err).Msg("qnetd stopped")
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "qnetd addon: unknown command %q\n", args[0])
	return 2
}

// NewLogger maps the Supervisor's level names onto zerolog; "notice" logs
// at info and marks itself with a field.
func NewLogger(w io.Writer, level string) zerolog.Logger {
	lvl, ok := LogLevels[level]
	if !ok {
		lvl = zerolog.InfoLevel
	}
	cw := zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: time.DateTime}
	l := zerolog.New(cw).Level(lvl).With().Timestamp()
	if level == "notice" {
		l = l.Str("log_level", "notice")
	}
	return l.Logger()
}

func banner(log zerolog.Logger, p Paths, o Options) {
	log.Info().Str("addon_version", version.AddOn).Str("core_version", version.Core).
		Int("port", o.Port).Bool("tls", o.TLSEnabled).Str("log_level", o.LogLevel).
		Bool("pairing", o.PairingEnabled).Int("pairing_port", o.PairingPort).
		Bool("pairing_password_set", o.PairingPassword != "").Int("authorized_keys", len(o.AuthorizedKeys)).
		Str("data", p.Data).Msg("qnetd add-on")
}

// Init prepares the data directory: imports a dropped upstream CA, creates
// the certificate authority when TLS is on, links upstream's certificate
// path and hands the data to the unprivileged user.
func Init(p Paths, o Options, log zerolog.Logger) error {
	banner(log, p, o)
	if err := os.MkdirAll(p.Data, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := importDropped(p, log); err != nil {
		return err
	}
	if o.TLSEnabled && !pki.Initialized(p.PKIDir()) {
		if _, err := pki.Init(p.PKIDir(), time.Now()); err != nil {
			return fmt.Errorf("create certificate authority: %w", err)
		}
		log.Info().Str("dir", p.PKIDir()).Msg("created a new certificate authority")
	}
	if o.PairingEnabled {
		// Host keys are made once, here, so that the daemon's user owns them.
		pair, err := pairing.New(pairing.Config{DataDir: p.Data, PKIDir: p.PKIDir(), Log: log})
		if err != nil {
			return fmt.Errorf("pairing endpoint: %w", err)
		}
		pair.Close()
	}
	if err := linkNSS(p); err != nil {
		log.Warn().Err(err).Str("path", p.NSSLink).Msg("cannot link upstream's certificate path to the data dir")
	}
	for _, d := range []string{p.RunDir, p.PKIDir()} {
		if err := os.MkdirAll(d, 0o770); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return chownTo(p.User, log, p.Data, p.RunDir)
}

// importDropped imports qnetd-import.pem from the config folder, once.
func importDropped(p Paths, log zerolog.Logger) error {
	data, err := os.ReadFile(p.ImportFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", p.ImportFile(), err)
	}
	minSerial := 0
	if b, err := os.ReadFile(filepath.Join(p.Config, "qnetd-serial.txt")); err == nil {
		fmt.Sscanf(string(b), "%d", &minSerial)
	}
	a, err := pki.Import(p.PKIDir(), data, minSerial, time.Now())
	if err != nil {
		return fmt.Errorf("import %s: %w", p.ImportFile(), err)
	}
	if err := os.Rename(p.ImportFile(), p.ImportFile()+".imported"); err != nil {
		return err
	}
	log.Info().Str("ca_serial", a.CA.SerialNumber.String()).Str("server_serial", a.Server.SerialNumber.String()).
		Str("file", p.ImportFile()+".imported").Msg("imported certificate authority; delete the .imported file, it holds the CA key")
	return nil
}

func linkNSS(p Paths) error {
	if p.NSSLink == "" {
		return nil
	}
	if target, err := os.Readlink(p.NSSLink); err == nil && target == p.PKIDir() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p.NSSLink), 0o755); err != nil {
		return err
	}
	_ = os.Remove(p.NSSLink) // an empty directory or a stale link
	return os.Symlink(p.PKIDir(), p.NSSLink)
}

// lookupUser returns the uid and gid of name, or ok=false.
func lookupUser(name string) (uid, gid int, ok bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, false
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	return uid, gid, err1 == nil && err2 == nil
}

func chownTo(name string, log zerolog.Logger, dirs ...string) error {
	uid, gid, ok := lookupUser(name)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(path string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("hand %s to user %s: %w", d, name, err)
		}
	}
	log.Debug().Str("user", name).Msg("data handed to the daemon's user")
	return nil
}

// dropPrivileges switches to the unprivileged user once every port is
// bound: binding below 1024 (the pairing port 22) is the only thing root
// was needed for, so no capability is kept at all.
func dropPrivileges(name string, log zerolog.Logger) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, ok := lookupUser(name)
	if !ok {
		log.Warn().Str("user", name).Msg("user not found, running as root")
		return nil
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	log.Info().Str("user", name).Int("uid", uid).Msg("running unprivileged")
	return nil
}

// Run starts the daemon with the add-on's options and serves until ctx ends.
func Run(ctx context.Context, p Paths, o Options, log zerolog.Logger) error {
	banner(log, p, o)
	cfg := server.DefaultConfig()
	cfg.Log = log
	cfg.BusyGCPercent = server.DaemonGCPercent()
	cfg.Port = o.Port
	cfg.Engine.TLS = wire.TLSUnsupported
	var authority *pki.Authority
	if o.TLSEnabled {
		a, err := qnetdcmd.LoadAuthority(p.PKIDir(), log)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		authority = a
		cfg.Engine.TLS = wire.TLSSupportedOn
		cfg.TLS = a.TLSConfig(true)
	}

	// The web side needs the server (to read the engine) and the server
	// needs the web side's metric hooks: the closure breaks the cycle.
	var srv *server.Server
	do := func(ctx context.Context, fn func(*engine.Engine)) error { return srv.Do(ctx, fn) }
	w := web.New(web.Config{Do: do, PKIRequired: o.TLSEnabled, Log: log})
	w.SetPKILoaded(authority != nil)
	rec := status.NewRecorder(time.Now, time.Hour)
	cfg.Hooks, cfg.Observer = w.Metrics().Hooks(), rec
	srv = server.New(cfg)
	ln, err := srv.Listen()
	if err != nil {
		return err
	}
	w.SetQnetdAddr(ln.Addr().String())
	info := adminipc.ServerInfo{Port: o.Port, ListenAddr: ln.Addr()}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	ipc, err := adminipc.Listen(adminipc.Config{Path: filepath.Join(p.RunDir, "corosync-qnetd.sock"), Do: do, Info: info,
		Shutdown: stop, Log: log})
	if err != nil {
		ln.Close()
		return fmt.Errorf("local IPC socket: %w", err)
	}
	defer ipc.Close()

	host := hostAddress()
	var pair *pairing.Server
	var pln net.Listener
	if o.PairingEnabled {
		sock := filepath.Join(p.RunDir, "corosync-qnetd.sock")
		pair, err = pairing.New(pairing.Config{DataDir: p.Data, PKIDir: p.PKIDir(), Password: o.PairingPassword,
			AuthorizedKeys: o.AuthorizedKeys, PublicHost: host, Log: log,
			Tool: func(args []string, stdout, stderr io.Writer) int {
				return adminipc.ToolMain(append([]string{"-p", sock}, args...), stdout, stderr)
			}})
		if err != nil {
			ln.Close()
			return fmt.Errorf("pairing endpoint: %w", err)
		}
		// Bound now, while still root: port 22 is below 1024.
		if pln, err = net.Listen("tcp", fmt.Sprintf(":%d", o.PairingPort)); err != nil {
			ln.Close()
			return fmt.Errorf("pairing endpoint on port %d (option pairing_port; another SSH server may use it, see DOCS.md): %w", o.PairingPort, err)
		}
		defer pair.Close()
	}
	page := status.New(status.Config{Do: do, Info: info, Recorder: rec, Pairing: func() status.Pairing { return pairingInfo(o, host, pair) },
		Publish: homeAssistant(p, log)})
	page.Register(w.Handle)

	wln, err := net.Listen("tcp", p.IngressAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("status page on %s: %w", p.IngressAddr, err)
	}
	if err := dropPrivileges(p.User, log); err != nil {
		return err
	}
	hs := &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(wln) }()
	go func() { _ = ipc.Serve() }()
	if pair != nil {
		go func() { _ = pair.Serve(pln) }()
	}
	go page.Run(ctx, 2*time.Second)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Str("status_page", wln.Addr().String()).Msg("corosync-qnetd started")
	select {
	case <-ctx.Done():
		log.Info().Msg("shutting down")
	case err := <-served:
		if err != nil {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	srv.Shutdown()
	return nil
}

// homeAssistant publishes entities when the Supervisor gave us a token
// (config.yaml: homeassistant_api: true); nil otherwise.
func homeAssistant(p Paths, log zerolog.Logger) func(status.View) {
	if p.SupervisorToken == "" {
		return nil
	}
	ha := &status.HomeAssistant{BaseURL: p.SupervisorAPI, Token: p.SupervisorToken, Log: log,
		Client: &http.Client{Timeout: 10 * time.Second}}
	return ha.Publish
}

// pairingInfo is what the status page shows for pairing a cluster.
func pairingInfo(o Options, host string, pair *pairing.Server) status.Pairing {
	pi := status.Pairing{Enabled: pair != nil, Host: host, Port: o.PairingPort,
		Command: "pvecm qdevice setup " + host, Fingerprints: []string{}}
	if pair != nil {
		pi.Fingerprints = pair.HostKeyFingerprints()
	}
	if o.PairingPort != 22 {
		pi.SSHConfig = pairing.SSHConfigStanza(host, o.PairingPort)
	}
	return pi
}

// hostAddress guesses the address the cluster nodes reach this machine
// at: the first global unicast IPv4 address not on a container bridge.
func hostAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			if ip4 := ipn.IP.To4(); ip4[0] == 172 && ip4[1] >= 16 && ip4[1] <= 31 {
				continue // Docker and the Supervisor's hassio bridge
			}
			return ipn.IP.String()
		}
	}
	return "<home-assistant-ip>"
}

// healthcheck is the Docker HEALTHCHECK: GET /health on the ingress port.
func healthcheck(p Paths, stdout, stderr io.Writer) int {
	host, port, err := net.SplitHostPort(p.IngressAddr)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	c := http.Client{Timeout: 8 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + "/health")
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprint(stdout, string(body))
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
