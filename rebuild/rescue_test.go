package rebuild

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestEngineRescuesBuildOfDeadProcess: a process dies in the middle of a build (here:
// its build never returns and it stops without finishing it), leaving the job running
// in the database. Another process on the same state database rescues the job once it
// is older than the build timeout plus a minute, and the team is built after all.
func TestEngineRescuesBuildOfDeadProcess(t *testing.T) {
	t.Parallel()
	a := newEngineBundle(t, false, nil)
	ctx := context.Background()
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	a.setGate(stuck)
	require.NoError(t, a.e.Start(ctx))
	res, err := a.e.Request(ctx, 1, "api")
	require.NoError(t, err)
	eventually(t, 20*time.Second, func() bool { return a.builds.Load() == 1 }, "the first build did not start")

	// The first process goes away with its build still running.
	stopCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_ = a.e.Stop(stopCtx)
	var state string
	require.NoError(t, a.pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, res.JobID).Scan(&state))
	require.Equal(t, "running", state, "a dead process leaves its job running")
	// Age the job and the team's run guard past the build timeout instead of waiting,
	// as they would be by the time the rescue threshold passes.
	_, err = a.pool.Exec(ctx, `UPDATE river_job SET attempted_at = now() - interval '2 hours' WHERE id = $1`, res.JobID)
	require.NoError(t, err)
	_, err = a.pool.Exec(ctx, `UPDATE flagwarden_rebuild_teams SET running_since = now() - interval '2 hours' WHERE team_id = 1`)
	require.NoError(t, err)

	b, err := NewPostgres(a.pool, Options{
		Source: a.src, Sizes: a.src, Publisher: NewPublisher(a.rdb, PublisherOptions{}),
		RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	eventually(t, 90*time.Second, func() bool {
		hist, err := b.History(ctx, 1, 5)
		require.NoError(t, err)
		for _, h := range hist {
			if h.OK {
				return true
			}
		}
		return false
	}, "the second process never rescued and finished the dead process's build")
}
