package addon

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// supervisorInfo stands in for the Supervisor's GET /addons/self/info:
// it fails the first `fails` requests with 503, then answers port.
func supervisorInfo(t *testing.T, token string, fails int32, port int) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != "/addons/self/info" || r.Method != http.MethodGet:
			http.NotFound(w, r)
		case r.Header.Get("Authorization") != "Bearer "+token:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"result":"error","message":"Unauthorized"}`))
		case calls.Add(1) <= fails:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			// The real answer carries many more fields.
			_, _ = w.Write([]byte(`{"result":"ok","data":{"name":"Corosync QNetd","slug":"qnetd","ingress":true,` +
				`"ingress_entry":"/api/hassio_ingress/abc","ingress_port":` + strconv.Itoa(port) + `,"ingress_url":"/api/hassio_ingress/abc/"}}`))
		}
	}))
	t.Cleanup(s.Close)
	return s, &calls
}

// TestIngressPortFromSupervisor: with ingress_port: 0 the status page
// listens where the Supervisor says, asked again while the Supervisor
// does not answer yet.
func TestIngressPortFromSupervisor(t *testing.T) {
	s, calls := supervisorInfo(t, "tok", 2, 63403)
	var log bytes.Buffer
	got := ingressAddr(Paths{Supervisor: s.URL, SupervisorToken: "tok"}, zerolog.New(&log))
	require.Equal(t, ":63403", got)
	require.Equal(t, int32(3), calls.Load(), "two failures, then the answer")
	require.Contains(t, log.String(), `"ingress_port":63403`)

	require.Equal(t, "127.0.0.1:9", ingressAddr(Paths{IngressAddr: "127.0.0.1:9", Supervisor: s.URL, SupervisorToken: "tok"}, zerolog.Nop()),
		"the environment wins (tests, local runs)")
	require.Equal(t, ":8403", ingressAddr(Paths{Supervisor: s.URL}, zerolog.Nop()), "no Supervisor token: a local run")
}

// TestIngressPortFallback: a Supervisor that refuses the token (or never
// answers) leaves the status page on the fallback port, with the reason
// in the log.
func TestIngressPortFallback(t *testing.T) {
	defer func(w time.Duration) { supervisorWait = w }(supervisorWait)
	supervisorWait = time.Second
	s, _ := supervisorInfo(t, "right", 0, 63403)
	var log bytes.Buffer
	require.Equal(t, ":8403", ingressAddr(Paths{Supervisor: s.URL, SupervisorToken: "wrong"}, zerolog.New(&log)))
	require.Contains(t, log.String(), "cannot learn the ingress port from the Supervisor")
	require.Contains(t, log.String(), "401 Unauthorized Unauthorized")

	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"result":"ok","data":{"ingress_port":0}}`))
	}))
	defer bad.Close()
	log.Reset()
	require.Equal(t, ":8403", ingressAddr(Paths{Supervisor: bad.URL, SupervisorToken: "t"}, zerolog.New(&log)))
	require.Contains(t, log.String(), "ingress_port 0")
}

// TestHealthCheckFindsThePage: the health check dials the address the
// running add-on recorded, not a fixed port.
func TestHealthCheckFindsThePage(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		}
	}))
	defer page.Close()
	run := t.TempDir()
	p := Paths{RunDir: run}
	require.Equal(t, ":8403", healthAddr(p), "nothing recorded: the local port")
	require.NoError(t, saveWebAddr(run, page.Listener.Addr()))
	var out, errOut bytes.Buffer
	require.Equal(t, 0, healthcheck(p, &out, &errOut), errOut.String())
	require.Equal(t, `{"status":"ok"}`, out.String())
	require.NoError(t, os.WriteFile(filepath.Join(run, webAddrFile), []byte("garbage\n"), 0o644))
	errOut.Reset()
	require.Equal(t, 1, healthcheck(p, &out, &errOut))
	require.Contains(t, errOut.String(), "where the status page listens")
}
