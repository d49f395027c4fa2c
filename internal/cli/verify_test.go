package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
	"github.com/flagwarden/flagwarden/rebuild/verify"
)

// TestVerifyAfterRebuildAndPlantedProblems runs `flagwarden rebuild --all` in the
// PostHog layout with the S3 tier, then `flagwarden verify`, against real Postgres,
// Redis and S3: nothing wrong at first; then a stale, a missing, a corrupt entry and
// a wrong :etag, each found with its outcome and the exit code saying so.
func TestVerifyAfterRebuildAndPlantedProblems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = seed.Fleet(ctx, pool, seed.Options{Teams: 10, Seed: 21, FlagTeamShare: 0.6, MaxFlags: 60})
	require.NoError(t, err)
	redisURL := testenv.Redis(t)
	s3 := testenv.S3(t)
	cfg := writeFile(t, fmt.Sprintf(`flag_database:
  url: %s
broker:
  url: %s
cache:
  url: %s
  layout: posthog
  ttl: 168h
  s3:
    enabled: true
    endpoint: %s
    bucket: %s
    region: %s
    access_key_id: %s
    secret_access_key: %s
    path_style: true
    timeout: 5s
`, dbURL, redisURL, redisURL, s3.Endpoint, s3.Bucket, s3.Region, s3.AccessKey, s3.SecretKey))

	code, out, errOut := runCLI(t, nil, "rebuild", "--all", "--config", cfg)
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "prediction: references")
	require.NotContains(t, out, "prediction: shared")
	// A second process predicts every team from the first one's builds, shared in Redis.
	code, out, errOut = runCLI(t, nil, "rebuild", "--all", "--config", cfg)
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	require.NotContains(t, errOut, "shared prediction")
	require.Equal(t, 4, strings.Count(out, "prediction: shared)"), out)
	require.Equal(t, 4, strings.Count(out, ": unchanged: "), out)
	require.NotContains(t, out, "prediction: references")

	code, out, errOut = runCLI(t, nil, "verify", "--config", cfg)
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	require.Contains(t, out, ": 0 problem(s), 0 check(s) could not be made")
	require.Contains(t, out, "flags_with_cohorts.json")
	require.Contains(t, out, "tiers: [redis s3]")

	code, out, errOut = runCLI(t, nil, "verify", "--json", "--config", cfg)
	require.Equal(t, 0, code, errOut)
	var rep struct {
		Teams        int          `json:"teams"`
		ProblemCount int          `json:"problem_count"`
		Summary      []verify.Row `json:"summary"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	var flagTeams int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(DISTINCT team_id) FROM posthog_featureflag`).Scan(&flagTeams))
	require.Equal(t, flagTeams, rep.Teams, "every team that has flags, and only those")
	require.Zero(t, rep.ProblemCount)
	require.Len(t, rep.Summary, 4, "two kinds in two tiers")
	for _, row := range rep.Summary {
		require.Equal(t, flagTeams, row.Outcomes[verify.OK], "%+v", row)
	}

	// S3 unreachable: nothing is wrong as far as can be seen, but the check is incomplete.
	s3.Stop()
	code, out, _ = runCLI(t, nil, "verify", "--config", cfg)
	require.Equal(t, exitUnverified, code, out)
	require.Contains(t, out, fmt.Sprintf("%d check(s) could not be made", 2*flagTeams))
	code, _, _ = runCLI(t, nil, "verify", "--no-s3", "--config", cfg)
	require.Equal(t, 0, code, "Redis alone verifies")
	s3.Start()

	var teams []int64
	rows, err := pool.Query(ctx, `SELECT DISTINCT team_id FROM posthog_featureflag ORDER BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		teams = append(teams, id)
	}
	require.NoError(t, rows.Err())
	require.GreaterOrEqual(t, len(teams), 4)
	staleTeam, missingTeam, corruptTeam, etagTeam := teams[0], teams[1], teams[2], teams[3]
	opt, err := redis.ParseURL(redisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	l := cachekeys.Layout{PostHog: true}
	require.NoError(t, rdb.Del(ctx, l.Payload(missingTeam, cachekeys.KindDefinitions)).Err())
	require.NoError(t, rdb.Set(ctx, l.Payload(corruptTeam, cachekeys.KindFlags), "\x80\x04garbage", 0).Err())
	require.NoError(t, rdb.Set(ctx, l.ETag(etagTeam, cachekeys.KindFlags), hypercache.Encode([]byte("ffffffffffffffff"), true), 0).Err())
	time.Sleep(1100 * time.Millisecond) // S3's times are whole seconds
	_, err = pool.Exec(ctx, `UPDATE posthog_featureflag SET name = name || ' v2', updated_at = now() WHERE team_id = $1`, staleTeam)
	require.NoError(t, err)

	code, out, errOut = runCLI(t, nil, "verify", "--config", cfg)
	require.Equal(t, exitWrongCaches, code, "%s\n%s", out, errOut)
	for _, want := range []string{
		fmt.Sprintf("team %d flags.json in redis: stale", staleTeam),
		fmt.Sprintf("team %d flags_with_cohorts.json in s3: stale", staleTeam),
		fmt.Sprintf("team %d flags_with_cohorts.json in redis: missing", missingTeam),
		fmt.Sprintf("team %d flags.json in redis: undecodable", corruptTeam),
		fmt.Sprintf("team %d flags.json in redis: etag wrong", etagTeam),
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, fmt.Sprintf("team %d flags_with_cohorts.json in s3", missingTeam), "S3 still holds that one")

	code, out, _ = runCLI(t, nil, "verify", "--json", "--team", strconv.FormatInt(missingTeam, 10), "--config", cfg)
	require.Equal(t, exitWrongCaches, code)
	var one verify.Report
	require.NoError(t, json.Unmarshal([]byte(out), &one))
	require.Equal(t, 1, one.Teams)
	require.Equal(t, 1, one.ProblemCount)
	require.Equal(t, verify.Missing, one.Problems[0].Outcome)

	// The changed team is not judged within a grace period; the broken ones still are.
	code, out, _ = runCLI(t, nil, "verify", "--grace", "1h", "--config", cfg)
	require.Equal(t, exitWrongCaches, code)
	require.NotContains(t, out, fmt.Sprintf("team %d flags.json in redis: stale", staleTeam))
	require.Contains(t, out, fmt.Sprintf("team %d flags.json in redis: undecodable", corruptTeam))

	code, _, errOut = runCLI(t, nil, "verify", "--team", "999999", "--config", cfg)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "team 999999 does not exist")
	code, _, _ = runCLI(t, nil, "verify", "--grace", "-1s", "--config", cfg)
	require.Equal(t, 2, code)
}
