package app

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
	"github.com/flagwarden/flagwarden/rebuild/s3tier"
)

// TestServeVerifiesCachesAndPublishesToS3 runs serve with the PostHog layout, the S3
// tier and the periodic verification: teams without caches become cache_mismatch
// findings; once rebuilt (into Redis and S3) they verify clean and the findings resolve.
func TestServeVerifiesCachesAndPublishesToS3(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = seed.Fleet(ctx, pool, seed.Options{Teams: 4, Seed: 8, FlagTeamShare: 1, MaxFlags: 30})
	require.NoError(t, err)
	srv := testenv.S3(t)
	cfg := testConfig(t, dbURL, testenv.Redis(t))
	cfg.Cache.Layout = "posthog"
	cfg.Cache.S3 = config.S3{Enabled: true, Endpoint: srv.Endpoint, Bucket: srv.Bucket, Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: config.Secret(srv.SecretKey), PathStyle: true,
		Timeout: 5 * time.Second, PartSize: 5 << 20}
	cfg.Verify = config.Verify{Enabled: true, Interval: 300 * time.Millisecond, Timeout: 300 * time.Millisecond, TeamsPerPass: 100}
	cfg.Detectors.Interval, cfg.Detectors.Timeout = 200*time.Millisecond, 200*time.Millisecond
	cfg.Rebuild.SweepInterval = 0
	require.NoError(t, cfg.Validate())
	a := startApp(t, cfg, "r1")

	var teams []int64
	rows, err := pool.Query(ctx, `SELECT DISTINCT team_id FROM posthog_featureflag ORDER BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		teams = append(teams, id)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, teams)

	mismatched := func() map[string]bool {
		active, err := a.findings.Active(ctx)
		require.NoError(t, err)
		out := map[string]bool{}
		for _, f := range active {
			if f.Kind == "cache_mismatch" {
				out[f.Subject] = true
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(mismatched()) == len(teams) }, 30*time.Second, 100*time.Millisecond,
		"every team without caches is a finding")

	for _, id := range teams {
		_, err := a.engine.Request(ctx, id, "test")
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(mismatched()) == 0 }, 60*time.Second, 100*time.Millisecond,
		"rebuilt teams verify clean and their findings resolve")

	tier, err := NewS3Tier(ctx, cfg, nil)
	require.NoError(t, err)
	for _, id := range teams {
		for _, kind := range cachekeys.Kinds {
			o, err := tier.Open(ctx, id, kind)
			require.NoError(t, err, "team %d %s is in S3", id, kind)
			require.Positive(t, o.Size)
			o.Body.Close()
			require.Equal(t, "cache/teams/"+strconv.FormatInt(id, 10)+"/feature_flags/"+kind.File(), s3tier.Key(id, kind))
		}
	}
}
