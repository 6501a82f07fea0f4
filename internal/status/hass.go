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
	"unicode"

	"github.com/rs/zerolog"
)

// MaxEntityClusters is how many clusters have Home Assistant entities at
// a time. Without TLS any client can make up clusters, and every entity
// it made would stay in Home Assistant's state machine and in the
// publisher's memory; a home has a handful of clusters.
const MaxEntityClusters = 32

// HomeAssistant publishes each cluster's state as entities through the
// Supervisor's proxy to the Home Assistant API (config.yaml:
// homeassistant_api: true): binary_sensor.qnetd_<cluster>_vote ("quorate
// with qdevice vote") and sensor.qnetd_<cluster>_nodes (connected nodes).
// At most MaxEntityClusters clusters have entities, the oldest first; the
// others wait for a free place, and the first time there is none it says
// so in the log.
type HomeAssistant struct {
	// BaseURL is the API root, normally http://supervisor/core/api.
	BaseURL string
	// Token is SUPERVISOR_TOKEN.
	Token  string
	Client *http.Client
	Log    zerolog.Logger

	mu        sync.Mutex
	sent      map[string]*entities // by entity name (EntityName)
	overLimit bool                 // clusters were left out and that was logged
}

// entities is what was last sent for one cluster's two entities; a body
// is empty until it was sent successfully.
type entities struct {
	vote, nodes         state
	voteBody, nodesBody string
}

// MaxEntityName is the longest <cluster> part of an entity id, which keeps
// whole entity ids well under what Home Assistant accepts.
const MaxEntityName = 48

// EntityName is the <cluster> part of a cluster's entity ids: lower case,
// anything but letters and digits becomes "_", without "_" at either end.
// A name longer than MaxEntityName is cut and ends in a hash of the whole
// cluster name.
func EntityName(cluster string) string {
	b := make([]byte, 0, MaxEntityName)
	underscores := 0 // pending: written only when a letter or digit follows
	long := false
	for _, r := range cluster {
		r = unicode.ToLower(r)
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			if len(b) > 0 {
				underscores++
			}
			continue
		}
		if len(b)+underscores+1 > MaxEntityName {
			long = true
			break
		}
		for ; underscores > 0; underscores-- {
			b = append(b, '_')
		}
		b = append(b, byte(r))
	}
	switch {
	case long:
		keep := MaxEntityName - 1 - hashChars
		for ; underscores > 0 && len(b) < keep; underscores-- {
			b = append(b, '_')
		}
		return string(b[:min(len(b), keep)]) + "_" + nameHash(cluster)
	case len(b) == 0:
		return "unnamed"
	}
	return string(b)
}

// EntityID makes an entity id from a cluster name (see EntityName).
func EntityID(domain, cluster, suffix string) string {
	return entityID(domain, EntityName(cluster), suffix)
}

func entityID(domain, name, suffix string) string {
	return domain + ".qnetd_" + name + "_" + suffix
}

type state struct {
	State      string         `json:"state"`
	Attributes map[string]any `json:"attributes"`
}

// Publish sends the entities that changed since the last call. A cluster
// that disappeared is reported once as without vote and without nodes
// and then forgotten, which frees its place.
func (h *HomeAssistant) Publish(v View) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sent == nil {
		h.sent = map[string]*entities{}
	}
	live := make(map[string]ClusterView, len(v.Clusters))
	var order []string // entity names in the clusters' creation order
	for _, c := range v.Clusters {
		name := EntityName(c.Name)
		if _, dup := live[name]; dup {
			continue // two clusters, one entity id: the older keeps it
		}
		live[name] = c
		order = append(order, name)
	}
	for name, e := range h.sent {
		if _, ok := live[name]; ok {
			continue
		}
		vote, nodes := e.vote, e.nodes
		vote.State, nodes.State = "off", "0"
		vote.Attributes = with(vote.Attributes, "nodes_with_vote", []uint32{})
		nodes.Attributes = with(nodes.Attributes, "node_ids", []uint32{})
		if h.send(entityID("binary_sensor", name, "vote"), vote, &e.voteBody) &&
			h.send(entityID("sensor", name, "nodes"), nodes, &e.nodesBody) {
			delete(h.sent, name)
		}
	}
	var left []string
	for _, name := range order {
		e := h.sent[name]
		if e == nil {
			if len(h.sent) >= MaxEntityClusters {
				left = append(left, name)
				continue
			}
			e = &entities{}
			h.sent[name] = e
		}
		c := live[name]
		on := "off"
		if c.HasVote {
			on = "on"
		}
		nodes, voting := []uint32{}, []uint32{}
		for _, n := range c.Nodes {
			nodes = append(nodes, n.ID)
			if n.Vote == "ACK" {
				voting = append(voting, n.ID)
			}
		}
		e.vote = state{on, map[string]any{
			"friendly_name": fmt.Sprintf("QNetd %s quorate with qdevice vote", c.Name),
			"cluster":       c.Name, "algorithm": c.Algorithm, "nodes_with_vote": voting, "icon": "mdi:vote"}}
		e.nodes = state{fmt.Sprint(len(c.Nodes)), map[string]any{
			"friendly_name": fmt.Sprintf("QNetd %s connected nodes", c.Name),
			"cluster":       c.Name, "node_ids": nodes, "unit_of_measurement": "nodes", "icon": "mdi:server-network"}}
		h.send(entityID("binary_sensor", name, "vote"), e.vote, &e.voteBody)
		h.send(entityID("sensor", name, "nodes"), e.nodes, &e.nodesBody)
	}
	switch {
	case len(left) == 0:
		h.overLimit = false
	case !h.overLimit:
		h.overLimit = true
		h.Log.Warn().Int("limit", MaxEntityClusters).Int("clusters_left_out", len(left)).Str("first_left_out", left[0]).
			Msg("too many clusters for Home Assistant entities: the others get entities when a cluster with entities leaves")
	}
}

// with is a copy of attrs with key set to value.
func with(attrs map[string]any, key string, value any) map[string]any {
	out := make(map[string]any, len(attrs)+1)
	for k, v := range attrs {
		out[k] = v
	}
	out[key] = value
	return out
}

// send posts st to the entity unless *last already holds the same body,
// and records the body once it was accepted. It says whether Home
// Assistant has st now.
func (h *HomeAssistant) send(id string, st state, last *string) bool {
	body, err := json.Marshal(st)
	if err != nil {
		return false
	}
	if *last == string(body) {
		return true
	}
	if err := h.post(id, body); err != nil {
		h.Log.Warn().Err(err).Str("entity", id).Msg("cannot update Home Assistant entity")
		return false
	}
	*last = string(body)
	return true
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
