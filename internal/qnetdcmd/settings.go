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
	set := advancedOpts[name]
	if set == nil {
		return fmt.Errorf("Unknown option '%s'", name)
	}
	return set(s, name, v)
}

// advancedOpt checks and stores one -S option's value.
type advancedOpt func(s *Settings, name, v string) error

// advancedOpts describes every -S option, with upstream's bounds.
var advancedOpts = map[string]advancedOpt{
	"listen_backlog":                      intOpt(func(s *Settings) *int64 { return &s.ListenBacklog }, 1, math.MaxInt32, "1..2147483647"),
	"max_client_send_buffers":             intOpt(func(s *Settings) *int64 { return &s.MaxClientSendBuffers }, 2, math.MaxInt64, "an integer of at least 2"),
	"max_client_send_size":                intOpt(func(s *Settings) *int64 { return &s.MaxClientSendSize }, 16, math.MaxInt64, "an integer of at least 16"),
	"max_client_receive_size":             intOpt(func(s *Settings) *int64 { return &s.MaxClientReceiveSize }, 16, math.MaxInt64, "an integer of at least 16"),
	"nss_db_dir":                          strOpt(func(s *Settings) *string { return &s.NSSDBDir }),
	"cert_nickname":                       strOpt(func(s *Settings) *string { return &s.CertNickname }),
	"heartbeat_interval_min":              intOpt(func(s *Settings) *int64 { return &s.HeartbeatIntervalMin }, 1, math.MaxUint32, "1..4294967295 (ms)"),
	"heartbeat_interval_max":              intOpt(func(s *Settings) *int64 { return &s.HeartbeatIntervalMax }, 1, math.MaxUint32, "1..4294967295 (ms)"),
	"dpd_enabled":                         boolOpt(func(s *Settings) *bool { return &s.DPDEnabled }),
	"dpd_interval_coefficient":            setDPDCoefficient,
	"dpd_interval":                        setDPDInterval,
	"lock_file":                           strOpt(func(s *Settings) *string { return &s.LockFile }),
	"local_socket_file":                   strOpt(func(s *Settings) *string { return &s.LocalSocketFile }),
	"local_socket_umask":                  setUmask,
	"local_socket_gid":                    strOpt(func(s *Settings) *string { return &s.LocalSocketGID }),
	"local_socket_backlog":                intOpt(func(s *Settings) *int64 { return &s.LocalSocketBacklog }, 1, math.MaxInt32, "1..2147483647"),
	"ipc_max_clients":                     intOpt(func(s *Settings) *int64 { return &s.IPCMaxClients }, 0, math.MaxInt64, "an integer of at least 0"),
	"ipc_max_receive_size":                intOpt(func(s *Settings) *int64 { return &s.IPCMaxReceiveSize }, 1024, math.MaxInt64, "an integer of at least 1024"),
	"ipc_max_send_size":                   intOpt(func(s *Settings) *int64 { return &s.IPCMaxSendSize }, 1024, math.MaxInt64, "an integer of at least 1024"),
	"keep_active_partition_tie_breaker":   boolOpt(func(s *Settings) *bool { return &s.KAPTieBreaker }),
	"init_timeout":                        intOpt(func(s *Settings) *int64 { return &s.InitTimeout }, 0, math.MaxUint32, "0..4294967295 (ms, 0 = none)"),
	"max_clients_before_init":             intOpt(func(s *Settings) *int64 { return &s.MaxClientsBeforeInit }, 0, math.MaxInt32, "0..2147483647 (0 = no limit)"),
	"max_clients_before_init_per_address": intOpt(func(s *Settings) *int64 { return &s.MaxClientsBeforeInitPerAddress }, 0, math.MaxInt32, "0..2147483647 (0 = no limit)"),
	"fd_reserve":                          intOpt(func(s *Settings) *int64 { return &s.FDReserve }, 0, math.MaxInt32, "0..2147483647"),
}

func intOpt(field func(*Settings) *int64, min, max int64, want string) advancedOpt {
	return func(s *Settings, name, v string) error {
		x, ok := parseInt(v, min, max)
		if !ok {
			return invalid(name, v, want)
		}
		*field(s) = x
		return nil
	}
}

func boolOpt(field func(*Settings) *bool) advancedOpt {
	return func(s *Settings, name, v string) error {
		b, ok := ParseBool(v)
		if !ok {
			return invalid(name, v, "on/off, yes/no or 1/0")
		}
		*field(s) = b
		return nil
	}
}

func strOpt(field func(*Settings) *string) advancedOpt {
	return func(s *Settings, _, v string) error {
		*field(s) = v
		return nil
	}
}

func setDPDCoefficient(s *Settings, name, v string) error {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 1 || f > 1000 {
		return invalid(name, v, "a number from 1 to 1000")
	}
	s.DPDIntervalCoefficient = f
	return nil
}

func setDPDInterval(s *Settings, _, _ string) error {
	s.Warnings = append(s.Warnings, "dpd_interval option is deprecated and has no effect; use dpd_interval_coefficient")
	return nil
}

func setUmask(s *Settings, name, v string) error {
	if v != "" {
		if x, err := strconv.ParseUint(v, 8, 32); err != nil || x > 0o777 {
			return invalid(name, v, "an octal number from 0 to 0777, or empty")
		}
	}
	s.LocalSocketUmask = v
	return nil
}
