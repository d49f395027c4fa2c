package detectors

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/verdict"
)

type mismatches []verdict.TeamProblems

func (m *mismatches) Problems() []verdict.TeamProblems { return *m }

func TestCacheMismatchFindings(t *testing.T) {
	t.Parallel()
	checked := t0.Add(-10 * time.Minute)
	ps := mismatches{
		{TeamID: 7, CheckedAt: checked, Checks: []verdict.Check{
			{TeamID: 7, Kind: cachekeys.KindFlags, Tier: verdict.TierRedis, Outcome: verdict.Stale, ETag: verdict.CheckOK, Expiry: verdict.CheckOK,
				Detail: "written 2026-01-01T00:00:00Z, before the team's data changed at 2026-01-02T00:00:00Z"},
			{TeamID: 7, Kind: cachekeys.KindDefinitions, Tier: verdict.TierRedis, Outcome: verdict.OK, ETag: verdict.CheckWrong, Expiry: verdict.CheckOK},
		}},
		{TeamID: 9, CheckedAt: checked, Checks: []verdict.Check{
			{TeamID: 9, Kind: cachekeys.KindDefinitions, Tier: verdict.TierRedis, Outcome: verdict.Undecodable, Detail: "not a pickle"},
			{TeamID: 9, Kind: cachekeys.KindDefinitions, Tier: verdict.TierS3, Outcome: verdict.Missing},
		}},
		// A team whose only problem is a check that could not be made is not a finding.
		{TeamID: 11, CheckedAt: checked, Checks: []verdict.Check{
			{TeamID: 11, Kind: cachekeys.KindFlags, Tier: verdict.TierS3, Outcome: verdict.Failed, Detail: "connection refused"},
		}},
	}
	obs := CacheMismatches(ps, t0)
	require.Len(t, obs, 2)
	require.Equal(t, "9", obs[0].Subject, "the critical team first")
	require.Equal(t, SeverityCritical, obs[0].Severity)
	require.Contains(t, obs[0].Summary, "flags_with_cohorts.json in redis undecodable")
	require.Contains(t, obs[0].Summary, "flags_with_cohorts.json in s3 missing")
	require.Equal(t, 1.0, obs[0].Evidence["undecodable"])
	require.Equal(t, 600.0, obs[0].Evidence["checked_seconds_ago"])
	require.Equal(t, SeverityWarning, obs[1].Severity)
	require.Equal(t, "cache_mismatch{team=7}", obs[1].ID())
	require.Equal(t, 1.0, obs[1].Evidence["stale"])
	require.Equal(t, 1.0, obs[1].Evidence["etag_wrong"])
	require.Contains(t, obs[1].Description, "before the team's data changed")
	require.Equal(t, "/teams/7", obs[1].Link)

	// Through the engine: the findings fire at once and resolve when the team is clean.
	now := t0
	e, err := NewEngine(EngineOptions{Series: series.New(series.Options{}, nil), Snapshots: snapshot.NewStore(),
		Mismatches: &ps, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	require.NoError(t, err)
	require.NoError(t, e.RunOnce(context.Background()))
	active := e.Active()
	require.True(t, containsID(active, "cache_mismatch{team=7}"))
	require.True(t, containsID(active, "cache_mismatch{team=9}"))
	for _, f := range active {
		require.Equal(t, StateFiring, f.State, f.ID)
	}
	ps = ps[1:]
	now = now.Add(30 * time.Minute)
	require.NoError(t, e.RunOnce(context.Background()))
	require.False(t, containsID(e.Active(), "cache_mismatch{team=7}"))
	require.True(t, containsID(e.Active(), "cache_mismatch{team=9}"))
}

func containsID(fs []Finding, id string) bool {
	for _, f := range fs {
		if f.ID == id {
			return true
		}
	}
	return false
}
