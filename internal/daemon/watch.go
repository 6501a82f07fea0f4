package daemon

import (
	"context"
	"time"

	"github.com/qnetd-addon/qnetd/internal/haentities"
	"github.com/qnetd-addon/qnetd/internal/statewatch"
)

// watchEvery is how often the cluster states are read besides on engine
// events (a node that connects changes no vote, but the state).
const watchEvery = 2 * time.Second

// startWatch follows the cluster states while the status page runs: every
// change is an info line at once, and a change that lasted the hold time
// is a Home Assistant event when the add-on has the Supervisor's token.
func (d *Daemon) startWatch(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if d.rec == nil {
		close(done)
		return done
	}
	var events *haentities.Events
	if d.cfg.Entities != nil {
		events = haentities.NewEvents(*d.cfg.Entities)
	}
	wake, cancel := d.rec.Subscribe()
	context.AfterFunc(ctx, cancel)
	if events != nil {
		go events.Run(ctx)
	}
	w := statewatch.New(d.cfg.StateHold, 0)
	go func() {
		defer close(done)
		tick := time.NewTicker(watchEvery)
		defer tick.Stop()
		settle := time.NewTimer(time.Hour)
		defer settle.Stop()
		refused := uint64(0)
		for {
			st, err := d.srv.Status(ctx)
			if err != nil {
				return
			}
			now := time.Now()
			for _, c := range w.Observe(st, now) {
				d.log.Info().Str("cluster", c.Cluster).Str("old_state", c.Old).Str("new_state", c.New).
					Str("reason", c.Reason).Uints32("vote_holders", c.Voters).Int("nodes", c.Nodes).
					Msg("cluster state changed")
			}
			if w.Refused != refused {
				refused = w.Refused
				d.log.Warn().Uint64("refused", refused).Int("max_clusters", statewatch.DefaultMaxClusters).
					Msg("too many clusters: the state of the others is not followed")
			}
			for _, c := range w.Settle(now) {
				if events != nil {
					events.Fire(c)
				}
			}
			if next, ok := w.Next(); ok {
				settle.Reset(max(next.Sub(now), time.Millisecond))
			}
			select {
			case <-ctx.Done():
				return
			case <-wake:
			case <-tick.C:
			case <-settle.C:
			}
		}
	}()
	return done
}
