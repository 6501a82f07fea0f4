package pairing

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/logline"
)

// Main runs the endpoint on its own ("qnetd pairing"), outside the
// add-on: for a plain Linux qnetd host, and for tests that replay pvecm.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("qnetd pairing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("l", ":22", "listen address")
	data := fs.String("data", "/var/lib/qnetd", "state directory (host keys, installed keys, uploads)")
	pki := fs.String("pki", "/etc/corosync/qnetd/nssdb", "certificate directory (corosync-qnetd's nss_db_dir)")
	pwFile := fs.String("password-file", "", "file holding the password that may install a key (empty: keys only)")
	keysFile := fs.String("authorized-keys", "", "authorized_keys file allowed to log in")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg := Config{Addr: *addr, DataDir: *data, PKIDir: *pki,
		Log: zerolog.New(logline.New(stderr, "")).With().Timestamp().Logger()}
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			fmt.Fprintln(stderr, "qnetd pairing:", err)
			return 1
		}
		cfg.Password = string(trimNewline(b))
	}
	if *keysFile != "" {
		b, err := os.ReadFile(*keysFile)
		if err != nil {
			fmt.Fprintln(stderr, "qnetd pairing:", err)
			return 1
		}
		for _, l := range splitLines(string(b)) {
			cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, l)
		}
	}
	s, err := New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "qnetd pairing:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; s.Close() }()
	if err := s.ListenAndServe(); err != nil {
		fmt.Fprintln(stderr, "qnetd pairing:", err)
		return 1
	}
	return 0
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '\n' {
			if line := s[start:i]; len(line) > 0 && line[0] != '#' {
				out = append(out, line)
			}
			start = i + 1
		}
	}
	return out
}
