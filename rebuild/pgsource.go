package rebuild

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	ti := TeamInfo{ID: teamID}
	var wm *time.Time
	err := s.pool.QueryRow(ctx, `SELECT t.project_id, GREATEST(
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
	return ti, nil
}

// Flags streams one keyset page of the team's non-deleted flags. Rows are handed to
// fn as they arrive from the server, so a page never sits in memory whole; only the
// page's evaluation tags (flag id and tag name) are read ahead.
func (s *PGSource) Flags(ctx context.Context, teamID int64, afterKey string, limit int, fn func(*FlagRow) error) (int, error) {
	tags, err := s.pageTags(ctx, teamID, afterKey, limit)
	if err != nil {
		return 0, err
	}
	// QueryExecModeExec plans every page with its actual keys: a cached generic plan for
	// "team_id = $1 AND key > $2" can turn each page into a scan of the whole team.
	rows, err := s.pool.Query(ctx, `SELECT f.id, f.key, f.name, f.filters, f.active,
			COALESCE(f.ensure_experience_continuity, false), COALESCE(f.has_encrypted_payloads, false),
			COALESCE(f.is_remote_configuration, false), f.version, COALESCE(f.evaluation_runtime, 'all')
		FROM posthog_featureflag f
		WHERE f.team_id = $1 AND NOT f.deleted AND f.key > $2
		ORDER BY f.key LIMIT $3`, pgx.QueryExecModeExec, teamID, afterKey, limit)
	if err != nil {
		return 0, fmt.Errorf("read flags of team %d after %q: %w", teamID, afterKey, err)
	}
	defer rows.Close()
	var (
		n       int
		r       = FlagRow{TeamID: teamID}
		version *int32
		id      int32
	)
	for rows.Next() {
		r.Filters = r.Filters[:0]
		if err := rows.Scan(&id, &r.Key, &r.Name, &r.Filters, &r.Active, &r.EnsureExperienceContinuity,
			&r.HasEncryptedPayloads, &r.IsRemoteConfiguration, &version, &r.EvaluationRuntime); err != nil {
			return n, fmt.Errorf("read flags of team %d: %w", teamID, err)
		}
		r.ID = int64(id)
		r.Tags = tags[r.ID]
		r.Version = nil
		if version != nil {
			v := int64(*version)
			r.Version = &v
		}
		n++
		if err := fn(&r); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read flags of team %d: %w", teamID, err)
	}
	return n, nil
}

// pageTags reads the evaluation tags of the flags on one keyset page with one query,
// sorted per flag. A per-flag subquery in the flag query cost a plan node per row (and
// let the planner drive the join from the tag table); here the page's ids probe the
// tag index once. Flags without tags are absent from the map. A flag edited between
// this query and the flag query gets the tags of a moment earlier; the edit itself
// triggers the next build.
func (s *PGSource) pageTags(ctx context.Context, teamID int64, afterKey string, limit int) (map[int64][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT et.feature_flag_id, t.name
		FROM posthog_featureflagevaluationtag et JOIN posthog_tag t ON t.id = et.tag_id
		WHERE et.feature_flag_id = ANY(ARRAY(SELECT f.id FROM posthog_featureflag f
			WHERE f.team_id = $1 AND NOT f.deleted AND f.key > $2 ORDER BY f.key LIMIT $3))`,
		pgx.QueryExecModeExec, teamID, afterKey, limit)
	if err != nil {
		return nil, fmt.Errorf("read evaluation tags of team %d after %q: %w", teamID, afterKey, err)
	}
	defer rows.Close()
	var (
		tags map[int64][]string
		id   int32
		name string
	)
	for rows.Next() {
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("read evaluation tags of team %d: %w", teamID, err)
		}
		if tags == nil {
			tags = map[int64][]string{}
		}
		tags[int64(id)] = append(tags[int64(id)], name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read evaluation tags of team %d: %w", teamID, err)
	}
	for _, t := range tags {
		slices.Sort(t)
	}
	return tags, nil
}

// Cohorts streams the requested cohorts of the team.
func (s *PGSource) Cohorts(ctx context.Context, teamID int64, ids []int64, fn func(*CohortRow) error) error {
	rows, err := s.pool.Query(ctx, `SELECT id, name, description, deleted, is_static, filters, query, groups,
			version, pending_version, count, is_calculating, errors_calculating, created_by_id, cohort_type
		FROM posthog_cohort WHERE team_id = $1 AND id = ANY($2) ORDER BY id`, teamID, ids)
	if err != nil {
		return fmt.Errorf("read cohorts of team %d: %w", teamID, err)
	}
	defer rows.Close()
	var (
		c                       = CohortRow{TeamID: teamID}
		version, pending, count *int32
		createdBy               *int32
		errorsCalculating       int32
	)
	for rows.Next() {
		c.Filters, c.Query, c.Groups = c.Filters[:0], c.Query[:0], c.Groups[:0]
		if err := rows.Scan(&c.ID, &c.Name, &c.Description, &c.Deleted, &c.IsStatic, &c.Filters, &c.Query, &c.Groups,
			&version, &pending, &count, &c.IsCalculating, &errorsCalculating, &createdBy, &c.CohortType); err != nil {
			return fmt.Errorf("read cohorts of team %d: %w", teamID, err)
		}
		c.Version, c.PendingVersion, c.Count, c.CreatedByID = widen(version), widen(pending), widen(count), widen(createdBy)
		c.ErrorsCalculating = int64(errorsCalculating)
		if err := fn(&c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read cohorts of team %d: %w", teamID, err)
	}
	return nil
}

func widen(v *int32) *int64 {
	if v == nil {
		return nil
	}
	w := int64(*v)
	return &w
}

// GroupTypes reads the project's group type mappings.
func (s *PGSource) GroupTypes(ctx context.Context, projectID int64) ([]GroupType, error) {
	rows, err := s.pool.Query(ctx, `SELECT group_type_index, group_type FROM posthog_grouptypemapping
		WHERE project_id = $1 ORDER BY group_type_index`, projectID)
	if err != nil {
		return nil, fmt.Errorf("read group types of project %d: %w", projectID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GroupType, error) {
		var g GroupType
		var idx int32
		err := r.Scan(&idx, &g.Type)
		g.Index = int(idx)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("read group types of project %d: %w", projectID, err)
	}
	return out, nil
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
