package addon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// LocalIngressPort is where the status page listens when no Supervisor
// assigns a port (a local run, or a Supervisor that did not answer).
const LocalIngressPort = 8403

// supervisorWait bounds how long the add-on waits for the Supervisor to
// say which ingress port it assigned. The Supervisor starts add-ons only
// once it is up, so it normally answers at once.
var supervisorWait = 30 * time.Second

// webAddrFile, in the run dir, holds the address the status page bound,
// for the health check, which runs as a separate process.
const webAddrFile = "web.addr"

// ingressAddr is where the status page listens: QNETD_ADDON_INGRESS_ADDR
// when set; else the port the Supervisor assigned (config.yaml has
// ingress_port: 0, so that a port taken on the host cannot stop the
// add-on); else LocalIngressPort.
func ingressAddr(p Paths, log zerolog.Logger) string {
	if p.IngressAddr != "" {
		return p.IngressAddr
	}
	fallback := ":" + strconv.Itoa(LocalIngressPort)
	if p.SupervisorToken == "" {
		return fallback
	}
	ctx, cancel := context.WithTimeout(context.Background(), supervisorWait)
	defer cancel()
	port, err := assignedIngressPort(ctx, p)
	if err != nil {
		log.Error().Err(err).Int("port", LocalIngressPort).
			Msg("cannot learn the ingress port from the Supervisor: the status page listens on the fallback port, which Home Assistant's Open Web UI may not reach; restart the add-on")
		return fallback
	}
	log.Info().Int("ingress_port", port).Msg("the status page listens on the ingress port the Supervisor assigned")
	return ":" + strconv.Itoa(port)
}

// assignedIngressPort asks the Supervisor (GET /addons/self/info) for the
// add-on's ingress port, again with a growing pause until ctx ends.
func assignedIngressPort(ctx context.Context, p Paths) (int, error) {
	pause := 250 * time.Millisecond
	for {
		port, err := askIngressPort(ctx, p)
		if err == nil {
			return port, nil
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 4*time.Second)
	}
}

func askIngressPort(ctx context.Context, p Paths) (int, error) {
	url := strings.TrimRight(p.Supervisor, "/") + "/addons/self/info"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("ingress port from the Supervisor: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+p.SupervisorToken)
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("ingress port from the Supervisor: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var r struct {
		Result  string `json:"result"`
		Message string `json:"message"`
		Data    struct {
			IngressPort int `json:"ingress_port"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(body, &r)
		return 0, fmt.Errorf("ingress port from the Supervisor: %s %s", resp.Status, clipText(r.Message))
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("ingress port from the Supervisor: %w", err)
	}
	if r.Result != "ok" || r.Data.IngressPort < 1 || r.Data.IngressPort > 65535 {
		return 0, fmt.Errorf("ingress port from the Supervisor: result %q, ingress_port %d", clipText(r.Result), r.Data.IngressPort)
	}
	return r.Data.IngressPort, nil
}

func clipText(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// saveWebAddr records the status page's address for the health check.
func saveWebAddr(runDir string, addr net.Addr) error {
	f := filepath.Join(runDir, webAddrFile)
	if err := os.WriteFile(f+".tmp", []byte(addr.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("record the status page's address: %w", err)
	}
	return os.Rename(f+".tmp", f)
}

// healthAddr is the address the health check dials: the one the running
// daemon recorded, else the one it would choose without a Supervisor.
func healthAddr(p Paths) string {
	if b, err := os.ReadFile(filepath.Join(p.RunDir, webAddrFile)); err == nil {
		return strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if p.IngressAddr != "" {
		return p.IngressAddr
	}
	return ":" + strconv.Itoa(LocalIngressPort)
}
