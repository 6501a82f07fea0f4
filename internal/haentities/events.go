package haentities

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/internal/statewatch"
)

// EventType is the Home Assistant event fired when a cluster's state
// change has lasted the hold time (DOCS.md: "Events").
const EventType = "qnetd_cluster_state_changed"

// eventQueue bounds the events waiting for Home Assistant: a burst of
// clusters changing at once while Home Assistant restarts must not grow
// memory; the oldest waiting events stay, the newest are dropped and
// counted.
const eventQueue = 64

// EventData is an event's data as automations read it
// (trigger.event.data.new_state and so on).
type EventData struct {
	// Cluster is the name fit for display; ClusterID the cluster's Key,
	// the middle part of its entity ids.
	Cluster   string `json:"cluster"`
	ClusterID string `json:"cluster_id"`
	OldState  string `json:"old_state"`
	NewState  string `json:"new_state"`
	Reason    string `json:"reason"`
	// VoteHolders are the node ids that hold the qdevice vote.
	VoteHolders []uint32 `json:"vote_holders"`
	Nodes       int      `json:"nodes_connected"`
	Since       string   `json:"since"`
	Instance    string   `json:"instance"`
}

// NewEventData is a change as an event's data.
func NewEventData(c statewatch.Change, instance string) EventData {
	v := c.Voters
	if v == nil {
		v = []uint32{}
	}
	return EventData{Cluster: displayName(c.Cluster), ClusterID: Key(c.Cluster), OldState: c.Old, NewState: c.New,
		Reason: cut(c.Reason, maxStateLen), VoteHolders: v, Nodes: c.Nodes,
		Since: c.Since.UTC().Format(time.RFC3339), Instance: instance}
}

// Events fires EventType through the Supervisor's proxy to Home
// Assistant's REST API (config.yaml: homeassistant_api: true).
type Events struct {
	url      string
	token    string
	instance string
	http     *http.Client
	log      zerolog.Logger
	q        chan EventData
	// Dropped counts events not sent because the queue was full.
	Dropped atomic.Uint64
}

// NewEvents fires events at cfg.CoreAPI with cfg.Token; nil without a
// token (not run by the Supervisor).
func NewEvents(cfg Config) *Events {
	if cfg.Token == "" || cfg.CoreAPI == "" {
		return nil
	}
	cfg = cfg.withDefaults()
	return &Events{url: strings.TrimRight(cfg.CoreAPI, "/") + "/events/" + EventType, token: cfg.Token,
		instance: cfg.Instance, http: cfg.HTTP, log: cfg.Log, q: make(chan EventData, eventQueue)}
}

// Fire queues a change; it never blocks.
func (e *Events) Fire(c statewatch.Change) {
	select {
	case e.q <- NewEventData(c, e.instance):
	default:
		if e.Dropped.Add(1) == 1 {
			e.log.Warn().Int("queue", eventQueue).Msg("Home Assistant takes no events: state change events are dropped until it does")
		}
	}
}

// Run sends queued events until ctx ends.
func (e *Events) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-e.q:
			if err := e.post(ctx, d); err != nil && ctx.Err() == nil {
				e.log.Warn().Err(err).Str("cluster", d.Cluster).Str("new_state", d.NewState).
					Msg("cannot fire the cluster state event in Home Assistant")
			}
		}
	}
}

func (e *Events) post(ctx context.Context, d EventData) error {
	body, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("event %s: %w", EventType, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("event %s: %w", EventType, err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return fmt.Errorf("event %s: %w", EventType, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("event %s: Home Assistant answered %s", EventType, resp.Status)
	}
	return nil
}
