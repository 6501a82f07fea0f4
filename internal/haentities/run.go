package haentities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// Config is what publishing entities needs. The daemon sets Status, Wake
// and CertExpiry; the add-on the rest.
type Config struct {
	// Status reads the engine's status copy (server.Server.Status).
	Status func(context.Context) (*engine.Status, error)
	// Wake, optional, signals that the engine's state changed; Status is
	// also read every Interval (connections are not engine events).
	Wake     <-chan struct{}
	Interval time.Duration
	// CertExpiry, optional, gives the end of validity of the cluster's
	// certificate, false when there is none.
	CertExpiry func(cluster string) (time.Time, bool)
	// Instance names this add-on in topics and ids (its host name).
	Instance string
	// MaxClusters bounds the clusters with entities (DefaultMaxClusters).
	MaxClusters int
	// DiscoveryPrefix is Home Assistant's (DefaultDiscoveryPrefix).
	DiscoveryPrefix string
	// AdoptHold is how long a cluster found in the broker's retained
	// state after a restart keeps that state before it counts as gone.
	AdoptHold time.Duration

	// Broker, when set, is the MQTT broker; otherwise the Supervisor is
	// asked for one at SupervisorURL, and without one the entities go
	// through Home Assistant's REST API at CoreAPI.
	Broker        *Broker
	SupervisorURL string
	CoreAPI       string
	// Token is SUPERVISOR_TOKEN; without it and without Broker nothing
	// is published.
	Token string
	HTTP  *http.Client
	// Recheck is how often the Supervisor is asked for a broker again
	// while the REST API is used.
	Recheck time.Duration
	// ProbeEvery is how often the REST fallback checks that Home
	// Assistant still has its states (a restart drops them).
	ProbeEvery time.Duration

	Log zerolog.Logger
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.MaxClusters <= 0 {
		c.MaxClusters = DefaultMaxClusters
	}
	if c.DiscoveryPrefix == "" {
		c.DiscoveryPrefix = DefaultDiscoveryPrefix
	}
	if c.AdoptHold <= 0 {
		c.AdoptHold = time.Minute
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Recheck <= 0 {
		c.Recheck = 5 * time.Minute
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = 15 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Run publishes until ctx ends: over MQTT when there is a broker, else
// through the REST API, asking the Supervisor again every Recheck so that
// a broker installed later is used without a restart.
func Run(ctx context.Context, cfg Config) {
	cfg = cfg.withDefaults()
	if cfg.Broker != nil {
		NewMQTT(cfg, *cfg.Broker).Run(ctx)
		return
	}
	if cfg.Token == "" {
		return
	}
	var rest *RESTPublisher
	for {
		b, err := SupervisorBroker(ctx, cfg)
		if err == nil {
			if rest != nil {
				// Its states would hold the entity ids MQTT discovery asks for.
				rest.Clear(ctx)
			}
			NewMQTT(cfg, b).Run(ctx)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if rest == nil {
			cfg.Log.Info().Err(err).Msg("no MQTT broker from the Supervisor: entities go through Home Assistant's REST API")
			rest = NewREST(cfg)
		}
		rctx, cancel := context.WithTimeout(ctx, cfg.Recheck)
		rest.Run(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// ErrNoBroker says that the Supervisor offers no MQTT service.
var ErrNoBroker = errors.New("the Supervisor offers no MQTT service")

// SupervisorBroker asks the Supervisor for the MQTT service (config.yaml
// services: mqtt:want lets the add-on read it).
func SupervisorBroker(ctx context.Context, cfg Config) (Broker, error) {
	url := strings.TrimRight(cfg.SupervisorURL, "/") + "/services/mqtt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Broker{}, fmt.Errorf("MQTT service from the Supervisor: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	resp, err := cfg.HTTP.Do(req)
	if err != nil {
		return Broker{}, fmt.Errorf("MQTT service from the Supervisor: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var r struct {
		Result  string `json:"result"`
		Message string `json:"message"`
		Data    struct {
			Host     string `json:"host"`
			Port     int    `json:"port"`
			SSL      bool   `json:"ssl"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil && resp.StatusCode == http.StatusOK {
		return Broker{}, fmt.Errorf("MQTT service from the Supervisor: %w", err)
	}
	if resp.StatusCode != http.StatusOK || r.Result != "ok" || r.Data.Host == "" || r.Data.Port <= 0 || r.Data.Port > 65535 {
		return Broker{}, fmt.Errorf("%w (%s: %s)", ErrNoBroker, resp.Status, r.Message)
	}
	return Broker{Host: r.Data.Host, Port: r.Data.Port, SSL: r.Data.SSL, Username: r.Data.Username, Password: r.Data.Password}, nil
}
