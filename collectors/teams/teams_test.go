package teams

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testenv.Postgres(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// expected is an independent reading of one team's rows: every filters document is
// decoded with encoding/json and walked in Go, where the source uses SQL and jsonpath.
type expected struct {
	flags, active, deleted, filtersBytes, largest, cohorts, cohortBytes int64
	badNull, badNonObject                                               int64
}

type cohortRow struct {
	team            int64
	deleted, static bool
	bytes           int64
	refs            []int64
}

// cohortRefs finds {"type": "cohort", "value": id} anywhere in doc.
func cohortRefs(doc any, out *[]int64) {
	switch v := doc.(type) {
	case map[string]any:
		if v["type"] == "cohort" {
			switch id := v["value"].(type) {
			case float64:
				*out = append(*out, int64(id))
			case string:
				if n, err := strconv.ParseInt(id, 10, 64); err == nil {
					*out = append(*out, n)
				}
			}
		}
		for _, x := range v {
			cohortRefs(x, out)
		}
	case []any:
		for _, x := range v {
			cohortRefs(x, out)
		}
	}
}

func oracle(t *testing.T, pool *pgxpool.Pool) map[int64]*expected {
	t.Helper()
	ctx := context.Background()
	cohorts := map[int64]cohortRow{}
	rows, err := pool.Query(ctx, `SELECT id, team_id, deleted, is_static, filters::text FROM posthog_cohort`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		var c cohortRow
		var filters *string
		require.NoError(t, rows.Scan(&id, &c.team, &c.deleted, &c.static, &filters))
		if filters != nil {
			c.bytes = int64(len(*filters))
			var doc any
			require.NoError(t, json.Unmarshal([]byte(*filters), &doc))
			cohortRefs(doc, &c.refs)
		}
		cohorts[id] = c
	}
	require.NoError(t, rows.Err())

	out := map[int64]*expected{}
	direct := map[int64]map[int64]bool{}
	rows, err = pool.Query(ctx, `SELECT team_id, deleted, active, filters::text FROM posthog_featureflag`)
	require.NoError(t, err)
	for rows.Next() {
		var team int64
		var deleted, active bool
		var filters *string
		require.NoError(t, rows.Scan(&team, &deleted, &active, &filters))
		e := out[team]
		if e == nil {
			e = &expected{}
			out[team] = e
			direct[team] = map[int64]bool{}
		}
		e.flags++
		if deleted {
			e.deleted++
			continue
		}
		if active {
			e.active++
		}
		if filters == nil {
			e.badNull++
			continue
		}
		n := int64(len(*filters))
		e.filtersBytes += n
		e.largest = max(e.largest, n)
		var doc any
		require.NoError(t, json.Unmarshal([]byte(*filters), &doc))
		if _, ok := doc.(map[string]any); !ok {
			e.badNonObject++
			continue
		}
		var refs []int64
		cohortRefs(doc, &refs)
		for _, r := range refs {
			direct[team][r] = true
		}
	}
	require.NoError(t, rows.Err())
	for team, refs := range direct {
		seen := map[int64]bool{}
		var queue []int64
		for r := range refs {
			queue = append(queue, r)
		}
		for len(queue) > 0 {
			id := queue[0]
			queue = queue[1:]
			if seen[id] {
				continue
			}
			seen[id] = true
			c, ok := cohorts[id]
			if !ok {
				continue
			}
			if !c.static && !c.deleted {
				out[team].cohorts++
				out[team].cohortBytes += c.bytes
			}
			queue = append(queue, c.refs...)
		}
	}
	return out
}

func TestTeamsAgainstSeededDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: 80, Seed: 3, GiantFlags: 2500, BadData: true})
	require.NoError(t, err)

	at := time.Now()
	reg := prometheus.NewRegistry()
	snaps := snapshot.NewStore()
	ss := series.New(series.Options{Retention: time.Hour, MaxPoints: 10, MaxSeries: 10000}, nil)
	c, err := New(NewPostgres(pool, 10*time.Second), Options{ChunkTeams: 7, FullInterval: time.Hour, Clock: clock.Func(func() time.Time { return at })},
		snaps, ss, reg, discardLogger())
	require.NoError(t, err)
	require.NoError(t, c.RunOnce(ctx))

	got := snaps.Teams()
	require.True(t, got.Full)
	require.Positive(t, got.PassSeconds)
	want := oracle(t, pool)
	require.Len(t, got.Teams, len(want), "every team with flags, and only those")
	for id, e := range want {
		ts, ok := got.Teams[id]
		require.True(t, ok, "team %d", id)
		require.Equal(t, e.flags, ts.Flags, "team %d flags", id)
		require.Equal(t, e.active, ts.ActiveFlags, "team %d active", id)
		require.Equal(t, e.deleted, ts.DeletedFlags, "team %d deleted", id)
		require.Equal(t, e.filtersBytes, ts.FiltersBytes, "team %d filters bytes", id)
		require.Equal(t, e.largest, ts.LargestFilterBytes, "team %d largest", id)
		require.Equal(t, e.cohorts, ts.Cohorts, "team %d cohorts", id)
		require.Equal(t, e.cohortBytes, ts.CohortBytes, "team %d cohort bytes", id)
		require.GreaterOrEqual(t, ts.DefinitionsPayloadBytes, ts.FiltersBytes-e.filtersBytes+ts.CohortBytes)
		if _, bad := res.BadTeams[id]; !bad {
			require.Zero(t, ts.BadRows, "team %d: %v", id, ts.BadReasons)
		}
	}
	require.Len(t, res.BadTeams, 3)
	for id, kind := range res.BadTeams {
		ts := got.Teams[id]
		require.Positive(t, ts.BadRows, "team %d (%s)", id, kind)
		require.Contains(t, ts.BadReasons, kind, "team %d", id)
	}
	require.EqualValues(t, 3, testutil.ToFloat64(c.metrics.badTeams))

	giant := got.Teams[res.GiantTeamID]
	require.EqualValues(t, 2500, giant.Flags)
	require.Equal(t, float64(giant.PayloadBytes()), testutil.ToFloat64(c.metrics.largest), "the giant is the largest team")
	p, ok := ss.Last(series.Key(series.TeamPayloadBytes, strconv.FormatInt(res.GiantTeamID, 10)))
	require.True(t, ok)
	require.Equal(t, float64(giant.PayloadBytes()), p.V)

	// An incremental pass sees a changed flag and nothing else moves.
	var team int64
	for id := range want {
		if _, bad := res.BadTeams[id]; !bad && id != res.GiantTeamID {
			team = id
			break
		}
	}
	before := got.Teams[team]
	big := `{"groups":[{"properties":[],"rollout_percentage":100,"variant":null}],"payloads":{"true":"a payload added later"}}`
	_, err = pool.Exec(ctx, `INSERT INTO posthog_featureflag (team_id, key, name, filters, created_at, updated_at, deleted, active)
		VALUES ($1, 'added-later', 'added later', $2, now(), now(), false, true)`, team, big)
	require.NoError(t, err)
	at = at.Add(time.Minute)
	require.NoError(t, c.RunOnce(ctx))
	after := snaps.Teams()
	require.False(t, after.Full)
	require.Equal(t, before.Flags+1, after.Teams[team].Flags)
	require.Equal(t, before.FiltersBytes+int64(len(mustText(t, pool, big))), after.Teams[team].FiltersBytes)
	require.Equal(t, len(got.Teams), len(after.Teams))
	for id, ts := range after.Teams {
		if id != team {
			require.Equal(t, got.Teams[id].PayloadBytes(), ts.PayloadBytes(), "team %d untouched", id)
		}
	}
	require.EqualValues(t, 1, histogramCount(t, reg, "incremental"))
	require.EqualValues(t, 1, histogramCount(t, reg, "full"))
}

// mustText is how Postgres prints a jsonb value, which is what the sizes measure.
func mustText(t *testing.T, pool *pgxpool.Pool, doc string) string {
	var s string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT $1::jsonb::text`, doc).Scan(&s))
	return s
}

func histogramCount(t *testing.T, reg prometheus.Gatherer, kind string) uint64 {
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "flagwarden_teams_pass_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

// flakySource fails one range and, once broken, everything.
type flakySource struct {
	Source
	failFrom int64
	broken   bool
}

func (f *flakySource) MeasureRange(ctx context.Context, lo, hi int64) ([]snapshot.TeamSize, error) {
	if f.broken || lo == f.failFrom {
		return nil, errors.New("canceling statement due to statement timeout")
	}
	return f.Source.MeasureRange(ctx, lo, hi)
}

// TestFailedChunkKeepsTeamsAndShowsInHealth: a chunk that times out keeps its teams'
// previous sizes, the pass reports the error, and the loop's health goes down.
func TestFailedChunkKeepsTeamsAndShowsInHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: 30, Seed: 5, FlagTeamShare: 1})
	require.NoError(t, err)
	src := &flakySource{Source: NewPostgres(pool, 5*time.Second), failFrom: -1}
	at := time.Now()
	reg := prometheus.NewRegistry()
	snaps := snapshot.NewStore()
	c, err := New(src, Options{ChunkTeams: 10, FullInterval: time.Minute, Clock: clock.Func(func() time.Time { return at })}, snaps, nil, reg, discardLogger())
	require.NoError(t, err)
	l := loop.New("teams", loop.Timing{Interval: time.Minute, Timeout: 30 * time.Second}, c.RunOnce, discardLogger(), loop.NewMetrics(reg))
	require.NoError(t, l.RunOnce(ctx))
	first := snaps.Teams().Teams
	require.Len(t, first, 30)

	src.failFrom = res.FirstTeamID + 10
	at = at.Add(2 * time.Minute) // a full pass is due
	require.Error(t, l.RunOnce(ctx))
	require.False(t, l.Health().Up)
	require.Contains(t, l.Health().LastError, "statement timeout")
	second := snaps.Teams().Teams
	require.Len(t, second, 30, "teams in the failed chunk keep their previous sizes")
	ids := slices.Sorted(func(yield func(int64) bool) {
		for id := range second {
			if !yield(id) {
				return
			}
		}
	})
	require.Equal(t, res.FirstTeamID, ids[0])

	pool.Close() // the database goes away
	at = at.Add(2 * time.Minute)
	require.Error(t, l.RunOnce(ctx))
	require.Equal(t, 0.0, loopUp(t, reg))
	require.Len(t, snaps.Teams().Teams, 30, "a failed pass never empties the snapshot")
}

func loopUp(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "flagwarden_collector_up" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("flagwarden_collector_up missing")
	return -1
}

// TestSweepResumesAcrossPasses: with a budget of one chunk per pass, the sweep spreads
// over passes, the snapshot fills chunk by chunk, and only the last pass is full.
func TestSweepResumesAcrossPasses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	_, err := seed.Fleet(ctx, pool, seed.Options{Teams: 30, Seed: 9, FlagTeamShare: 1})
	require.NoError(t, err)
	at := time.Now()
	snaps := snapshot.NewStore()
	c, err := New(NewPostgres(pool, 5*time.Second), Options{ChunkTeams: 10, SweepBudget: time.Nanosecond, FullInterval: time.Hour,
		Clock: clock.Func(func() time.Time { return at })}, snaps, nil, prometheus.NewRegistry(), discardLogger())
	require.NoError(t, err)
	for i, want := range []int{10, 20, 30} {
		require.NoError(t, c.RunOnce(ctx))
		got := snaps.Teams()
		require.Len(t, got.Teams, want, "pass %d", i)
		require.Equal(t, i == 2, got.Full, "pass %d", i)
		at = at.Add(time.Minute)
	}
	require.NoError(t, c.RunOnce(ctx))
	require.False(t, snaps.Teams().Full, "no sweep until full_interval has passed")
	require.Len(t, snaps.Teams().Teams, 30)
}
