package qnetdcmd

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/getopt"
	"github.com/qnetd-addon/qnetd/internal/pki"
	"github.com/qnetd-addon/qnetd/internal/version"
	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

const usage = `usage: corosync-qnetd [-46dfhv] [-l listen_addr] [-p listen_port] [-s tls]
    [-c client_cert_required] [-m max_clients] [-S option=value[,option2=value2,...]]
`

// Parse turns the command line (after COROSYNC_QNETD_OPTIONS, which is
// prepended as the packaging's systemd unit does) into settings. It
// returns (nil, 0, nil) together with exitHelp/exitVersion handling done by
// the caller through the returned action.
func Parse(args []string, environ map[string]string) (*Settings, string, error) {
	s, err := FromEnv(environ)
	if err != nil {
		return nil, "", err
	}
	if extra := strings.Fields(environ["COROSYNC_QNETD_OPTIONS"]); len(extra) > 0 {
		args = append(extra, args...)
	}
	opts, rest, err := getopt.Parse(args, "46dfhvc:l:m:p:S:s:")
	if err != nil {
		return nil, "", err
	}
	if len(rest) > 0 {
		return nil, "", fmt.Errorf("unexpected argument %q", rest[0])
	}
	for _, o := range opts {
		switch o.Name {
		case '4':
			s.Family = "4"
		case '6':
			s.Family = "6"
		case 'd':
			s.Debug++
		case 'f':
			s.Foreground = true
		case 'h':
			return s, "help", nil
		case 'v':
			return s, "version", nil
		case 'c':
			b, ok := ParseBool(o.Arg)
			if !ok {
				return nil, "", fmt.Errorf("client_cert_required should be on or off (got %q)", o.Arg)
			}
			s.ClientCert = b
		case 'l':
			s.ListenAddr = o.Arg
		case 'm':
			x, ok := parseInt(o.Arg, 0, 1<<63-1)
			if !ok {
				return nil, "", fmt.Errorf("max clients value %q is invalid: want a whole number, 0 = unlimited", o.Arg)
			}
			s.MaxClients = x
		case 'p':
			x, ok := parseInt(o.Arg, 1, 65535)
			if !ok {
				return nil, "", fmt.Errorf("listen port %q is invalid: want 1..65535", o.Arg)
			}
			s.Port = int(x)
		case 's':
			switch strings.ToLower(o.Arg) {
			case "on", "off", "req":
				s.TLS = strings.ToLower(o.Arg)
			case "required":
				// upstream's man page says "required" but its parser only
				// takes "req"; accept both.
				s.TLS = "req"
			default:
				return nil, "", fmt.Errorf("tls must be one of on, off, req (got %q)", o.Arg)
			}
		case 'S':
			if err := s.ApplyAdvanced(o.Arg); err != nil {
				return nil, "", err
			}
		}
	}
	return s, "", nil
}

// VersionText is what -v prints.
func VersionText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Corosync Qdevice Network Daemon, version '%s'\n\n", version.Core)
	b.WriteString("Supported algorithms: ")
	for i, a := range wire.AllAlgorithms() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%d)", wire.Algorithm(a), a)
	}
	b.WriteString("\nSupported message types: ")
	for i, t := range wire.AllMsgTypes() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%d)", wire.MsgType(t), t)
	}
	b.WriteString("\n")
	return b.String()
}

// ServerConfig builds the server configuration.
func (s *Settings) ServerConfig(log zerolog.Logger) (server.Config, error) {
	cfg := server.DefaultConfig()
	cfg.Log = log
	cfg.BusyGCPercent = server.DaemonGCPercent()
	switch s.Family {
	case "4":
		cfg.Network = "tcp4"
	case "6":
		cfg.Network = "tcp6"
	}
	cfg.Host, cfg.Port, cfg.MaxClients = s.ListenAddr, s.Port, int(s.MaxClients)
	cfg.SendBuffers = int(min(s.MaxClientSendBuffers, 1<<20))
	cfg.InitTimeout = time.Duration(s.InitTimeout) * time.Millisecond
	cfg.MaxNewcomers, cfg.MaxNewcomersPerSource = int(s.MaxClientsBeforeInit), int(s.MaxClientsBeforeInitPerAddress)
	cfg.FDReserve = int(s.FDReserve)
	e := &cfg.Engine
	switch s.TLS {
	case "off":
		e.TLS = wire.TLSUnsupported
	case "on":
		e.TLS = wire.TLSSupportedOn
	case "req":
		e.TLS = wire.TLSRequired
	}
	e.ClientCertRequired = s.ClientCert
	e.HeartbeatMin, e.HeartbeatMax = uint32(s.HeartbeatIntervalMin), uint32(s.HeartbeatIntervalMax)
	e.DPDEnabled, e.DPDCoefficient = s.DPDEnabled, s.DPDIntervalCoefficient
	e.MaxReceiveSize = uint32(min(s.MaxClientReceiveSize, 1<<31))
	e.MaxSendSize = uint32(min(s.MaxClientSendSize, 1<<31))
	e.KAPDefault = s.KAPTieBreaker
	if e.MaxReceiveSize < wire.DefaultMaxReceiveSize {
		return cfg, fmt.Errorf("max_client_receive_size=%d is below %d: corosync-qdevice refuses such a server; raise it to at least %d",
			e.MaxReceiveSize, wire.DefaultMaxReceiveSize, wire.DefaultMaxReceiveSize)
	}
	return cfg, nil
}

// Main runs corosync-qnetd and returns the exit status.
func Main(args []string, environ map[string]string, stdout, stderr io.Writer) int {
	s, action, err := Parse(args, environ)
	if err != nil {
		fmt.Fprintf(stderr, "corosync-qnetd: %v\n%s", err, usage)
		return 1
	}
	switch action {
	case "help":
		fmt.Fprint(stdout, usage)
		return 1
	case "version":
		fmt.Fprint(stdout, VersionText())
		return 1
	}
	log := NewLogger(stderr, s.LogFormat, s.Debug > 0)
	for _, w := range s.Warnings {
		log.Warn().Msg(w)
	}
	cfg, err := s.ServerConfig(log)
	if err != nil {
		log.Error().Err(err).Msg("invalid configuration")
		return 1
	}
	if cfg.Engine.TLS != wire.TLSUnsupported {
		a, err := LoadAuthority(s.NSSDBDir, log)
		if err != nil {
			log.Error().Err(err).Str("nss_db_dir", s.NSSDBDir).Msg("cannot set up TLS")
			return 1
		}
		cfg.TLS = a.TLSConfig(s.ClientCert)
	}
	// Signals are taken from here on: a SIGTERM during start-up is a clean stop.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	unlock, err := lockPIDFile(s.LockFile)
	if err != nil {
		log.Error().Err(err).Str("lock_file", s.LockFile).Msg("cannot take the lock file")
		return 1
	}
	defer unlock()

	if limit, err := raiseFDLimit(); err != nil {
		log.Warn().Err(err).Msg("cannot raise the open file limit")
	} else {
		log.Info().Uint64("open_files", limit).Msg("open file limit")
	}

	srv := server.New(cfg)
	ln, err := srv.Listen()
	if err != nil {
		log.Error().Err(err).Msg("cannot listen")
		return 1
	}
	log.Info().Str("version", version.Core).Str("addr", ln.Addr().String()).Str("tls", cfg.Engine.TLS.String()).
		Bool("client_cert_required", cfg.Engine.ClientCertRequired).Int("max_clients", cfg.MaxClients).
		Msg("corosync-qnetd started")

	ipcShutdown := make(chan struct{})
	ipc, err := adminipc.Listen(adminipc.Config{Path: s.LocalSocketFile, Umask: s.LocalSocketUmask, GID: s.LocalSocketGID,
		Backlog: int(min(s.LocalSocketBacklog, 1<<30)), MaxClients: s.IPCMaxClients, MaxReceiveSize: s.IPCMaxReceiveSize,
		MaxSendSize: s.IPCMaxSendSize, Do: srv.Do, Shutdown: func() { close(ipcShutdown) }, Log: log,
		Info: adminipc.ServerInfo{Host: s.ListenAddr, Port: s.Port, ListenAddr: ln.Addr(), MaxClients: s.MaxClients,
			MaxClientSendSize: s.MaxClientSendSize, MaxClientReceiveSize: s.MaxClientReceiveSize}})
	if err != nil {
		log.Error().Err(err).Str("local_socket_file", s.LocalSocketFile).Msg("cannot create the local IPC socket")
		srv.Shutdown()
		return 1
	}
	go func() { _ = ipc.Serve() }()
	log.Info().Str("local_socket_file", s.LocalSocketFile).Msg("local IPC socket listening")

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case got := <-sig:
		log.Info().Str("signal", got.String()).Msg("shutting down")
	case <-ipcShutdown:
		log.Info().Msg("shutting down (requested over local IPC)")
	case err := <-served:
		if err != nil {
			ipc.Close()
			log.Error().Err(err).Msg("server stopped")
			return 1
		}
	}
	ipc.Close()
	srv.Shutdown()
	return 0
}

// LoadAuthority loads the certificate authority from dir (upstream's
// nss_db_dir), creating one on first start.
func LoadAuthority(dir string, log zerolog.Logger) (*pki.Authority, error) {
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
	return a, nil
}

// NewLogger builds the daemon's logger: human-readable lines or JSON.
func NewLogger(w io.Writer, format string, debug bool) zerolog.Logger {
	level := zerolog.InfoLevel
	if debug {
		level = zerolog.DebugLevel
	}
	if format == "json" {
		return zerolog.New(w).Level(level).With().Timestamp().Logger()
	}
	cw := zerolog.ConsoleWriter{Out: w, NoColor: true, TimeFormat: time.DateTime}
	return zerolog.New(cw).Level(level).With().Timestamp().Logger()
}

// lockPIDFile takes upstream's lock: an fcntl write lock on the pid file,
// holding "<pid>\n". A second instance fails with a clear message.
func lockPIDFile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o770); err != nil {
		return nil, fmt.Errorf("create directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// An open-file-description lock: it conflicts with upstream's fcntl
	// lock on the same file, and unlike a classic fcntl lock it is not
	// dropped when some other descriptor of the file is closed.
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("another instance is running (lock held on %s)", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteString(strconv.Itoa(os.Getpid()) + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	// Not removed at exit, as upstream; the lock goes away with the process.
	return func() { f.Close() }, nil
}

// raiseFDLimit lifts the soft open-file limit to the hard one: every client
// is a descriptor, and upstream stays at 1024 (about 1016 clients).
func raiseFDLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}
