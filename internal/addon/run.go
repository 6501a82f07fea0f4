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
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/daemon"
	"github.com/qnetd-addon/qnetd/internal/haentities"
	"github.com/qnetd-addon/qnetd/internal/logbatch"
	"github.com/qnetd-addon/qnetd/internal/logline"
	"github.com/qnetd-addon/qnetd/internal/pairing"
	"github.com/qnetd-addon/qnetd/internal/pcsd"
	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/internal/status"
	"github.com/qnetd-addon/qnetd/internal/version"
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
	// ListenAddr, when set (host:port), replaces the port option's
	// listen address: tests bind port 0 and read the port from the log.
	ListenAddr string `env:"QNETD_ADDON_LISTEN"`
	// NSSLink is upstream's certificate path, linked to the data dir so
	// that tools run inside the container find the files there.
	NSSLink string `env:"QNETD_ADDON_NSS_LINK" envDefault:"/etc/corosync/qnetd/nssdb"`
	// SupervisorToken and SupervisorAPI reach Home Assistant's API;
	// Supervisor is the Supervisor's own API (its MQTT service).
	SupervisorToken string `env:"SUPERVISOR_TOKEN"`
	SupervisorAPI   string `env:"QNETD_ADDON_HA_API" envDefault:"http://supervisor/core/api"`
	Supervisor      string `env:"QNETD_ADDON_SUPERVISOR" envDefault:"http://supervisor"`
}

// PKIDir is the certificate directory in the data dir.
func (p Paths) PKIDir() string { return filepath.Join(p.Data, "nssdb") }

// ImportFile is where a user drops an export of an upstream CA.
func (p Paths) ImportFile() string { return filepath.Join(p.Config, "qnetd-import.pem") }

// LoadPaths reads the paths from the environment.
func LoadPaths(environ map[string]string) (Paths, error) {
	var p Paths
	err := env.ParseWithOptions(&p, env.Options{Environment: environ})
	// Set but empty means "none" (a local run: no link in /etc, no user
	// switch), where the env package would take the container's default.
	if v, ok := environ["QNETD_ADDON_NSS_LINK"]; ok && v == "" {
		p.NSSLink = ""
	}
	if v, ok := environ["QNETD_ADDON_USER"]; ok && v == "" {
		p.User = ""
	}
	if err == nil && p.ListenAddr != "" {
		if _, port, serr := net.SplitHostPort(p.ListenAddr); serr != nil {
			err = fmt.Errorf("QNETD_ADDON_LISTEN %q: want host:port: %w", p.ListenAddr, serr)
		} else if _, aerr := strconv.ParseUint(port, 10, 16); aerr != nil {
			err = fmt.Errorf("QNETD_ADDON_LISTEN %q: want a port from 0 to 65535", p.ListenAddr)
		}
	}
	return p, err
}

const usage = `usage: qnetd addon init|run|healthcheck

  init          prepare /data: import a dropped CA, create the CA, host keys
  run           the add-on: qnetd, status page, pairing endpoint, entities
  healthcheck   GET /health on the status page (the image's HEALTHCHECK)

Options come from /data/options.json. The environment may move the paths:
QNETD_ADDON_OPTIONS, QNETD_ADDON_DATA, QNETD_ADDON_CONFIG, QNETD_ADDON_RUN,
QNETD_ADDON_USER, QNETD_ADDON_INGRESS_ADDR, QNETD_ADDON_LISTEN,
QNETD_ADDON_NSS_LINK, QNETD_ADDON_HA_API, QNETD_ADDON_SUPERVISOR (see
"make run" for a local setup).
`

// Main runs "qnetd addon init|run|healthcheck".
func Main(args []string, environ map[string]string, stdout, stderr io.Writer) int {
	// "addon -h" and "addon run -h" alike: help never starts anything.
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "help" {
			fmt.Fprint(stdout, usage)
			return 0
		}
	}
	if len(args) != 1 {
		fmt.Fprint(stderr, usage)
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
	if args[0] != "init" && args[0] != "run" {
		fmt.Fprintf(stderr, "qnetd addon: unknown command %q\n%s", args[0], usage)
		return 2
	}
	opts, err := LoadOptions(paths.Options)
	if err != nil {
		// The log level is unknown yet: say it at error level. The option
		// and its value are in the error, which the log quotes.
		l := NewLogger(stderr, "info")
		l.Error().Err(err).Msg("the add-on's options are not valid; fix them in the add-on's configuration")
		if args[0] == "run" {
			return ExitCannotStart
		}
		return 1
	}
	// The daemon's lines for one event go out in one write (logbatch).
	logs := logbatch.New(stderr)
	log := NewLogger(logs, opts.LogLevel)
	if args[0] == "init" {
		if err := Init(paths, opts, log); err != nil {
			log.Error().Err(err).Msg("add-on initialisation failed")
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := Start(paths, opts, log, logs)
	if err != nil {
		log.Error().Err(err).Msg("qnetd cannot start; the add-on stops")
		return ExitCannotStart
	}
	if err := d.Wait(ctx); err != nil {
		log.Error().Err(err).Msg("qnetd stopped")
		return 1
	}
	return 0
}

// ExitCannotStart is the exit status of "qnetd addon run" when the daemon
// could not start at all (a port taken, unreadable certificates): the
// service's finish script stops the container on it, because restarting
// would only fail the same way, while a daemon that dies after it started
// is restarted by s6 (rootfs/etc/s6-overlay/s6-rc.d/qnetd/finish).
const ExitCannotStart = 3

// NewLogger maps the Supervisor's level names onto zerolog; "notice" logs
// at info and marks itself with a field.
func NewLogger(w io.Writer, level string) zerolog.Logger {
	lvl, ok := LogLevels[level]
	if !ok {
		lvl = zerolog.InfoLevel
	}
	l := zerolog.New(logline.New(w, time.DateTime)).Level(lvl).With().Timestamp()
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
		Bool("pcs", o.PcsEnabled).Int("pcs_port", o.PcsPort).
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
	if err := forgetClusters(p, o, log); err != nil {
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
		pair, err := pairing.New(pairing.Config{DataDir: p.Data, PKIDir: p.PKIDir(), Password: o.PairingPassword,
			AuthorizedKeys: o.AuthorizedKeys, Log: log})
		if err != nil {
			return fmt.Errorf("pairing endpoint: %w", err)
		}
		// The first start makes a one-time pairing password, so that
		// pvecm can pair without an option set first (DOCS.md).
		_, err = pair.FirstOneTime()
		pair.Close()
		if err != nil {
			return fmt.Errorf("one-time pairing password: %w", err)
		}
	}
	if o.PcsEnabled {
		// Made here, so that the daemon's user owns them: the pcs tokens'
		// directory and the one-time password's (pairing.NewGate).
		if err := os.MkdirAll(filepath.Join(p.Data, "pcsd"), 0o700); err != nil {
			return fmt.Errorf("pcsd endpoint: %w", err)
		}
		gate, err := pairing.NewGate(p.Data, o.PairingPassword, nil)
		if err != nil {
			return fmt.Errorf("pcsd endpoint: %w", err)
		}
		if !o.PairingEnabled {
			// pcs is the only way to pair: the first start makes the
			// one-time password the SSH endpoint would have made.
			if _, err := pcsd.FirstOneTime(p.Data, gate, time.Now(), log); err != nil {
				return fmt.Errorf("one-time pairing password: %w", err)
			}
		}
	}
	if err := linkNSS(p); err != nil {
		log.Warn().Err(err).Str("path", p.NSSLink).Msg("cannot link upstream's certificate path to the data dir")
	}
	for _, d := range []string{p.RunDir, p.PKIDir()} {
		if err := os.MkdirAll(d, 0o770); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	// A previous run's address would send the health check astray.
	_ = os.Remove(filepath.Join(p.RunDir, webAddrFile))
	return chownTo(p.User, log, p.Data, p.RunDir)
}

// forgetClusters forgets the pairing owner of each cluster the admin
// listed, so that another key may have it signed (DOCS.md: who may sign
// a cluster name). The option stays set; forgetting again is harmless.
func forgetClusters(p Paths, o Options, log zerolog.Logger) error {
	for _, c := range o.ForgetClusters {
		if !pki.Initialized(p.PKIDir()) {
			return nil
		}
		owner, had, err := pki.Forget(p.PKIDir(), c)
		if err != nil {
			return fmt.Errorf("option forget_clusters: %w", err)
		}
		if had {
			log.Info().Str("cluster", c).Str("owner", owner.ID).Str("owner_label", owner.Label).
				Msg("forgot who paired this cluster (option forget_clusters); the next key to pair it owns it; remove it from the option once paired")
		} else {
			log.Info().Str("cluster", c).Msg("option forget_clusters: no pairing key owns this cluster")
		}
	}
	return nil
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

func chownTo(name string, log zerolog.Logger, dirs ...string) error {
	uid, gid, ok := daemon.LookupUser(name)
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

// DaemonConfig translates the add-on's options into the daemon's
// configuration.
func DaemonConfig(p Paths, o Options, log zerolog.Logger) daemon.Config {
	scfg := server.DefaultConfig()
	scfg.BusyGCPercent = server.DaemonGCPercent()
	scfg.Port = o.Port
	if host, port, err := net.SplitHostPort(p.ListenAddr); err == nil {
		if n, err := strconv.Atoi(port); err == nil {
			scfg.Host, scfg.Port = host, n
		}
	}
	scfg.Engine.TLS = wire.TLSUnsupported
	if o.TLSEnabled {
		// Required, not optional: with "on" a client that never starts TLS
		// joins any cluster without a certificate. corosync-qdevice with
		// tls: on (what pvecm writes) starts TLS whenever it is offered.
		scfg.Engine.TLS = wire.TLSRequired
		scfg.Engine.ClientCertRequired = true
	}
	cfg := daemon.Config{
		Server:    scfg,
		PKIDir:    p.PKIDir(),
		LockFile:  filepath.Join(p.RunDir, "corosync-qnetd.pid"),
		IPC:       adminipc.Config{Path: daemon.SocketIn(p.RunDir)},
		Web:       &daemon.WebConfig{Addr: p.IngressAddr, HistoryFile: filepath.Join(p.Data, status.HistoryFileName)},
		Entities:  homeAssistant(p, log),
		StateHold: time.Duration(o.EventHoldTime) * time.Second,
		User:      p.User,
		Log:       log,
	}
	if o.MetricsPort != 0 {
		cfg.Metrics = &daemon.MetricsConfig{Port: o.MetricsPort, Token: o.MetricsToken}
	}
	if o.PairingEnabled {
		cfg.Pairing = &daemon.PairingConfig{Port: o.PairingPort, Endpoint: pairing.Config{DataDir: p.Data, PKIDir: p.PKIDir(),
			Password: o.PairingPassword, AuthorizedKeys: o.AuthorizedKeys, PublicHost: hostAddress()}}
	}
	if o.PcsEnabled {
		cfg.Pcsd = &daemon.PcsdConfig{Port: o.PcsPort, Endpoint: pcsd.Config{DataDir: p.Data, Password: o.PairingPassword},
			PublicHost: hostAddress()}
	}
	return cfg
}

// Start prints the banner and starts the daemon with the add-on's options:
// every port is bound when it returns without error. batch, optional, is
// the writer under log (Config.LogBatch of package server).
func Start(p Paths, o Options, log zerolog.Logger, batch server.LogBatcher) (*daemon.Daemon, error) {
	banner(log, p, o)
	p.IngressAddr = ingressAddr(p, log)
	cfg := DaemonConfig(p, o, log)
	cfg.Server.LogBatch = batch
	d, err := daemon.Start(cfg)
	if err != nil {
		return nil, err
	}
	if err := saveWebAddr(p.RunDir, d.WebAddr()); err != nil {
		log.Warn().Err(err).Msg("the health check will not find the status page")
	}
	return d, nil
}

// homeAssistant publishes entities when the Supervisor gave us a token
// (config.yaml: homeassistant_api: true): over MQTT discovery when it
// offers a broker (services: mqtt:want), else through the REST API; nil
// without a token.
func homeAssistant(p Paths, log zerolog.Logger) *haentities.Config {
	if p.SupervisorToken == "" {
		return nil
	}
	// The add-on's host name (its container's) stays the same across
	// restarts and updates, so its topics and ids do too.
	host, _ := os.Hostname()
	return &haentities.Config{Instance: host, SupervisorURL: p.Supervisor, CoreAPI: p.SupervisorAPI,
		Token: p.SupervisorToken, Log: log}
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
	host, port, err := net.SplitHostPort(healthAddr(p))
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck: where the status page listens:", err)
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
