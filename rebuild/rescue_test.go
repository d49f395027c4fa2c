package rebuild

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
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

// TestEngineRescuesBuildOfDeadReplicaSoon: a process dies mid-build after its build
// wrote temporary keys. Another replica sees from the replica heartbeats that the
// process is gone and rescues the job within seconds (not build_timeout + 1 min), the
// dead build's temporary keys are removed, and the team is built after all.
func TestEngineRescuesBuildOfDeadReplicaSoon(t *testing.T) {
	t.Parallel()
	a := newEngineBundle(t, false, func(o *Options) { o.ReplicaID = "replica-a" })
	ctx := context.Background()
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	a.setGate(stuck)
	require.NoError(t, a.e.Start(ctx))
	res, err := a.e.Request(ctx, 1, "api")
	require.NoError(t, err)
	eventually(t, 20*time.Second, func() bool { return a.builds.Load() == 1 }, "the first build did not start")
	// replica-a heartbeated once, a while ago.
	_, err = a.pool.Exec(ctx, `INSERT INTO flagwarden_replicas (id, hostname, version, started_at, last_seen)
		VALUES ('replica-a', 'h', 'v', now() - interval '1 hour', now() - interval '1 minute')`)
	require.NoError(t, err)

	// What the dead build left: a payload half written to its temporary key.
	pub := NewPublisher(a.rdb, PublisherOptions{ChunkBytes: 1024})
	half := pub.Begin(ctx, 1, cachekeys.KindFlags)
	_, err = half.Write(bytes.Repeat([]byte("x"), 8192))
	require.NoError(t, err)
	building := pub.Layout().Building(1, cachekeys.KindFlags)
	eventually(t, 10*time.Second, func() bool { return a.rdb.SCard(ctx, building).Val() == 1 }, "the half-written build was not registered")
	tmp := pub.Layout().Temp(1, cachekeys.KindFlags, a.rdb.SRandMember(ctx, building).Val())
	require.EqualValues(t, 1, a.rdb.Exists(ctx, tmp).Val())

	stopCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_ = a.e.Stop(stopCtx)

	b, err := NewPostgres(a.pool, Options{
		Source: a.src, Sizes: a.src, Publisher: NewPublisher(a.rdb, PublisherOptions{}),
		RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(),
		ReplicaID: "replica-b", RescueDeadAfter: time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, b.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	// River alone would wait build_timeout + 1 min (11 min); the deadline is far less.
	eventually(t, 60*time.Second, func() bool {
		hist, err := b.History(ctx, 1, 5)
		require.NoError(t, err)
		return len(hist) > 0 && hist[0].OK
	}, "the second replica did not rescue and finish the dead replica's build")
	hist, err := b.History(ctx, 1, 5)
	require.NoError(t, err)
	require.Len(t, hist, 2, "the rescued attempt and the build")
	require.Contains(t, hist[1].Error, "replica-a")
	require.Equal(t, res.JobID, hist[0].JobID, "the same job, rescued")
	require.Zero(t, a.rdb.Exists(ctx, tmp, building).Val(), "the dead build's temporary keys remain")
	require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.rescued))
}
