package haentities

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// probeEntity is the entity the REST fallback asks Home Assistant for:
// it is always posted, and Home Assistant forgets states set through
// its REST API when it restarts.
const probeEntity = "sensor.qnetd_clusters"

// RESTPublisher sets the entities' states through the Supervisor's proxy
// to Home Assistant's REST API, when there is no MQTT broker. Such
// states live until Home Assistant restarts; a probe notices the restart
// and every state is sent again.
type RESTPublisher struct {
	cfg  Config
	log  zerolog.Logger
	tr   *tracker
	sent map[string]string // entity id -> body Home Assistant has
	// probed is when the probe last ran.
	probed time.Time
}

// NewREST makes the REST fallback; Run publishes.
func NewREST(cfg Config) *RESTPublisher {
	cfg = cfg.withDefaults()
	return &RESTPublisher{cfg: cfg, log: cfg.Log.With().Str("part", "rest").Logger(),
		tr: newTracker(cfg.MaxClusters, cfg.CertExpiry), sent: map[string]string{}}
}

type restState struct {
	State      string         `json:"state"`
	Attributes map[string]any `json:"attributes"`
}

// Run publishes on every engine event and every Interval until ctx ends.
func (r *RESTPublisher) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-r.cfg.Wake:
		case <-t.C:
		}
	}
}

func (r *RESTPublisher) step(ctx context.Context) {
	now := r.cfg.Now()
	r.probe(ctx, now)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := r.cfg.Status(sctx)
	cancel()
	if err != nil {
		return
	}
	evicted, _ := r.tr.update(st, now)
	want := r.desired(st.Clients)
	for _, tr := range evicted {
		r.log.Info().Str("cluster", tr.doc.Cluster).Msg("entities of the cluster gone longest removed to make room")
	}
	r.removeUnwanted(ctx, want)
	r.post(ctx, want)
}

// probe asks Home Assistant, every ProbeEvery, for the probe entity once
// it was sent; when it is gone, Home Assistant restarted and lost every
// state, so all are sent again.
func (r *RESTPublisher) probe(ctx context.Context, now time.Time) {
	if _, ok := r.sent[probeEntity]; !ok || now.Sub(r.probed) < r.cfg.ProbeEvery {
		return
	}
	r.probed = now
	if code, err := r.do(ctx, http.MethodGet, probeEntity, nil); err == nil && code == http.StatusNotFound {
		r.log.Info().Msg("Home Assistant lost the entities (it restarted): sending every state again")
		clear(r.sent)
	}
}

// removeUnwanted deletes the states sent before that are not wanted now.
func (r *RESTPublisher) removeUnwanted(ctx context.Context, want map[string]string) {
	for id := range r.sent {
		if _, ok := want[id]; ok {
			continue
		}
		if code, err := r.do(ctx, http.MethodDelete, id, nil); err == nil && (code < 300 || code == http.StatusNotFound) {
			delete(r.sent, id)
		}
	}
}

// post sends every wanted state Home Assistant does not have yet, the
// probe entity first: once Home Assistant has it, the others are due.
func (r *RESTPublisher) post(ctx context.Context, want map[string]string) {
	ids := make([]string, 0, len(want))
	ids = append(ids, probeEntity)
	for id := range want {
		if id != probeEntity {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		body := want[id]
		if r.sent[id] == body {
			continue
		}
		code, err := r.do(ctx, http.MethodPost, id, []byte(body))
		if err == nil && code != http.StatusOK && code != http.StatusCreated {
			err = fmt.Errorf("POST /states/%s: %d", id, code)
		}
		if err != nil {
			r.log.Warn().Err(err).Str("entity", id).Msg("cannot update Home Assistant entity")
			if id == probeEntity {
				return
			}
			continue
		}
		r.sent[id] = body
	}
}

// Clear removes every state this publisher set.
func (r *RESTPublisher) Clear(ctx context.Context) {
	for id := range r.sent {
		_, _ = r.do(ctx, http.MethodDelete, id, nil)
		delete(r.sent, id)
	}
}

func (r *RESTPublisher) do(ctx context.Context, method, id string, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(r.cfg.CoreAPI, "/")+"/states/"+id, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.cfg.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// desired is every entity's state body by entity id; the ids are the
// ones MQTT discovery suggests, so automations work with either.
func (r *RESTPublisher) desired(clients int) map[string]string {
	out := map[string]string{}
	all := r.tr.sorted()
	for _, e := range addOnEntities() {
		v := e.Value(AddOnDoc{Clusters: len(all), Clients: clients})
		out["sensor.qnetd_"+e.Object] = marshal(restState{fmt.Sprint(v), map[string]any{
			"friendly_name": "QNetd " + e.Name, "state_class": "measurement"}})
	}
	for _, tr := range all {
		d := &tr.doc
		for _, e := range clusterEntities(d) {
			attrs := map[string]any{"friendly_name": "QNetd " + displayName(d.Cluster) + " " + e.Name, "cluster": d.Cluster}
			for k, v := range e.Config {
				switch k {
				case "ic":
					attrs["icon"] = v
				case "dev_cla":
					attrs["device_class"] = v
				case "ops":
					attrs["options"] = v
				case "stat_cla":
					attrs["state_class"] = v
				case "unit_of_meas":
					attrs["unit_of_measurement"] = v
				}
			}
			if e.Object == "state" {
				attrs["reason"], attrs["algorithm"], attrs["tie_breaker"] = d.Reason, d.Algorithm, d.TieBreaker
				attrs["node_ids"], attrs["nodes_with_vote"] = d.NodeIDs, d.NodesWithVote
			}
			out[e.Component+".qnetd_"+tr.key+"_"+e.Object] = marshal(restState{e.Value(d), attrs})
		}
	}
	return out
}
