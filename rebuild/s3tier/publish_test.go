package s3tier

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
	"github.com/flagwarden/flagwarden/rebuild"
)

var posthog = cachekeys.Layout{PostHog: true}

type publishEnv struct {
	pool  *pgxpool.Pool
	rdb   *redis.Client
	srv   *testenv.S3Server
	tier  *Tier
	src   *rebuild.PGSource
	teams []int64
}

func newPublishEnv(t *testing.T, opts seed.Options) *publishEnv {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = seed.Fleet(ctx, pool, opts)
	require.NoError(t, err)
	opt, err := redis.ParseURL(testenv.Redis(t))
	require.NoError(t, err)
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	srv := testenv.S3(t)
	e := &publishEnv{pool: pool, rdb: rdb, srv: srv, tier: newTier(t, srv, prometheus.NewRegistry()), src: rebuild.NewPGSource(pool, nil)}
	rows, err := pool.Query(ctx, `SELECT id FROM posthog_team ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		e.teams = append(e.teams, id)
	}
	require.NoError(t, rows.Err())
	return e
}

func (e *publishEnv) rebuilder(mirror rebuild.Mirror) *rebuild.Rebuilder {
	pub := rebuild.NewPublisher(e.rdb, rebuild.PublisherOptions{Layout: posthog, Compress: true, Mirror: mirror})
	return rebuild.NewRebuilder(e.src, rebuild.NewBuilder(rebuild.BuilderOptions{}), pub)
}

// redisJSON is the JSON text a team's live Redis value decodes to.
func (e *publishEnv) redisJSON(t *testing.T, team int64, kind cachekeys.Kind) string {
	t.Helper()
	stored, err := e.rdb.Get(context.Background(), posthog.Payload(team, kind)).Bytes()
	require.NoError(t, err)
	r, err := hypercache.NewReader(bytes.NewReader(stored))
	require.NoError(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(b)
}

func TestBuildsLandInS3WithTheBytesRedisHolds(t *testing.T) {
	t.Parallel()
	e := newPublishEnv(t, seed.Options{Teams: 6, Seed: 3, FlagTeamShare: 0.7, MaxFlags: 80})
	rb := e.rebuilder(e.tier)
	for _, team := range e.teams {
		res, err := rb.Rebuild(context.Background(), team)
		require.NoError(t, err)
		require.True(t, res.OK)
		for _, kind := range cachekeys.Kinds {
			want := e.redisJSON(t, team, kind)
			require.NotEmpty(t, want)
			require.Equal(t, want, readAll(t, e.tier, team, kind), "team %d %s: S3 holds the JSON Redis decodes to", team, kind)
		}
	}
	require.Equal(t, float64(2*len(e.teams)), testutil.ToFloat64(e.tier.metrics.uploads.WithLabelValues("put", "ok")))
}

func TestS3OutageFailsThePublishAndLeavesRedisAsItWas(t *testing.T) {
	t.Parallel()
	e := newPublishEnv(t, seed.Options{Teams: 3, Seed: 5, FlagTeamShare: 1, MinFlags: 4, MaxFlags: 40})
	ctx := context.Background()
	team := e.teams[0]
	rb := e.rebuilder(e.tier)
	_, err := rb.Rebuild(ctx, team)
	require.NoError(t, err)
	before := map[cachekeys.Kind]string{}
	for _, kind := range cachekeys.Kinds {
		before[kind] = e.redisJSON(t, team, kind)
	}
	etagBefore, err := e.rdb.Get(ctx, posthog.ETag(team, cachekeys.KindFlags)).Bytes()
	require.NoError(t, err)

	// The team's data changes while S3 is down: the build fails, nothing goes live.
	_, err = e.pool.Exec(ctx, `UPDATE posthog_featureflag SET name = name || ' (edited)', updated_at = now() WHERE team_id = $1`, team)
	require.NoError(t, err)
	e.srv.Stop()
	res, err := rb.Rebuild(ctx, team)
	require.Error(t, err, "an S3 outage fails the publish")
	require.False(t, res.OK)
	require.Contains(t, res.Error, "mirror")
	for _, kind := range cachekeys.Kinds {
		require.Equal(t, before[kind], e.redisJSON(t, team, kind), "%s: the live Redis payload is unchanged", kind)
	}
	etag, err := e.rdb.Get(ctx, posthog.ETag(team, cachekeys.KindFlags)).Bytes()
	require.NoError(t, err)
	require.Equal(t, etagBefore, etag, "the :etag is unchanged")
	keys, err := e.rdb.Keys(ctx, "*:tmp:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "the build's temporary keys are gone")

	// S3 is back: the retry publishes both tiers, with the edit.
	e.srv.Start()
	res, err = rb.Rebuild(ctx, team)
	require.NoError(t, err)
	require.True(t, res.OK)
	for _, kind := range cachekeys.Kinds {
		now := e.redisJSON(t, team, kind)
		require.NotEqual(t, before[kind], now, "%s: the retry published the edit", kind)
		require.Contains(t, now, "(edited)")
		require.Equal(t, now, readAll(t, e.tier, team, kind))
	}
}

// A team whose payload is many parts long publishes through a multipart upload, and
// S3 holds exactly what Redis decodes to.
func TestLargeTeamPublishesMultipart(t *testing.T) {
	t.Parallel()
	e := newPublishEnv(t, seed.Options{Teams: 1, Seed: 9, FlagTeamShare: 0, GiantFlags: 16000})
	ctx := context.Background()
	giant := e.teams[len(e.teams)-1]
	start := time.Now()
	res, err := e.rebuilder(e.tier).Rebuild(ctx, giant)
	require.NoError(t, err)
	t.Logf("giant team: %d flags, definitions %d bytes, flags %d bytes, peak heap %.1f MiB, %s",
		res.Flags, res.DefinitionsBytes, res.FlagsBytes, float64(res.PeakHeapBytes)/(1<<20), time.Since(start).Round(time.Millisecond))
	require.Greater(t, res.DefinitionsBytes, int64(2*MinPartSize), "the payload spans several parts")
	require.Positive(t, testutil.ToFloat64(e.tier.metrics.uploads.WithLabelValues("multipart", "ok")))
	for _, kind := range cachekeys.Kinds {
		o, err := e.tier.Open(ctx, giant, kind)
		require.NoError(t, err)
		o.Body.Close()
		want := e.redisJSON(t, giant, kind)
		require.Equal(t, int64(len(want)), o.Size)
		require.Equal(t, want, readAll(t, e.tier, giant, kind))
	}
	require.Zero(t, pendingUploads(t, e.tier))
}
