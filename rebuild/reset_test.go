package rebuild

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// terminateBackends ends every other connection to the test's own database, as a
// failover or an operator's pg_terminate_backend does, and returns how many it ended.
func terminateBackends(t *testing.T, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n))
	return n
}

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
		require.Positive(t, terminateBackends(t, b.url), "round %d: nothing to terminate", round)
		b.e.jobs.forget(1)
		_, err := b.e.Request(ctx, 1, "api")
		require.NoError(t, err, "round %d: the first request after termination", round)
		require.Positive(t, terminateBackends(t, b.url))
		require.NoError(t, b.e.Quarantine(ctx, 2, "ops"), "round %d: quarantine after termination", round)
		require.Positive(t, terminateBackends(t, b.url))
		require.NoError(t, b.e.Release(ctx, 2, "ops"), "round %d: release after termination", round)
		require.Positive(t, terminateBackends(t, b.url))
		_, err = b.e.Status(ctx)
		require.NoError(t, err, "round %d: status after termination", round)
		time.Sleep(10 * time.Millisecond)
	}
}
