package seed

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testenv.Postgres(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func TestSeedIsDeterministicAndHeavyTailed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	digest := func() (Result, string) {
		pool := newPool(t)
		res, err := Fleet(ctx, pool, Options{Teams: 400, Seed: 7, GiantFlags: 3000, BadData: true})
		require.NoError(t, err)
		var sum string
		require.NoError(t, pool.QueryRow(ctx, `SELECT md5(string_agg(id::text || key || COALESCE(filters::text,'null'), ',' ORDER BY id)) FROM posthog_featureflag`).Scan(&sum))
		var flags, cohorts int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM posthog_featureflag), (SELECT count(*) FROM posthog_cohort)`).Scan(&flags, &cohorts))
		require.Equal(t, res.Flags, flags)
		require.Equal(t, res.Cohorts, cohorts)
		return res, sum
	}
	a, sumA := digest()
	b, sumB := digest()
	require.Equal(t, sumA, sumB, "same options and seed must give the same rows")
	require.Equal(t, a.Flags, b.Flags)
	require.Len(t, a.BadTeams, 3)

	pool := newPool(t)
	res, err := Fleet(ctx, pool, Options{Teams: 2000, Seed: 1})
	require.NoError(t, err)
	var maxFlags, medianFlags float64
	require.NoError(t, pool.QueryRow(ctx, `SELECT max(n), percentile_cont(0.5) WITHIN GROUP (ORDER BY n)
		FROM (SELECT count(*) AS n FROM posthog_featureflag GROUP BY team_id) s`).Scan(&maxFlags, &medianFlags))
	require.Greater(t, maxFlags, 20*medianFlags, "the largest team should dwarf the median (heavy tail)")
	require.Zero(t, res.GiantTeamID)
}

func TestSeedBadDataOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	_, err := Fleet(ctx, pool, Options{Teams: 300, Seed: 3})
	require.NoError(t, err)
	var bad int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM posthog_featureflag WHERE filters IS NULL OR jsonb_typeof(filters) <> 'object'`).Scan(&bad))
	require.Zero(t, bad)

	res, err := Fleet(ctx, pool, Options{Teams: 300, Seed: 3, BadData: true, GiantFlags: 10})
	require.NoError(t, err)
	require.Greater(t, res.FirstTeamID, int64(300), "a second seed appends after existing ids")
	for team, kind := range res.BadTeams {
		var n int64
		switch kind {
		case posthog.BadNullFilters:
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM posthog_featureflag WHERE team_id=$1 AND filters IS NULL`, team).Scan(&n))
		case posthog.BadNonObjectFilters:
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM posthog_featureflag WHERE team_id=$1 AND jsonb_typeof(filters)='string'`, team).Scan(&n))
		case posthog.BadCohortCycle:
			require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM posthog_cohort a JOIN posthog_cohort b
				ON a.filters::text LIKE '%"value": ' || b.id || ',%' AND b.filters::text LIKE '%"value": ' || a.id || ',%'
				WHERE a.team_id=$1 AND a.id<>b.id`, team).Scan(&n))
		}
		require.Positive(t, n, "team %d should have %s", team, kind)
	}
	var giantFlags int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM posthog_featureflag WHERE team_id=$1`, res.GiantTeamID).Scan(&giantFlags))
	require.EqualValues(t, 10, giantFlags)
}

func TestSeedOptionsValidate(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"negative teams": {Teams: -1},
		"share above 1":  {FlagTeamShare: 2},
		"max below min":  {MinFlags: 10, MaxFlags: 5},
		"negative giant": {GiantFlags: -3},
	} {
		_, err := Fleet(context.Background(), nil, o)
		require.Error(t, err, name)
	}
}

// TestSeedHoldsEveryShape: a default fleet has what PostHog's payload rules are about,
// so that the rebuild tests over a seeded database exercise each of them.
func TestSeedHoldsEveryShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	res, err := Fleet(ctx, pool, Options{Teams: 60, Seed: 12, HostileData: true})
	require.NoError(t, err)
	require.NotZero(t, res.EmptyTeamID)
	require.Len(t, res.HostileTeams, len(HostileKinds()))
	checks := map[string]string{
		"a team without flags":     `SELECT count(*) FROM posthog_team t WHERE NOT EXISTS (SELECT 1 FROM posthog_featureflag f WHERE f.team_id = t.id)`,
		"flag dependencies by id":  `SELECT count(*) FROM posthog_featureflag WHERE filters @? '$.groups[*].properties[*] ? (@.type == "flag" && @.key like_regex "^[0-9]+$")'`,
		"flag dependencies by key": `SELECT count(*) FROM posthog_featureflag WHERE filters @? '$.groups[*].properties[*] ? (@.type == "flag" && @.key starts with "flag-")'`,
		"cohort conditions":        `SELECT count(*) FROM posthog_featureflag WHERE filters @? '$.groups[*].properties[*] ? (@.type == "cohort")'`,
		"static cohorts":           `SELECT count(*) FROM posthog_cohort WHERE is_static AND NOT deleted`,
		"nested cohorts":           `SELECT count(*) FROM posthog_cohort WHERE filters @? '$.properties.** ? (@.type == "cohort")'`,
		"legacy-groups cohorts":    `SELECT count(*) FROM posthog_cohort WHERE filters IS NULL AND groups <> '[]'`,
		"encrypted-payload flags":  `SELECT count(*) FROM posthog_featureflag WHERE has_encrypted_payloads AND NOT deleted`,
		"legacy rollout rows":      `SELECT count(*) FROM posthog_featureflag WHERE rollout_percentage IS NOT NULL AND NOT filters ? 'groups'`,
		"survey flags":             `SELECT count(*) FROM posthog_survey WHERE targeting_flag_id IS NOT NULL`,
		"experiments":              `SELECT count(*) FROM posthog_experiment WHERE NOT deleted`,
		"deleted experiments":      `SELECT count(*) FROM posthog_experiment WHERE deleted`,
		"evaluation tags":          `SELECT count(*) FROM posthog_featureflagevaluationtag`,
		"device bucketing":         `SELECT count(*) FROM posthog_featureflag WHERE bucketing_identifier = 'device_id'`,
		"team settings":            `SELECT count(*) FROM feature_flags_teamfeatureflagsconfig WHERE minimal_flag_called_events`,
		"cohort backfill times":    `SELECT count(*) FROM posthog_cohort WHERE last_backfill_person_properties_at IS NOT NULL`,
		"inactive flags":           `SELECT count(*) FROM posthog_featureflag WHERE NOT active AND NOT deleted`,
	}
	for what, q := range checks {
		var n int64
		require.NoError(t, pool.QueryRow(ctx, q).Scan(&n), what)
		require.Positive(t, n, what)
	}
}
