package rebuild

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/statedb"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// TestSweepRebuildsCachesLostWithTheirRedis: the caches of a team whose data does not
// change are built; the cache Redis is killed and comes back empty. The changed-teams
// query alone finds nothing to do; with the team list and the build index the next
// pass requests the team, and its caches are back.
func TestSweepRebuildsCachesLostWithTheirRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	f := newFixture(t, srv.URL())
	_, err := statedb.Migrate(ctx, f.pool)
	require.NoError(t, err)
	require.NoError(t, MigratePostgres(ctx, f.pool))
	e, err := NewPostgres(f.pool, Options{
		Source: f.src, Sizes: f.src, Publisher: NewPublisher(f.rdb, PublisherOptions{}),
		RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	require.NoError(t, e.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	l := cachekeys.Layout{}
	built := func() bool {
		for _, k := range cachekeys.Kinds {
			if _, err := cachekeys.ReadMeta(ctx, f.rdb, l, 1, k); err != nil {
				return false
			}
		}
		return true
	}

	size, err := f.src.TeamSize(ctx, 1)
	require.NoError(t, err)
	info, err := f.src.Team(ctx, 1)
	require.NoError(t, err)
	size.ActiveFlags, size.UpdatedAt = size.Flags, info.Watermark
	teams := snapshot.Teams{At: time.Now(), Teams: map[int64]snapshot.TeamSize{1: size}}

	withoutList := NewSweep(f.src, f.rdb, l, e)
	s := NewSweep(f.src, f.rdb, l, e)
	s.Teams = func() snapshot.Teams { return teams }
	// The first passes look at every team with data: team 1 is built.
	_, err = withoutList.RunOnce(ctx)
	require.NoError(t, err)
	_, err = s.RunOnce(ctx)
	require.NoError(t, err)
	eventually(t, 30*time.Second, built, "team 1 was never built")
	res, err := s.Run(ctx)
	require.NoError(t, err)
	require.Zero(t, res.Requested(), "fresh caches are left alone: %+v", res)

	srv.Kill()
	srv.Start()
	require.False(t, built(), "the restarted Redis is empty")

	n, err := withoutList.RunOnce(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "the data did not change: the changed-teams query finds nothing")

	res, err = s.Run(ctx)
	require.NoError(t, err)
	require.Equal(t, SweepResult{Missing: 1}, res)
	eventually(t, 30*time.Second, built, "the sweep did not bring team 1's caches back")

	// A cache built before the team's last change (beyond the clock skew allowed)
	// is older than its data.
	teams.Teams[1] = snapshot.TeamSize{TeamID: 1, Flags: size.Flags, ActiveFlags: size.Flags, UpdatedAt: time.Now().Add(time.Hour)}
	res, err = s.Run(ctx)
	require.NoError(t, err)
	require.Equal(t, SweepResult{Older: 1}, res)
}

// TestSweepRebuildsEvictedCaches: a cache still in the build index whose payload is
// gone is rebuilt from the cache-freshness collector's look.
func TestSweepRebuildsEvictedCaches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "")
	req := &countingRequester{inner: nopRequester{}, teams: map[int64]int{}}
	s := NewSweep(emptyStale{}, f.rdb, cachekeys.Layout{}, req)
	look := snapshot.Caches{At: time.Now(), Teams: []snapshot.CacheState{
		{TeamID: 5, Kind: "flags", Source: "flagwarden", Missing: true, Lag: snapshot.MissingLag},
		{TeamID: 6, Kind: "flags", Source: "flagwarden"},
		{TeamID: 7, Kind: "flags", Source: "posthog", Missing: true},
		{TeamID: 8, Kind: "flags", Source: "flagwarden", Missing: true},
	}}
	s.Caches = func() snapshot.Caches { return look }
	// Team 8 is quarantined: its quarantine decides when it is built, not the sweep.
	s.Quarantined = func(context.Context) ([]Quarantine, error) { return []Quarantine{{TeamID: 8}}, nil }
	res, err := s.Run(ctx)
	require.NoError(t, err)
	require.Equal(t, SweepResult{Missing: 1}, res)
	require.Equal(t, 1, req.count(5))
	require.Zero(t, req.count(8), "a quarantined team was requested")
	res, err = s.Run(ctx)
	require.NoError(t, err)
	require.Zero(t, res.Requested(), "the same look is acted on once")
}

type emptyStale struct{}

func (emptyStale) ChangedSince(context.Context, time.Time, int) (map[int64]time.Time, error) {
	return map[int64]time.Time{}, nil
}

type nopRequester struct{}

func (nopRequester) Request(_ context.Context, team int64, _ string) (RequestResult, error) {
	return RequestResult{TeamID: team}, nil
}

// BenchmarkSweepIndexPass measures one pass of the index path over 100,000 teams with
// built caches (nothing to request): the cost the sweep adds to every pass.
func BenchmarkSweepIndexPass(b *testing.B) {
	ctx := context.Background()
	opt, err := redis.ParseURL(testenv.Redis(b))
	require.NoError(b, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	const n = 100_000
	l := cachekeys.Layout{}
	at := time.Now()
	teams := snapshot.Teams{At: at, Teams: make(map[int64]snapshot.TeamSize, n)}
	for _, kind := range cachekeys.Kinds {
		zs := make([]redis.Z, 0, n)
		for id := int64(1); id <= n; id++ {
			zs = append(zs, redis.Z{Member: id, Score: cachekeys.IndexScore(at)})
		}
		require.NoError(b, rdb.ZAdd(ctx, l.Index(kind), zs...).Err())
	}
	for id := int64(1); id <= n; id++ {
		teams.Teams[id] = snapshot.TeamSize{TeamID: id, Flags: 3, ActiveFlags: 2, UpdatedAt: at.Add(-time.Hour)}
	}
	req := &countingRequester{inner: nopRequester{}, teams: map[int64]int{}}
	s := NewSweep(emptyStale{}, rdb, l, req)
	s.Teams = func() snapshot.Teams { return teams }
	b.ResetTimer()
	for range b.N {
		res, err := s.Run(ctx)
		require.NoError(b, err)
		require.Zero(b, res.Requested())
	}
}
