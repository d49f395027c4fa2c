package rebuild

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/statedb"
)

type engineBundle struct {
	*fixture
	e      *Engine
	reg    *prometheus.Registry
	builds atomic.Int64
	// gate, when set, blocks every build until it is closed.
	gate chan struct{}
	mu   sync.Mutex
}

func newEngineBundle(t *testing.T, sqlite bool, mutate func(*Options)) *engineBundle {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t, "")
	b := &engineBundle{fixture: f, reg: prometheus.NewRegistry()}
	opts := Options{
		Source: f.src, Sizes: f.src, Publisher: NewPublisher(f.rdb, PublisherOptions{}),
		RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond, HoldRecheck: 100 * time.Millisecond,
		Registerer: b.reg,
	}
	if mutate != nil {
		mutate(&opts)
	}
	var (
		e   *Engine
		err error
	)
	if sqlite {
		db, err2 := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "engine.db")+"?_pragma=busy_timeout(5000)")
		require.NoError(t, err2)
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		e, err = NewSQLite(ctx, db, opts)
	} else {
		_, err = statedb.Migrate(ctx, f.pool)
		require.NoError(t, err)
		require.NoError(t, MigratePostgres(ctx, f.pool))
		e, err = NewPostgres(f.pool, opts)
	}
	require.NoError(t, err)
	e.testHook = func(int64) {
		b.builds.Add(1)
		b.mu.Lock()
		g := b.gate
		b.mu.Unlock()
		if g != nil {
			<-g
		}
	}
	b.e = e
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return b
}

func (b *engineBundle) setGate(g chan struct{}) { b.mu.Lock(); b.gate = g; b.mu.Unlock() }

func eventually(t *testing.T, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(msg, args...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *engineBundle) idle(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, func() bool {
		st, err := b.e.Status(context.Background())
		require.NoError(t, err)
		for _, l := range st.Lanes {
			if l.Running+l.Waiting > 0 {
				return false
			}
		}
		return true
	}, "engine did not drain")
}

func TestEngineDedupAndFollowUp(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"postgres", "sqlite"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			b := newEngineBundle(t, driver == "sqlite", nil)
			ctx := context.Background()

			// A burst before any worker runs collapses into one waiting job.
			var wg sync.WaitGroup
			var joined atomic.Int64
			jobIDs := sync.Map{}
			for range 40 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := b.e.Request(ctx, 1, "api")
					require.NoError(t, err)
					require.Equal(t, LaneSmall, res.Lane)
					if res.Joined {
						joined.Add(1)
					}
					jobIDs.Store(res.JobID, true)
				}()
			}
			wg.Wait()
			require.EqualValues(t, 39, joined.Load())
			n := 0
			jobIDs.Range(func(any, any) bool { n++; return true })
			require.Equal(t, 1, n, "every request names the same job")

			gate := make(chan struct{})
			b.setGate(gate)
			require.NoError(t, b.e.Start(ctx))
			eventually(t, 20*time.Second, func() bool { return b.builds.Load() == 1 }, "first build did not start")
			st, err := b.e.Status(ctx)
			require.NoError(t, err)
			require.Equal(t, LaneSmall, st.Lanes[0].Lane)
			require.Equal(t, 1, st.Lanes[0].RunningHere, "the one build this process runs")
			require.LessOrEqual(t, st.Lanes[0].RunningHere, st.Lanes[0].Workers)

			// Requests during the run: each joins, together they yield one follow-up.
			for range 25 {
				res, err := b.e.Request(ctx, 1, "celery")
				require.NoError(t, err)
				require.True(t, res.Joined)
			}
			require.Equal(t, 25.0, testutil.ToFloat64(b.e.metrics.requests.WithLabelValues("celery", "coalesced")),
				"requests during this process's build are follow-ups marked in memory")
			b.setGate(nil)
			close(gate)
			b.idle(t)
			require.EqualValues(t, 2, b.builds.Load(), "one build plus exactly one follow-up")

			hist, err := b.e.History(ctx, 1, 10)
			require.NoError(t, err)
			require.Len(t, hist, 2)
			require.True(t, hist[0].OK)
			require.True(t, hist[0].Unchanged, "the follow-up saw the same data")
			require.Positive(t, hist[0].MemoryBoundBytes, "the build's own reservation is recorded")
			require.LessOrEqual(t, hist[0].MemoryBoundBytes, b.e.opts.MemoryBudget)
			_, err = cachekeys.ReadMeta(ctx, b.rdb, cachekeys.Layout{}, 1, cachekeys.KindDefinitions)
			require.NoError(t, err)

			// Unknown teams are refused without a job.
			_, err = b.e.Request(ctx, 999, "api")
			require.ErrorIs(t, err, ErrUnknownTeam)
			require.ErrorIs(t, b.e.Quarantine(ctx, 999, "x"), ErrUnknownTeam)
			require.Equal(t, 1.0, testutil.ToFloat64(b.e.metrics.requests.WithLabelValues("api", "unknown_team")))
			require.Equal(t, 1.0, testutil.ToFloat64(b.e.metrics.builds.WithLabelValues("small", "ok")))
		})
	}
}

func TestEngineQuarantineRouting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("hard limit quarantines automatically", func(t *testing.T) {
		t.Parallel()
		var paged atomic.Int64
		b := newEngineBundle(t, false, func(o *Options) {
			o.LargeTeamBytes, o.HardLimitBytes = 100, 1000
			o.OnQuarantine = func(q Quarantine) {
				if q.Auto {
					paged.Add(1)
				}
			}
		})
		res, err := b.e.Request(ctx, 1, "api")
		require.NoError(t, err)
		require.Equal(t, LaneQuarantine, res.Lane)
		qs, err := b.e.Quarantined(ctx)
		require.NoError(t, err)
		require.Len(t, qs, 1)
		require.True(t, qs[0].Auto)
		require.Contains(t, qs[0].Reason, "hard limit")
		require.EqualValues(t, 1, paged.Load())
		res, err = b.e.Request(ctx, 2, "api")
		require.NoError(t, err)
		require.Equal(t, LaneSmall, res.Lane, "team 2 has no flags")
		_, err = b.pool.Exec(ctx, `INSERT INTO posthog_featureflag (team_id, key, name, filters, created_at) VALUES (2, 'x', 'x', '{}', now())`)
		require.NoError(t, err)
		b.e.sizes = newSizeCache(b.src, time.Nanosecond, 10)
		res, err = b.e.Request(ctx, 2, "api")
		require.NoError(t, err)
		require.Equal(t, LaneLarge, res.Lane, "one flag's overhead passes the tiny large limit")

		// Serial mode: the quarantined team still builds, in its own lane.
		require.NoError(t, b.e.Start(ctx))
		b.idle(t)
		hist, err := b.e.History(ctx, 1, 5)
		require.NoError(t, err)
		require.Len(t, hist, 1)
		require.Equal(t, LaneQuarantine, hist[0].Lane)
	})

	t.Run("manual quarantine holds until release", func(t *testing.T) {
		t.Parallel()
		b := newEngineBundle(t, false, func(o *Options) { o.QuarantineHold = true })
		require.NoError(t, b.e.Quarantine(ctx, 1, "operator says so"))
		res, err := b.e.Request(ctx, 1, "api")
		require.NoError(t, err)
		require.Equal(t, LaneQuarantine, res.Lane)
		require.NoError(t, b.e.Start(ctx))
		// Other teams are not delayed by the held one.
		_, err = b.e.Request(ctx, 2, "api")
		require.NoError(t, err)
		eventually(t, 20*time.Second, func() bool { h, _ := b.e.History(ctx, 2, 1); return len(h) == 1 }, "team 2 was not built")
		time.Sleep(300 * time.Millisecond) // several hold rechecks
		h, err := b.e.History(ctx, 1, 5)
		require.NoError(t, err)
		require.Empty(t, h, "a held team is not built")

		require.NoError(t, b.e.Release(ctx, 1, "fixed"))
		eventually(t, 20*time.Second, func() bool { h, _ := b.e.History(ctx, 1, 5); return len(h) >= 1 }, "released team was not built")
		h, err = b.e.History(ctx, 1, 5)
		require.NoError(t, err)
		require.Equal(t, LaneSmall, h[len(h)-1].Lane)
		qs, err := b.e.Quarantined(ctx)
		require.NoError(t, err)
		require.Empty(t, qs)
	})

	t.Run("repeated failures quarantine", func(t *testing.T) {
		t.Parallel()
		b := newEngineBundle(t, false, func(o *Options) { o.QuarantineAfterFailures = 2; o.MaxAttempts = 3 })
		prev := b.e.testHook
		b.e.testHook = func(team int64) {
			prev(team)
			panic("boom")
		}
		_, err := b.e.Request(ctx, 1, "api")
		require.NoError(t, err)
		require.NoError(t, b.e.Start(ctx))
		eventually(t, 60*time.Second, func() bool { qs, _ := b.e.Quarantined(ctx); return len(qs) == 1 }, "team was not quarantined after failures")
		qs, err := b.e.Quarantined(ctx)
		require.NoError(t, err)
		require.Contains(t, qs[0].Reason, "2 builds in a row failed")
		require.Contains(t, qs[0].Reason, "panicked")
		h, err := b.e.History(ctx, 1, 5)
		require.NoError(t, err)
		require.False(t, h[0].OK)
	})
}
