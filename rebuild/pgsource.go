package rebuild

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// PGSource reads PostHog's tables in the flag database. It implements FlagSource,
// SizeSource and StaleSource.
type PGSource struct {
	pool *pgxpool.Pool
	// snapshots, if set, answers TeamSize from the team-size collector's last pass.
	snapshots *snapshot.Store
}

// NewPGSource returns a source over pool; snapshots may be nil.
func NewPGSource(pool *pgxpool.Pool, snapshots *snapshot.Store) *PGSource {
	return &PGSource{pool: pool, snapshots: snapshots}
}

var (
	_ FlagSource  = (*PGSource)(nil)
	_ SizeSource  = (*PGSource)(nil)
	_ StaleSource = (*PGSource)(nil)
)

// Team reads the team and the watermark of its flag data.
func (s *PGSource) Team(ctx context.Context, teamID int64) (TeamInfo, error) {
	return readTeam(ctx, s.pool, teamID)
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readTeam(ctx context.Context, q querier, teamID int64) (TeamInfo, error) {
	ti := TeamInfo{ID: teamID, PropertyMatchingVersion: 1}
	var wm *time.Time
	err := q.QueryRow(ctx, `SELECT t.project_id, GREATEST(
			(SELECT max(GREATEST(f.updated_at, f.created_at)) FROM posthog_featureflag f WHERE f.team_id = t.id),
			(SELECT max(GREATEST(c.created_at, c.last_calculation)) FROM posthog_cohort c WHERE c.team_id = t.id))
		FROM posthog_team t WHERE t.id = $1`, teamID).Scan(&ti.ProjectID, &wm)
	if errors.Is(err, pgx.ErrNoRows) {
		return ti, fmt.Errorf("team %d: %w", teamID, ErrUnknownTeam)
	}
	if err != nil {
		return ti, fmt.Errorf("read team %d: %w", teamID, err)
	}
	if wm != nil {
		ti.Watermark = wm.UTC()
	}
	var hasConfig bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('feature_flags_teamfeatureflagsconfig') IS NOT NULL`).Scan(&hasConfig); err != nil {
		return ti, fmt.Errorf("read team %d settings: %w", teamID, err)
	}
	if hasConfig {
		var pmv int16
		err := q.QueryRow(ctx, `SELECT minimal_flag_called_events, property_matching_version
			FROM feature_flags_teamfeatureflagsconfig WHERE team_id = $1`, teamID).Scan(&ti.MinimalFlagCalledEvents, &pmv)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return ti, fmt.Errorf("read team %d settings: %w", teamID, err)
		default:
			ti.PropertyMatchingVersion = int64(pmv)
		}
	}
	return ti, nil
}

// TeamSize answers from the collector's snapshot when it has the team, else with one
// count query: flags, their filter bytes, the largest filter, and the referenced
// cohorts are estimated from it.
func (s *PGSource) TeamSize(ctx context.Context, teamID int64) (snapshot.TeamSize, error) {
	if s.snapshots != nil {
		if ts, ok := s.snapshots.Team(teamID); ok {
			return ts, nil
		}
	}
	ts := snapshot.TeamSize{TeamID: teamID}
	var exists bool
	err := s.pool.QueryRow(ctx, `SELECT true, t.project_id,
			(SELECT count(*) FROM posthog_featureflag f WHERE f.team_id = t.id AND NOT f.deleted),
			(SELECT COALESCE(sum(octet_length(f.filters::text)), 0) FROM posthog_featureflag f WHERE f.team_id = t.id AND NOT f.deleted),
			(SELECT COALESCE(max(octet_length(f.filters::text)), 0) FROM posthog_featureflag f WHERE f.team_id = t.id AND NOT f.deleted)
		FROM posthog_team t WHERE t.id = $1`, teamID).Scan(&exists, &ts.ProjectID, &ts.Flags, &ts.FiltersBytes, &ts.LargestFilterBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return ts, fmt.Errorf("team %d: %w", teamID, ErrUnknownTeam)
	}
	if err != nil {
		return ts, fmt.Errorf("measure team %d: %w", teamID, err)
	}
	ts.FlagsPayloadBytes = ts.FiltersBytes + ts.Flags*flagOverheadBytes
	ts.DefinitionsPayloadBytes = ts.FlagsPayloadBytes
	ts.MeasuredAt = time.Now()
	return ts, nil
}

// flagOverheadBytes is what one flag adds to a payload besides its filters (the other
// serialized fields and the dependency metadata).
const flagOverheadBytes = 260

// ChangedSince lists teams whose flags or cohorts changed after since.
func (s *PGSource) ChangedSince(ctx context.Context, since time.Time, limit int) (map[int64]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT team_id, max(ts) FROM (
			SELECT team_id, GREATEST(updated_at, created_at) AS ts FROM posthog_featureflag
			WHERE updated_at > $1 OR created_at > $1
			UNION ALL
			SELECT team_id, GREATEST(created_at, last_calculation) FROM posthog_cohort
			WHERE created_at > $1 OR last_calculation > $1) c
		GROUP BY team_id ORDER BY max(ts) LIMIT $2`, since, limit)
	if err != nil {
		return nil, fmt.Errorf("find changed teams: %w", err)
	}
	defer rows.Close()
	out := map[int64]time.Time{}
	for rows.Next() {
		var id int32
		var ts time.Time
		if err := rows.Scan(&id, &ts); err != nil {
			return nil, fmt.Errorf("find changed teams: %w", err)
		}
		out[int64(id)] = ts.UTC()
	}
	return out, rows.Err()
}
