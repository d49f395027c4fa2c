package rebuild

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// flagExtrasSQL: team 4 has tags whose collation order is not byte order (the column
// is given an ICU collation), a tagged deleted flag, and live and deleted experiments;
// team 5 has more distinct tag names than flagExtras holds, team 6 enough of them for a
// bitmap of every tagged flag.
func flagExtrasSQL() string {
	var b strings.Builder
	b.WriteString(`
ALTER TABLE posthog_tag ALTER COLUMN name TYPE varchar(255) COLLATE "en-x-icu";
INSERT INTO posthog_team (id, project_id, api_token, name) VALUES (4, 4, 'phc_four', 'four'), (5, 5, 'phc_five', 'five');
INSERT INTO posthog_tag (id, name, team_id) VALUES ('00000000-0000-4000-8000-000000000041', 'Zeta', 4),
 ('00000000-0000-4000-8000-000000000042', 'alpha', 4), ('00000000-0000-4000-8000-000000000043', 'Ärger', 4),
 ('00000000-0000-4000-8000-000000000044', 'beta', 4);
INSERT INTO posthog_featureflag (id, team_id, key, name, filters, created_at, deleted)
 SELECT 400 + i, 4, 'k' || lpad(i::text, 2, '0'), 'n', '{"groups":[]}', now(), i = 39 FROM generate_series(0, 39) i;
INSERT INTO posthog_featureflagevaluationtag (feature_flag_id, tag_id, created_at)
 SELECT 400 + i, t.id, now() FROM generate_series(0, 39) i JOIN posthog_tag t ON t.team_id = 4
 WHERE (t.name = 'Zeta' AND i % 2 = 0) OR (t.name = 'alpha' AND i % 3 = 0) OR (t.name = 'Ärger' AND i % 5 = 0) OR (t.name = 'beta' AND i % 7 = 1);
INSERT INTO posthog_experiment (team_id, name, feature_flag_id, deleted, created_at) VALUES
 (4, 'live', 401, false, now()), (4, 'live too', 401, false, now()), (4, 'old', 402, true, now()), (4, 'gone flag', 439, false, now());
INSERT INTO posthog_featureflag (id, team_id, key, name, filters, created_at)
 SELECT 500 + i, 5, 'k' || i, 'n', '{"groups":[]}', now() FROM generate_series(0, 9) i;
`)
	b.WriteString(`INSERT INTO posthog_team (id, project_id, api_token, name) VALUES (6, 6, 'phc_six', 'six');
INSERT INTO posthog_featureflag (id, team_id, key, name, filters, created_at)
 SELECT 600 + i, 6, 'k' || i, 'n', '{"groups":[]}', now() FROM generate_series(0, 19) i;
`)
	for i := range unionAbove + 2 {
		fmt.Fprintf(&b, "INSERT INTO posthog_tag (id, name, team_id) VALUES ('00000000-0000-4000-8000-0000000006%02d', 'six %d', 6);\n", i, i)
		fmt.Fprintf(&b, "INSERT INTO posthog_featureflagevaluationtag (feature_flag_id, tag_id, created_at) SELECT 600 + i, '00000000-0000-4000-8000-0000000006%02d', now() FROM generate_series(0, 19) i WHERE i %% %d = 0;\n", i, i+2)
	}
	for i := range maxExtraTagNames + 3 {
		fmt.Fprintf(&b, "INSERT INTO posthog_tag (id, name, team_id) VALUES ('00000000-0000-4000-8000-0000000005%02d', 'tag %02d', 5);\n", i, i)
		fmt.Fprintf(&b, "INSERT INTO posthog_featureflagevaluationtag (feature_flag_id, tag_id, created_at) VALUES (%d, '00000000-0000-4000-8000-0000000005%02d', now());\n", 500+i%10, i)
	}
	return b.String()
}

// TestFlagExtrasMatchTheSubqueries: the tags and experiments read by joins into bitmaps
// give the same payload bytes as the streaming query's per-flag subqueries, in the
// column's collation; a team with more tag names than the bitmaps hold, or a build
// whose budget is exhausted, reads them per flag.
func TestFlagExtrasMatchTheSubqueries(t *testing.T) {
	f := newFixture(t, "")
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, flagExtrasSQL())
	require.NoError(t, err)

	extras := func(team int64) *flagExtras {
		rd, err := f.src.Open(ctx, team, ReadOptions{})
		require.NoError(t, err)
		defer rd.Close()
		x, err := rd.(*pgReader).readFlagExtras(ctx)
		require.NoError(t, err)
		return x
	}
	x := extras(4)
	require.NotNil(t, x, "team 4's extras fit their bitmaps")
	require.Equal(t, []string{"alpha", "Ärger", "beta", "Zeta"}, x.names, "the column's collation, not byte order")
	require.Equal(t, []string{"alpha", "Ärger", "Zeta"}, x.tags(400, nil))
	require.True(t, x.experiment(401))
	require.False(t, x.experiment(402), "a deleted experiment")
	require.False(t, x.experiment(439), "a deleted flag")
	require.Nil(t, extras(5), "more tag names than the bitmaps hold")
	x = extras(6)
	require.NotNil(t, x)
	require.NotNil(t, x.tagged, "%d names", len(x.names))
	require.Equal(t, []string{"six 0", "six 1", "six 2", "six 3", "six 4", "six 5"}, x.tags(600, nil))
	require.Equal(t, []string{"six 0", "six 1", "six 4"}, x.tags(606, nil))
	require.Empty(t, x.tags(601, nil))

	// The first pass brings the same extras along from its own scan, and reports every
	// flag once, however many tags it has.
	for _, c := range []struct {
		team     int64
		first    int64
		flags    int
		fitsBits bool
	}{{4, 400, 40, true}, {5, 500, 10, false}, {6, 600, 20, true}} {
		rd, err := f.src.Open(ctx, c.team, ReadOptions{})
		require.NoError(t, err)
		seen := map[int64]int{}
		require.NoError(t, rd.References(ctx, func(row *RefRow) error { seen[row.ID]++; return nil }))
		pr := rd.(*pgReader)
		require.True(t, pr.extrasRead, "team %d", c.team)
		got := pr.extras
		rd.Close()
		require.Len(t, seen, c.flags, "team %d", c.team)
		for id, n := range seen {
			require.Equal(t, 1, n, "team %d flag %d reported %d times", c.team, id, n)
		}
		want := extras(c.team)
		if !c.fitsBits {
			require.Nil(t, got, "team %d", c.team)
			require.Nil(t, want, "team %d", c.team)
			continue
		}
		require.NotNil(t, got, "team %d", c.team)
		require.Equal(t, want.names, got.names, "team %d", c.team)
		require.Equal(t, want.tagged != nil, got.tagged != nil, "team %d", c.team)
		for id := c.first; id < c.first+int64(c.flags); id++ {
			require.Equal(t, want.tags(id, nil), got.tags(id, nil), "team %d flag %d", c.team, id)
			require.Equal(t, want.experiment(id), got.experiment(id), "team %d flag %d", c.team, id)
		}
	}

	build := func(team int64) BufferSink {
		var sink BufferSink
		_, err := NewBuilder(BuilderOptions{}).Build(ctx, f.src, team, &sink)
		require.NoError(t, err)
		return sink
	}
	joined := map[int64]BufferSink{4: build(4), 5: build(5), 6: build(6)}
	saved := flagExtrasBudget
	flagExtrasBudget = 0
	t.Cleanup(func() { flagExtrasBudget = saved })
	require.Nil(t, extras(4), "no budget")
	for team, want := range joined {
		got := build(team)
		require.Equal(t, got.Flags.String(), want.Flags.String(), "team %d flags.json", team)
		require.Equal(t, got.Definitions.String(), want.Definitions.String(), "team %d definitions", team)
	}

	var payload struct {
		Flags []struct {
			ID            int64    `json:"id"`
			Tags          []string `json:"evaluation_contexts"`
			HasExperiment bool     `json:"has_experiment"`
		} `json:"flags"`
	}
	four := joined[4]
	require.NoError(t, json.Unmarshal(four.Flags.Bytes(), &payload))
	require.Len(t, payload.Flags, 39)
	for _, fl := range payload.Flags {
		i := fl.ID - 400
		var want []string
		for _, c := range []struct {
			name string
			on   bool
		}{{"alpha", i%3 == 0}, {"Ärger", i%5 == 0}, {"beta", i%7 == 1}, {"Zeta", i%2 == 0}} {
			if c.on {
				want = append(want, c.name)
			}
		}
		require.Equal(t, fmt.Sprint(want), fmt.Sprint(fl.Tags), "flag %d", fl.ID)
		require.Equal(t, fl.ID == 401, fl.HasExperiment, "flag %d", fl.ID)
	}
}
