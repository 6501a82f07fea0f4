// Package addon is the Home Assistant add-on around the qnetd core: it
// reads and validates /data/options.json, bootstraps the data directory,
// maps the Supervisor's log levels, prints the start banner and runs the
// daemon with its status page and pairing endpoint. The rootfs scripts
// only call "qnetd addon init" and "qnetd addon run".
package addon

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/qnetd/certname"
)

// Options is /data/options.json as the Supervisor writes it from the
// add-on's configuration (config.yaml lists the same keys).
type Options struct {
	Port            int    `json:"port"`
	LogLevel        string `json:"log_level"`
	TLSEnabled      bool   `json:"tls_enabled"`
	PairingEnabled  bool   `json:"pairing_enabled"`
	PairingPort     int    `json:"pairing_port"`
	PairingPassword string `json:"pairing_password,omitempty"`
	// PcsEnabled turns on the pcsd-compatible endpoint for RHEL's pcs on
	// PcsPort (internal/pcsd).
	PcsEnabled     bool     `json:"pcs_enabled"`
	PcsPort        int      `json:"pcs_port"`
	AuthorizedKeys []string `json:"authorized_keys"`
	// ForgetClusters are cluster names whose pairing owner is forgotten
	// at start, so that another node's key may have them signed.
	ForgetClusters []string `json:"forget_clusters"`
	// EventHoldTime is how many seconds a cluster's state change must
	// last before it fires a Home Assistant event.
	EventHoldTime int `json:"event_hold_time"`
	// MetricsPort, when not 0, serves /metrics on that port to the LAN;
	// MetricsToken is the bearer token a scrape must send.
	MetricsPort  int    `json:"metrics_port"`
	MetricsToken string `json:"metrics_token,omitempty"`
}

// Defaults are config.yaml's options.
func Defaults() Options {
	return Options{Port: 5403, LogLevel: "info", TLSEnabled: true, PairingEnabled: true, PairingPort: 22, PcsPort: 2224, AuthorizedKeys: []string{}, ForgetClusters: []string{}, EventHoldTime: 10}
}

// OptionError names the option, the value and what is allowed.
type OptionError struct {
	Option string
	Value  any
	Want   string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("option '%s': %v is not valid: %s (change it in the add-on's Configuration tab)", e.Option, e.Value, e.Want)
}

// LogLevels are the Supervisor's seven level names, mapped onto zerolog.
// zerolog has no "notice": it logs at info, and the banner says notice.
var LogLevels = map[string]zerolog.Level{
	"trace":   zerolog.TraceLevel,
	"debug":   zerolog.DebugLevel,
	"info":    zerolog.InfoLevel,
	"notice":  zerolog.InfoLevel,
	"warning": zerolog.WarnLevel,
	"error":   zerolog.ErrorLevel,
	"fatal":   zerolog.FatalLevel,
}

// LoadOptions reads and validates an options file. Unknown keys are an
// error too: they mean config.yaml and this code disagree.
func LoadOptions(path string) (Options, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Options{}, fmt.Errorf("read add-on options: %w", err)
	}
	o := Defaults()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Options{}, &OptionError{Option: te.Field, Value: "a " + te.Value, Want: "expected " + te.Type.String()}
		}
		return Options{}, fmt.Errorf("read add-on options %s: %w", path, err)
	}
	return o, o.Validate()
}

// Validate checks every option; the first problem is returned.
func (o Options) Validate() error {
	for _, check := range []func() error{o.checkPort, o.checkLogLevel, o.checkPairingPort, o.checkPcsPort,
		o.checkEventHoldTime, o.checkMetrics, o.checkSecrets, o.checkLists} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (o Options) checkPort() error {
	if o.Port < 1 || o.Port > 65535 {
		return &OptionError{"port", o.Port, "a TCP port from 1 to 65535 (corosync-qdevice uses 5403)"}
	}
	return nil
}

func (o Options) checkLogLevel() error {
	if _, ok := LogLevels[o.LogLevel]; !ok {
		return &OptionError{"log_level", fmt.Sprintf("%q", o.LogLevel), "one of trace, debug, info, notice, warning, error, fatal"}
	}
	return nil
}

func (o Options) checkPairingPort() error {
	switch {
	case !o.PairingEnabled:
	case o.PairingPort < 1 || o.PairingPort > 65535:
		return &OptionError{"pairing_port", o.PairingPort, "a TCP port from 1 to 65535 (pvecm uses 22)"}
	case o.PairingPort == o.Port:
		return &OptionError{"pairing_port", o.PairingPort, fmt.Sprintf("a port other than the qnetd port (%d)", o.Port)}
	}
	return nil
}

func (o Options) checkPcsPort() error {
	switch {
	case !o.PcsEnabled:
	case o.PcsPort < 1 || o.PcsPort > 65535:
		return &OptionError{"pcs_port", o.PcsPort, "a TCP port from 1 to 65535 (pcs uses 2224)"}
	case o.PcsPort == o.Port:
		return &OptionError{"pcs_port", o.PcsPort, fmt.Sprintf("a port other than the qnetd port (%d)", o.Port)}
	case o.PairingEnabled && o.PcsPort == o.PairingPort:
		return &OptionError{"pcs_port", o.PcsPort, fmt.Sprintf("a port other than the pairing port (%d)", o.PairingPort)}
	}
	return nil
}

func (o Options) checkEventHoldTime() error {
	if o.EventHoldTime < 0 || o.EventHoldTime > 3600 {
		return &OptionError{"event_hold_time", o.EventHoldTime, "seconds from 0 to 3600 (0: an event for every change; 10 lets a qdevice restart pass quietly)"}
	}
	return nil
}

func (o Options) checkMetrics() error {
	switch m := o.MetricsPort; {
	case m < 0 || m > 65535:
		return &OptionError{"metrics_port", m, "0 (off) or a TCP port from 1 to 65535 for Prometheus, e.g. 9403"}
	case m != 0 && (m == o.Port || (o.PairingEnabled && m == o.PairingPort) || (o.PcsEnabled && m == o.PcsPort)):
		return &OptionError{"metrics_port", m, "a port other than the qnetd, pairing and pcs ports, e.g. 9403"}
	}
	return nil
}

func (o Options) checkSecrets() error {
	if o.MetricsToken != "" && len(o.MetricsToken) < 16 {
		return &OptionError{"metrics_token", "(hidden)", "at least 16 characters (e.g. from: openssl rand -hex 16), or empty for none"}
	}
	if o.PairingPassword != "" && len(o.PairingPassword) < 8 {
		return &OptionError{"pairing_password", "(hidden)", "at least 8 characters, or empty to allow only keys"}
	}
	return nil
}

func (o Options) checkLists() error {
	for i, c := range o.ForgetClusters {
		if err := certname.Check(c); err != nil {
			return &OptionError{fmt.Sprintf("forget_clusters[%d]", i), fmt.Sprintf("%q", abbreviate(c)),
				"a cluster name as pairing signed it: letters, digits, '.', '_' and '-'"}
		}
	}
	for i, k := range o.AuthorizedKeys {
		if err := checkAuthorizedKey(k); err != nil {
			return &OptionError{fmt.Sprintf("authorized_keys[%d]", i), fmt.Sprintf("%q", abbreviate(k)), err.Error()}
		}
	}
	return nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// checkAuthorizedKey accepts one authorized_keys line: "TYPE BASE64 [comment]".
func checkAuthorizedKey(line string) error {
	f := strings.Fields(line)
	if len(f) < 2 {
		return errors.New("an SSH public key line like \"ssh-ed25519 AAAA... root@pve\"")
	}
	switch f[0] {
	case "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
		"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com":
	default:
		return fmt.Errorf("an SSH public key; key type %q is not one of ssh-ed25519, ssh-rsa, ecdsa-sha2-*", f[0])
	}
	if _, err := base64.StdEncoding.DecodeString(f[1]); err != nil {
		return errors.New("an SSH public key; its key data is not base64")
	}
	return nil
}
