package qnetdcmd

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/adminipc"
	"github.com/qnetd-addon/qnetd/internal/daemon"
	"github.com/qnetd-addon/qnetd/internal/getopt"
	"github.com/qnetd-addon/qnetd/internal/logbatch"
	"github.com/qnetd-addon/qnetd/internal/logline"
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
		action, err := s.apply(o)
		if err != nil {
			return nil, "", err
		}
		if action != "" {
			return s, action, nil
		}
	}
	return s, "", nil
}

// apply applies one command-line option; action is "help" or "version"
// when the option asks for that instead of a run.
func (s *Settings) apply(o getopt.Opt) (action string, err error) {
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
		return "help", nil
	case 'v':
		return "version", nil
	default:
		return "", s.applyArg(o.Name, o.Arg)
	}
	return "", nil
}

// applyArg applies an option that takes an argument.
func (s *Settings) applyArg(name byte, arg string) error {
	switch name {
	case 'c':
		b, ok := ParseBool(arg)
		if !ok {
			return fmt.Errorf("client_cert_required should be on or off (got %q)", arg)
		}
		s.ClientCert = b
	case 'l':
		s.ListenAddr = arg
	case 'm':
		x, ok := parseInt(arg, 0, 1<<63-1)
		if !ok {
			return fmt.Errorf("max clients value %q is invalid: want a whole number, 0 = unlimited", arg)
		}
		s.MaxClients = x
	case 'p':
		// 0 (any free port, logged at start) is ours, for tests that
		// must not guess a free port.
		x, ok := parseInt(arg, 0, 65535)
		if !ok {
			return fmt.Errorf("listen port %q is invalid: want 1..65535 (0: any free port)", arg)
		}
		s.Port = int(x)
	case 's':
		return s.setTLS(arg)
	case 'S':
		return s.ApplyAdvanced(arg)
	}
	return nil
}

func (s *Settings) setTLS(arg string) error {
	switch strings.ToLower(arg) {
	case "on", "off", "req":
		s.TLS = strings.ToLower(arg)
	case "required":
		// upstream's man page says "required" but its parser only
		// takes "req"; accept both.
		s.TLS = "req"
	default:
		return fmt.Errorf("tls must be one of on, off, req (got %q)", arg)
	}
	return nil
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

// DaemonConfig translates the settings into the daemon's configuration.
func (s *Settings) DaemonConfig(log zerolog.Logger) (daemon.Config, error) {
	scfg, err := s.ServerConfig(log)
	if err != nil {
		return daemon.Config{}, err
	}
	return daemon.Config{
		Server:   scfg,
		PKIDir:   s.NSSDBDir,
		LockFile: s.LockFile,
		IPC: adminipc.Config{Path: s.LocalSocketFile, Umask: s.LocalSocketUmask, GID: s.LocalSocketGID,
			Backlog: int(min(s.LocalSocketBacklog, 1<<30)), MaxClients: s.IPCMaxClients,
			MaxReceiveSize: s.IPCMaxReceiveSize, MaxSendSize: s.IPCMaxSendSize,
			Info: adminipc.ServerInfo{MaxClientSendSize: s.MaxClientSendSize, MaxClientReceiveSize: s.MaxClientReceiveSize}},
		Log: log,
	}, nil
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
	// Signals are taken from here on: a SIGTERM during start-up is a clean stop.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The daemon's lines for one event go out in one write (logbatch).
	logs := logbatch.New(stderr)
	log := NewLogger(logs, s.LogFormat, s.Debug > 0)
	for _, w := range s.Warnings {
		log.Warn().Str("warning", w).Msg("setting ignored")
	}
	cfg, err := s.DaemonConfig(log)
	if err != nil {
		log.Error().Err(err).Msg("invalid configuration")
		return 1
	}
	cfg.Server.LogBatch = logs
	if err := daemon.Run(ctx, cfg); err != nil {
		log.Error().Err(err).Msg("corosync-qnetd stopped")
		return 1
	}
	return 0
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
	return zerolog.New(logline.New(w, time.DateTime)).Level(level).With().Timestamp().Logger()
}
