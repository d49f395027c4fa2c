package rebuild

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/testenv"
)

// TestWritesSurviveTerminatedConnections: after the state database's connections are
// terminated, the next writes (a rebuild request, a quarantine, a release) succeed:
// the pool's dead connections cost one retry, not an error.
func TestWritesSurviveTerminatedConnections(t *testing.T) {
	t.Parallel()
	b := newEngineBundle(t, false, nil)
	ctx := context.Background()
	// Warm the pool and both paths (River's inserts and the engine's own table).
	_, err := b.e.Request(ctx, 1, "api")
	require.NoError(t, err)
	require.NoError(t, b.e.Quarantine(ctx, 2, "warm"))
	require.NoError(t, b.e.Release(ctx, 2, "warm"))

	for round := range 3 {
		require.Positive(t, testenv.TerminateBackends(t, b.url), "round %d: nothing to terminate", round)
		b.e.jobs.forget(1)
		_, err := b.e.Request(ctx, 1, "api")
		require.NoError(t, err, "round %d: the first request after termination", round)
		require.Positive(t, testenv.TerminateBackends(t, b.url))
		require.NoError(t, b.e.Quarantine(ctx, 2, "ops"), "round %d: quarantine after termination", round)
		require.Positive(t, testenv.TerminateBackends(t, b.url))
		require.NoError(t, b.e.Release(ctx, 2, "ops"), "round %d: release after termination", round)
		require.Positive(t, testenv.TerminateBackends(t, b.url))
		_, err = b.e.Status(ctx)
		require.NoError(t, err, "round %d: status after termination", round)
		time.Sleep(10 * time.Millisecond)
	}
}
