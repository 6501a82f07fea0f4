package web

import (
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The metrics port (add-on option metrics_port) serves /metrics to
// Prometheus on the LAN: with host networking anyone there can reach it,
// so it serves nothing else, wants the bearer token when one is set, and
// bounds its connections and their time.
const (
	// MaxScrapeConns is how many connections the metrics port holds at
	// once; more wait in the kernel's backlog.
	MaxScrapeConns = 8
	// MaxScrapeHeader bounds a request's header bytes.
	MaxScrapeHeader = 8 << 10
)

// ScrapeHandler serves only GET and HEAD /metrics; token, when not empty,
// must come as "Authorization: Bearer TOKEN".
func (w *Web) ScrapeHandler(token string) http.Handler {
	metrics := promhttp.HandlerFor(w.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 2})
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(rw, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			rw.Header().Set("Allow", "GET, HEAD")
			http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if token != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(r.Header.Get("Authorization"))), want) != 1 {
			w.cfg.Log.Warn().Str("addr", r.RemoteAddr).Msg("metrics: scrape refused: no or wrong bearer token (option metrics_token)")
			rw.Header().Set("WWW-Authenticate", `Bearer realm="qnetd metrics"`)
			http.Error(rw, "unauthorized: this scrape needs the bearer token of the add-on's option metrics_token", http.StatusUnauthorized)
			return
		}
		metrics.ServeHTTP(rw, r)
	})
}

// ScrapeServer is the metrics port's HTTP server, with its time bounds.
func ScrapeServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: MaxScrapeHeader}
}

// LimitListener accepts at most n connections at once.
func LimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
