package caches

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newRedis(t *testing.T) *redis.Client {
	opt, err := redis.ParseURL(testenv.Redis(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// publish writes a cache the way the publisher does: metadata hash plus index entry.
func publish(t *testing.T, rdb *redis.Client, l cachekeys.Layout, team int64, kind cachekeys.Kind, built time.Time, bytes int64) {
	ctx := context.Background()
	m := cachekeys.Meta{BuiltAt: built, ETag: fmt.Sprintf("etag-%d-%s", team, kind), Bytes: bytes, Build: "b1"}
	require.NoError(t, rdb.HSet(ctx, l.Meta(team, kind), m.Fields()...).Err())
	require.NoError(t, rdb.ZAdd(ctx, l.Index(kind), redis.Z{Score: cachekeys.IndexScore(built), Member: fmt.Sprint(team)}).Err())
}

func TestCacheFreshness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := newRedis(t)
	l := cachekeys.Layout{Prefix: "fw:"}
	t0 := time.Date(2026, 2, 5, 12, 0, 0, 0, time.UTC)
	teams := snapshot.Teams{Teams: map[int64]snapshot.TeamSize{
		1: {TeamID: 1, Flags: 3, ActiveFlags: 2, UpdatedAt: t0},
		2: {TeamID: 2, Flags: 5, ActiveFlags: 5, UpdatedAt: t0.Add(10 * time.Minute)},
		3: {TeamID: 3, Flags: 1, ActiveFlags: 1, UpdatedAt: t0},                  // never built
		4: {TeamID: 4, Flags: 2, DeletedFlags: 2, UpdatedAt: t0},                 // nothing to cache
		6: {TeamID: 6, Flags: 1, ActiveFlags: 0, DeletedFlags: 0, UpdatedAt: t0}, // inactive flag only
		7: {TeamID: 7, Flags: 1, ActiveFlags: 1, UpdatedAt: t0},
	}}
	publish(t, rdb, l, 1, cachekeys.KindFlags, t0.Add(time.Minute), 1200)
	publish(t, rdb, l, 1, cachekeys.KindDefinitions, t0.Add(-5*time.Minute), 3400)
	publish(t, rdb, l, 2, cachekeys.KindFlags, t0, 800)
	publish(t, rdb, l, 2, cachekeys.KindDefinitions, t0.Add(11*time.Minute), 900)
	publish(t, rdb, l, 6, cachekeys.KindDefinitions, t0, 100)
	// Indexed, but the metadata is damaged: counted, not fatal.
	require.NoError(t, rdb.ZAdd(ctx, l.Index(cachekeys.KindFlags), redis.Z{Score: cachekeys.IndexScore(t0), Member: "5"}).Err())
	require.NoError(t, rdb.HSet(ctx, l.Meta(5, cachekeys.KindFlags), "built_at", "yesterday", "bytes", "many").Err())
	// Indexed a minute before the look, but the payload and its metadata are gone (a
	// Redis that lost keys): missing, whatever the index says.
	require.NoError(t, rdb.ZAdd(ctx, l.Index(cachekeys.KindFlags), redis.Z{Score: cachekeys.IndexScore(t0.Add(59 * time.Minute)), Member: "7"}).Err())

	// PostHog's own cache for team 2: expiry = build + TTL.
	const ttl = 7 * 24 * time.Hour
	ph := cachekeys.Layout{PostHog: true}
	require.NoError(t, rdb.ZAdd(ctx, "flags_cache_expiry", redis.Z{Score: float64(t0.Add(2 * time.Minute).Add(ttl).Unix()), Member: "2"}).Err())
	require.NoError(t, rdb.Set(ctx, ph.Payload(2, cachekeys.KindFlags), strings.Repeat("x", 4321), 0).Err())
	require.NoError(t, rdb.Set(ctx, ph.ETag(2, cachekeys.KindFlags), hypercache.Encode([]byte("abc123"), true), 0).Err())
	// Tracked for expiry, value evicted.
	require.NoError(t, rdb.ZAdd(ctx, "flag_definitions_cache_expiry", redis.Z{Score: float64(t0.Add(ttl).Unix()), Member: "1"}).Err())

	reg := prometheus.NewRegistry()
	snaps := snapshot.NewStore()
	ss := series.New(series.Options{Retention: time.Hour, MaxPoints: 10, MaxSeries: 100}, nil)
	c, err := New(rdb, Options{Layout: l, Flagwarden: true, WatchPostHog: true, TTL: ttl, StaleAfter: 7 * time.Minute,
		Teams: func() snapshot.Teams { return teams }, Clock: clock.Func(func() time.Time { return t0.Add(time.Hour) })}, snaps, ss, reg, discardLogger())
	require.NoError(t, err)
	require.NoError(t, c.RunOnce(ctx))

	got := map[string]snapshot.CacheState{}
	for _, s := range snaps.Caches().Teams {
		got[fmt.Sprintf("%s/%d/%s", s.Source, s.TeamID, s.Kind)] = s
	}
	f1 := got["flagwarden/1/flags"]
	require.Equal(t, int64(1200), f1.Bytes)
	require.Equal(t, "etag-1-flags", f1.ETag)
	require.True(t, f1.BuiltAt.Equal(t0.Add(time.Minute)))
	require.Zero(t, f1.Lag, "built after the last change")
	require.Equal(t, 5*time.Minute, got["flagwarden/1/definitions"].Lag)
	require.Equal(t, 10*time.Minute, got["flagwarden/2/flags"].Lag)
	require.Zero(t, got["flagwarden/2/definitions"].Lag)
	require.True(t, got["flagwarden/3/flags"].Missing)
	require.True(t, got["flagwarden/3/definitions"].Missing)
	require.NotContains(t, got, "flagwarden/4/flags", "only deleted flags: nothing to cache")
	require.NotContains(t, got, "flagwarden/6/flags", "no active flag: no /flags payload needed")
	require.Contains(t, got, "flagwarden/5/flags")

	p2 := got["posthog/2/flags"]
	require.Equal(t, int64(4321), p2.Bytes)
	require.Equal(t, "abc123", p2.ETag)
	require.True(t, p2.BuiltAt.Equal(t0.Add(2*time.Minute)), "built = expiry - ttl")
	require.Equal(t, 8*time.Minute, p2.Lag)
	require.True(t, got["posthog/1/definitions"].Missing)
	require.True(t, got["posthog/3/flags"].Missing)

	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.badMeta))
	require.Equal(t, snapshot.MissingLag, got["flagwarden/3/flags"].Lag, "a missing cache is infinitely stale")
	require.Equal(t, snapshot.MissingLag, got["flagwarden/7/flags"].Lag, "indexed recently, but gone")
	require.Equal(t, 3.0, testutil.ToFloat64(c.metrics.stale.WithLabelValues(SourceFlagwarden)), "team 2 lags 10m > 7m, teams 3 and 7 miss caches; team 1 5m does not")
	require.Equal(t, 5.0, testutil.ToFloat64(c.metrics.stale.WithLabelValues(SourcePostHog)), "team 2 lags; teams 1, 3, 6 and 7 miss PostHog caches")
	require.Equal(t, 4.0, testutil.ToFloat64(c.metrics.missing.WithLabelValues(SourceFlagwarden)))
	require.Equal(t, 600.0, testutil.ToFloat64(c.metrics.lagMax.WithLabelValues(SourceFlagwarden)))
	p, ok := ss.Last(series.Key(series.CacheStaleTeams, series.Fleet))
	require.True(t, ok)
	require.Equal(t, 5.0, p.V, "teams 1, 2, 3, 6 and 7, each counted once")

	// The staleness detectors judge what the collector published: the missing caches
	// page per team and, being more than 1% of the caches, over the fleet.
	obs := detectors.StaleCaches(snaps.Caches(), t0.Add(time.Hour), detectors.CacheOptions{StaleAfter: 7 * time.Minute})
	kinds := map[string][]string{}
	for _, o := range obs {
		kinds[o.Kind] = append(kinds[o.Kind], o.Subject)
	}
	require.Subset(t, kinds["cache_stale"], []string{"1", "2", "3", "7"})
	require.Len(t, kinds["fleet_cache_stale"], 1)
	p, _ = ss.Last(series.Key(series.CacheLagMax, series.Fleet))
	require.Equal(t, 600.0, p.V)
}

func TestBrokenCacheRedisShowsInHealth(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	snaps := snapshot.NewStore()
	c, err := New(rdb, Options{Flagwarden: true}, snaps, nil, reg, discardLogger())
	require.NoError(t, err)
	l := loop.New("caches", loop.Timing{Interval: time.Minute, Timeout: 5 * time.Second}, c.RunOnce, discardLogger(), loop.NewMetrics(reg))
	require.Error(t, l.RunOnce(context.Background()))
	require.False(t, l.Health().Up)
	require.True(t, snaps.Caches().At.IsZero(), "a failed look publishes nothing")
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	_, err := New(nil, Options{}, nil, nil, prometheus.NewRegistry(), discardLogger())
	require.ErrorContains(t, err, "nothing to watch")
	_, err = New(nil, Options{WatchPostHog: true}, nil, nil, prometheus.NewRegistry(), discardLogger())
	require.ErrorContains(t, err, "TTL")
}
