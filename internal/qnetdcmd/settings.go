// Package qnetdcmd is the corosync-qnetd command line: upstream's flags and
// advanced (-S) settings, the COROSYNC_QNETD_OPTIONS convention and QNETD_*
// environment variables, turned into a server configuration.
package qnetdcmd

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Settings is everything corosync-qnetd can be told. Environment variables
// (QNETD_*) set the defaults; COROSYNC_QNETD_OPTIONS and then the command
// line override them.
type Settings struct {
	Foreground bool   `env:"FOREGROUND"`
	Debug      int    `env:"DEBUG"`
	Family     string `env:"FAMILY"` // "", "4", "6"
	ListenAddr string `env:"LISTEN_ADDR"`
	Port       int    `env:"PORT" envDefault:"5403"`
	TLS        string `env:"TLS" envDefault:"on"` // off, on, req
	ClientCert bool   `env:"CLIENT_CERT_REQUIRED" envDefault:"true"`
	MaxClients int64  `env:"MAX_CLIENTS"`
	LogFormat  string `env:"LOG_FORMAT" envDefault:"console"` // console, json

	ListenBacklog          int64   `env:"LISTEN_BACKLOG" envDefault:"10"`
	MaxClientSendBuffers   int64   `env:"MAX_CLIENT_SEND_BUFFERS" envDefault:"32"`
	MaxClientSendSize      int64   `env:"MAX_CLIENT_SEND_SIZE" envDefault:"32768"`
	MaxClientReceiveSize   int64   `env:"MAX_CLIENT_RECEIVE_SIZE" envDefault:"32768"`
	NSSDBDir               string  `env:"NSS_DB_DIR" envDefault:"/etc/corosync/qnetd/nssdb"`
	CertNickname           string  `env:"CERT_NICKNAME" envDefault:"QNetd Cert"`
	HeartbeatIntervalMin   int64   `env:"HEARTBEAT_INTERVAL_MIN" envDefault:"1000"`
	HeartbeatIntervalMax   int64   `env:"HEARTBEAT_INTERVAL_MAX" envDefault:"120000"`
	DPDEnabled             bool    `env:"DPD_ENABLED" envDefault:"true"`
	DPDIntervalCoefficient float64 `env:"DPD_INTERVAL_COEFFICIENT" envDefault:"1.5"`
	LockFile               string  `env:"LOCK_FILE" envDefault:"/var/run/corosync-qnetd/corosync-qnetd.pid"`
	LocalSocketFile        string  `env:"LOCAL_SOCKET_FILE" envDefault:"/var/run/corosync-qnetd/corosync-qnetd.sock"`
	LocalSocketUmask       string  `env:"LOCAL_SOCKET_UMASK"`
	LocalSocketGID         string  `env:"LOCAL_SOCKET_GID" envDefault:"-1"`
	LocalSocketBacklog     int64   `env:"LOCAL_SOCKET_BACKLOG" envDefault:"10"`
	IPCMaxClients          int64   `env:"IPC_MAX_CLIENTS" envDefault:"10"`
	IPCMaxReceiveSize      int64   `env:"IPC_MAX_RECEIVE_SIZE" envDefault:"4096"`
	IPCMaxSendSize         int64   `env:"IPC_MAX_SEND_SIZE" envDefault:"10485760"`
	KAPTieBreaker          bool    `env:"KEEP_ACTIVE_PARTITION_TIE_BREAKER"`

	// Not upstream's: limits on connections that have not completed INIT
	// (qnetd/server/limits.go); 0 = none.
	InitTimeout                    int64 `env:"INIT_TIMEOUT" envDefault:"20000"` // ms
	MaxClientsBeforeInit           int64 `env:"MAX_CLIENTS_BEFORE_INIT" envDefault:"4096"`
	MaxClientsBeforeInitPerAddress int64 `env:"MAX_CLIENTS_BEFORE_INIT_PER_ADDRESS" envDefault:"32"`
	FDReserve                      int64 `env:"FD_RESERVE" envDefault:"128"`

	// Warnings collects non-fatal remarks (deprecated options).
	Warnings []string `env:"-"`
}

// FromEnv returns upstream's defaults overridden by QNETD_* variables.
func FromEnv(environ map[string]string) (*Settings, error) {
	s := &Settings{}
	opts := env.Options{Prefix: "QNETD_", Environment: environ}
	if err := env.ParseWithOptions(s, opts); err != nil {
		// Name the variable, not the Go field.
		var agg env.AggregateError
		if errors.As(err, &agg) {
			params, _ := env.GetFieldParamsWithOptions(s, opts)
			for _, e := range agg.Errors {
				var pe env.ParseError
				if errors.As(e, &pe) {
					for _, p := range params {
						if p.OwnKey == strings.TrimPrefix(p.Key, "QNETD_") && strings.EqualFold(strings.ReplaceAll(p.OwnKey, "_", ""), pe.Name) {
							return nil, fmt.Errorf("environment variable %s=%q: want %s", p.Key, environ[p.Key], pe.Type)
						}
					}
				}
			}
		}
		return nil, fmt.Errorf("environment: %w", err)
	}
	return s, nil
}

// ParseBool accepts upstream's spellings: yes/on/1 and no/off/0, any case.
func ParseBool(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "yes", "on", "1":
		return true, true
	case "no", "off", "0":
		return false, true
	}
	return false, false
}

// parseInt is upstream's strict decimal parse with an inclusive range.
func parseInt(v string, min, max int64) (int64, bool) {
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil || x < min || x > max {
		return 0, false
	}
	return x, true
}

// ApplyAdvanced applies one -S list: "name=value,name2=value2". Names are
// case-insensitive; a bare name means an empty value; parsing stops at an
// empty item.
func (s *Settings) ApplyAdvanced(list string) error {
	for _, item := range strings.Split(list, ",") {
		if item == "" {
			return nil
		}
		name, value, _ := strings.Cut(item, "=")
		if err := s.setAdvanced(strings.ToLower(name), value); err != nil {
			return err
		}
	}
	return nil
}

func invalid(name, value, want string) error {
	return fmt.Errorf("Invalid value '%s' for option '%s' (expected %s)", value, name, want)
}

func (s *Settings) setAdvanced(name, v string) error {
	intOpt := func(dst *int64, min, max int64, want string) error {
		x, ok := parseInt(v, min, max)
		if !ok {
			return invalid(name, v, want)
		}
		*dst = x
		return nil
	}
	boolOpt := func(dst *bool) error {
		b, ok := ParseBool(v)
		if !ok {
			return invalid(name, v, "on/off, yes/no or 1/0")
		}
		*dst = b
		return nil
	}
	const llMax = math.MaxInt64
	switch name {
	case "listen_backlog":
		return intOpt(&s.ListenBacklog, 1, math.MaxInt32, "1..2147483647")
	case "max_client_send_buffers":
		return intOpt(&s.MaxClientSendBuffers, 2, llMax, "an integer of at least 2")
	case "max_client_send_size":
		return intOpt(&s.MaxClientSendSize, 16, llMax, "an integer of at least 16")
	case "max_client_receive_size":
		return intOpt(&s.MaxClientReceiveSize, 16, llMax, "an integer of at least 16")
	case "nss_db_dir":
		s.NSSDBDir = v
	case "cert_nickname":
		s.CertNickname = v
	case "heartbeat_interval_min":
		return intOpt(&s.HeartbeatIntervalMin, 1, math.MaxUint32, "1..4294967295 (ms)")
	case "heartbeat_interval_max":
		return intOpt(&s.HeartbeatIntervalMax, 1, math.MaxUint32, "1..4294967295 (ms)")
	case "dpd_enabled":
		return boolOpt(&s.DPDEnabled)
	case "dpd_interval_coefficient":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 1 || f > 1000 {
			return invalid(name, v, "a number from 1 to 1000")
		}
		s.DPDIntervalCoefficient = f
	case "dpd_interval":
		s.Warnings = append(s.Warnings, "dpd_interval option is deprecated and has no effect; use dpd_interval_coefficient")
	case "lock_file":
		s.LockFile = v
	case "local_socket_file":
		s.LocalSocketFile = v
	case "local_socket_umask":
		if v != "" {
			if x, err := strconv.ParseUint(v, 8, 32); err != nil || x > 0o777 {
				return invalid(name, v, "an octal number from 0 to 0777, or empty")
			}
		}
		s.LocalSocketUmask = v
	case "local_socket_gid":
		s.LocalSocketGID = v
	case "local_socket_backlog":
		return intOpt(&s.LocalSocketBacklog, 1, math.MaxInt32, "1..2147483647")
	case "ipc_max_clients":
		return intOpt(&s.IPCMaxClients, 0, llMax, "an integer of at least 0")
	case "ipc_max_receive_size":
		return intOpt(&s.IPCMaxReceiveSize, 1024, llMax, "an integer of at least 1024")
	case "ipc_max_send_size":
		return intOpt(&s.IPCMaxSendSize, 1024, llMax, "an integer of at least 1024")
	case "keep_active_partition_tie_breaker":
		return boolOpt(&s.KAPTieBreaker)
	case "init_timeout":
		return intOpt(&s.InitTimeout, 0, math.MaxUint32, "0..4294967295 (ms, 0 = none)")
	case "max_clients_before_init":
		return intOpt(&s.MaxClientsBeforeInit, 0, math.MaxInt32, "0..2147483647 (0 = no limit)")
	case "max_clients_before_init_per_address":
		return intOpt(&s.MaxClientsBeforeInitPerAddress, 0, math.MaxInt32, "0..2147483647 (0 = no limit)")
	case "fd_reserve":
		return intOpt(&s.FDReserve, 0, math.MaxInt32, "0..2147483647")
	default:
		return fmt.Errorf("Unknown option '%s'", name)
	}
	return nil
}
