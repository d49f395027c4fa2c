package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func TestInspect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.Postgres(t)
	redisURL := testenv.Redis(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	seeded, err := seed.Fleet(ctx, pool, seed.Options{Teams: 40, Seed: 2, BadData: true})
	require.NoError(t, err)

	opt, err := redis.ParseURL(redisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	// A bound queue with three messages in two priority lists, and one cache.
	require.NoError(t, rdb.SAdd(ctx, "_kombu.binding.feature_flags", "feature_flags\x06\x16\x06\x16feature_flags").Err())
	require.NoError(t, rdb.LPush(ctx, "feature_flags", "a", "b").Err())
	require.NoError(t, rdb.LPush(ctx, "feature_flags\x06\x169", "c").Err())
	l := cachekeys.Layout{}
	var cached int64
	for id := seeded.FirstTeamID; id <= seeded.LastTeamID; id++ {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM posthog_featureflag WHERE team_id = $1 AND active AND NOT deleted", id).Scan(&n))
		if n > 0 {
			cached = id
			break
		}
	}
	built := time.Now().Add(-time.Minute)
	m := cachekeys.Meta{BuiltAt: built, ETag: "0123456789abcdef0123", Bytes: 2048, Build: "b"}
	require.NoError(t, rdb.HSet(ctx, l.Meta(cached, cachekeys.KindFlags), m.Fields()...).Err())
	require.NoError(t, rdb.ZAdd(ctx, l.Index(cachekeys.KindFlags), redis.Z{Score: cachekeys.IndexScore(built), Member: fmt.Sprint(cached)}).Err())

	cfg := writeFile(t, fmt.Sprintf("flag_database:\n  url: %s\nbroker:\n  url: %s\ncache:\n  url: %s\n", dbURL, redisURL, redisURL))

	code, out, errOut := runCLI(t, nil, "inspect", "queues", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "1 queues, 3 messages waiting")
	require.Regexp(t, `feature_flags\s+3\s+2/0/0/1`, out)

	code, out, errOut = runCLI(t, nil, "inspect", "--json", "--config", cfg, "queues")
	require.Equal(t, 0, code, errOut)
	var q snapshot.Queues
	require.NoError(t, json.Unmarshal([]byte(out), &q))
	require.Len(t, q.Queues, 1)
	require.EqualValues(t, 3, q.Queues[0].Depth)
	require.Equal(t, 3, q.Queues[0].Composition.Undecodable, "none of the test messages is a Celery message")

	code, out, errOut = runCLI(t, nil, "inspect", "teams", "--config", cfg, "--top", "5")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "TEAM")
	require.Contains(t, out, "more teams")
	code, out, errOut = runCLI(t, nil, "inspect", "teams", "--json", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	var tj struct {
		Teams []snapshot.TeamSize `json:"teams"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &tj))
	var withFlags int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(DISTINCT team_id) FROM posthog_featureflag").Scan(&withFlags))
	require.Len(t, tj.Teams, withFlags)
	require.GreaterOrEqual(t, tj.Teams[0].PayloadBytes(), tj.Teams[len(tj.Teams)-1].PayloadBytes(), "largest first")

	code, out, errOut = runCLI(t, nil, "inspect", "caches", "--config", cfg, "--top", "0")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "MISSING")
	require.Contains(t, out, "0123456789abcdef")
	require.Contains(t, out, "2.0 KiB")

	code, _, errOut = runCLI(t, nil, "inspect", "pods", "--config", cfg)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "kubernetes.enabled is false")

	code, _, errOut = runCLI(t, nil, "inspect", "everything", "--config", cfg)
	require.Equal(t, 2, code)
	require.True(t, strings.Contains(errOut, "Usage: flagwarden inspect"), errOut)
}
