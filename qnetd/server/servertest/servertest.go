// Package servertest starts a qnetd server for tests, like net/http's
// httptest: on a free loopback port, TLS off unless the caller changes the
// configuration, stopped when the test ends.
package servertest

import (
	"net"
	"testing"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/qnetd/server"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Start runs a server; mutate (optional) adjusts the configuration first.
func Start(t testing.TB, mutate func(*server.Config)) (*server.Server, net.Listener) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.Engine.TLS = wire.TLSUnsupported
	cfg.Log = zerolog.Nop()
	if mutate != nil {
		mutate(&cfg)
	}
	srv := server.New(cfg)
	ln, err := srv.Listen()
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Shutdown)
	return srv, ln
}
