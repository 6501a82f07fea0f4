package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// HomeAssistant publishes each cluster's state as entities through the
// Supervisor's proxy to the Home Assistant API (config.yaml:
// homeassistant_api: true): binary_sensor.qnetd_<cluster>_vote ("quorate
// with qdevice vote") and sensor.qnetd_<cluster>_nodes (connected nodes).
type HomeAssistant struct {
	// BaseURL is the API root, normally http://supervisor/core/api.
	BaseURL string
	// Token is SUPERVISOR_TOKEN.
	Token  string
	Client *http.Client
	Log    zerolog.Logger

	mu   sync.Mutex
	sent map[string]string // entity id -> last body sent
}

// EntityID makes an entity id from a cluster name: lower case, anything
// but letters and digits becomes "_".
func EntityID(domain, cluster, suffix string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(cluster) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := strings.Trim(b.String(), "_")
	if name == "" {
		name = "unnamed"
	}
	return fmt.Sprintf("%s.qnetd_%s_%s", domain, name, suffix)
}

type state struct {
	State      string         `json:"state"`
	Attributes map[string]any `json:"attributes"`
}

// Publish sends the entities that changed since the last call. Clusters
// that disappeared are reported as without vote and without nodes.
func (h *HomeAssistant) Publish(v View) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sent == nil {
		h.sent = map[string]string{}
	}
	want := map[string]state{}
	for _, c := range v.Clusters {
		on := "off"
		if c.HasVote {
			on = "on"
		}
		var nodes, voting []uint32
		for _, n := range c.Nodes {
			nodes = append(nodes, n.ID)
			if n.Vote == "ACK" {
				voting = append(voting, n.ID)
			}
		}
		want[EntityID("binary_sensor", c.Name, "vote")] = state{on, map[string]any{
			"friendly_name": fmt.Sprintf("QNetd %s quorate with qdevice vote", c.Name),
			"cluster":       c.Name, "algorithm": c.Algorithm, "nodes_with_vote": voting, "icon": "mdi:vote"}}
		want[EntityID("sensor", c.Name, "nodes")] = state{fmt.Sprint(len(c.Nodes)), map[string]any{
			"friendly_name": fmt.Sprintf("QNetd %s connected nodes", c.Name),
			"cluster":       c.Name, "node_ids": nodes, "unit_of_measurement": "nodes", "icon": "mdi:server-network"}}
	}
	for id, body := range h.sent {
		if _, ok := want[id]; ok || body == "" {
			continue
		}
		var old state
		_ = json.Unmarshal([]byte(body), &old)
		if strings.HasPrefix(id, "binary_sensor.") {
			old.State = "off"
		} else {
			old.State = "0"
		}
		want[id] = old
	}
	for id, st := range want {
		body, _ := json.Marshal(st)
		if h.sent[id] == string(body) {
			continue
		}
		if err := h.post(id, body); err != nil {
			h.Log.Warn().Err(err).Str("entity", id).Msg("cannot update Home Assistant entity")
			continue
		}
		h.sent[id] = string(body)
	}
}

func (h *HomeAssistant) post(id string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(h.BaseURL, "/")+"/states/"+id, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	req.Header.Set("Content-Type", "application/json")
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /states/%s: %s", id, resp.Status)
	}
	return nil
}
