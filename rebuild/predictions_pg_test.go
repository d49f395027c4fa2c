package rebuild

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/posthog/seed"
)

// TestBuildPredictionsUnderRandomEdits edits a seeded team at random between builds, as
// its users and PostHog would (conditions that name cohorts and flags gained and lost,
// flags toggled, encrypted, made unreadable, deleted and added, tags and cohorts
// changed, some edits without a new updated_at, as raw SQL or a late commit leaves
// them), and after every round compares a builder that predicts from its previous
// build with a cold one: the same bytes, always, for both contracts.
func TestBuildPredictionsUnderRandomEdits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	res, err := seed.Fleet(ctx, f.pool, seed.Options{Teams: 0, GiantFlags: 300, GiantName: "edited", Seed: 21})
	require.NoError(t, err)
	team := res.GiantTeamID
	rng := rand.New(rand.NewPCG(21, 12))
	rows, err := f.pool.Query(ctx, `SELECT id FROM posthog_cohort WHERE team_id = $1 ORDER BY id`, team)
	require.NoError(t, err)
	cohorts, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.NotEmpty(t, cohorts)

	type flag struct {
		id  int64
		key string
	}
	liveFlags := func() []flag {
		rows, err := f.pool.Query(ctx, `SELECT id, key FROM posthog_featureflag WHERE team_id = $1 AND NOT deleted ORDER BY id`, team)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (flag, error) {
			var fl flag
			return fl, r.Scan(&fl.id, &fl.key)
		})
		require.NoError(t, err)
		return out
	}
	filters := func(fs []flag) string {
		switch rng.IntN(5) {
		case 0:
			return fmt.Sprintf(`{"groups":[{"properties":[{"key":"id","type":"cohort","value":%d}],"rollout_percentage":50}]}`, cohorts[rng.IntN(len(cohorts))])
		case 1:
			dep := fs[rng.IntN(len(fs))]
			return fmt.Sprintf(`{"groups":[{"properties":[{"key":%q,"type":"flag","value":true,"operator":"flag_evaluates_to"}]},{"properties":[{"key":"id","type":"cohort","value":%d}]}]}`,
				dep.key, cohorts[rng.IntN(len(cohorts))])
		case 2:
			return fmt.Sprintf(`{"groups":[{"properties":[{"key":"%d","type":"flag","value":true,"operator":"flag_evaluates_to"}]}]}`, fs[rng.IntN(len(fs))].id)
		case 3:
			return `{"groups":[{"properties":[{"key":"email","value":"x"}]}]}` // no type: the Rust reader refuses it
		default:
			return `{"groups":[{"properties":[],"rollout_percentage":30}]}`
		}
	}
	edit := func(fs []flag) string {
		fl := fs[rng.IntN(len(fs))]
		stamp := ", updated_at = now()"
		if rng.IntN(5) == 0 {
			stamp = "" // an edit the change time does not show
		}
		switch rng.IntN(8) {
		case 0, 1, 2:
			return fmt.Sprintf(`UPDATE posthog_featureflag SET filters = '%s'%s WHERE id = %d`, filters(fs), stamp, fl.id)
		case 3:
			return fmt.Sprintf(`UPDATE posthog_featureflag SET active = NOT active%s WHERE id = %d`, stamp, fl.id)
		case 4:
			return fmt.Sprintf(`UPDATE posthog_featureflag SET has_encrypted_payloads = NOT COALESCE(has_encrypted_payloads, false)%s WHERE id = %d`, stamp, fl.id)
		case 5:
			return fmt.Sprintf(`UPDATE posthog_featureflag SET deleted = true%s WHERE id = %d`, stamp, fl.id)
		case 6:
			return fmt.Sprintf(`INSERT INTO posthog_featureflag (team_id, key, name, filters, created_at) VALUES (%d, 'added-%d', 'n', '%s', now())`,
				team, rng.Int64(), filters(fs))
		default:
			return fmt.Sprintf(`UPDATE posthog_cohort SET deleted = NOT deleted WHERE id = %d`, cohorts[rng.IntN(len(cohorts))])
		}
	}

	for _, c := range Contracts() {
		warm := NewBuilder(BuilderOptions{Contract: c})
		held := 0
		for round := range 80 {
			if round > 0 {
				fs := liveFlags()
				for range 1 + rng.IntN(3) {
					_, err := f.pool.Exec(ctx, edit(fs))
					require.NoError(t, err)
				}
			}
			var got, want BufferSink
			st, err := warm.Build(ctx, f.src, team, &got)
			require.NoError(t, err, "%s round %d", c, round)
			require.Equal(t, round > 0, st.PredictionReused, "%s round %d", c, round)
			_, err = NewBuilder(BuilderOptions{Contract: c, PredictionCacheBytes: -1}).Build(ctx, f.src, team, &want)
			require.NoError(t, err, "%s round %d", c, round)
			require.Equal(t, want.Flags.String(), got.Flags.String(), "%s round %d: flags.json", c, round)
			require.Equal(t, want.Definitions.String(), got.Definitions.String(), "%s round %d: definitions", c, round)
			if st.PredictionReused && st.Attempts == 1 {
				held++
			}
		}
		require.Greater(t, held, 30, "%s: most predictions from the previous build hold", c)
	}
}
