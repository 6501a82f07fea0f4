package engine_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// TestCompactChangesNothingTheEngineDecides: after most clients of a
// crowd left, Compact rebuilds the tables; the status, the next deadline
// and the dead-peer drops that follow are what they would have been.
func TestCompactChangesNothingTheEngineDecides(t *testing.T) {
	run := func(compact bool) (*engine.Status, time.Duration, map[engine.ClientID]engine.DisconnectReason) {
		r := clockRig{t, engine.New(scenarioConfig(), zerolog.Nop())}
		for id := engine.ClientID(1); id <= 500; id++ {
			r.join(time.Duration(id)*ms, id, 8000)
		}
		for id := engine.ClientID(3); id <= 500; id++ {
			r.e.Disconnect(600*ms, id)
		}
		if compact {
			r.e.Compact()
		}
		at := next(t, r.e)
		return r.e.Status(), at, disconnects(r.e.Tick(time.Minute))
	}
	st0, at0, drops0 := run(false)
	st1, at1, drops1 := run(true)
	require.Equal(t, st0, st1)
	require.Equal(t, at0, at1)
	require.Equal(t, drops0, drops1)
	require.Len(t, drops1, 2, "the two clients left are dropped as dead peers")
}
