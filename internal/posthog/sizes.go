package posthog

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Payload estimate constants. The serializer writes, besides filters, key and name, about
// a dozen small fields per flag (ids, booleans, version, runtime, tag names) and JSON
// punctuation; ~200 bytes matches a serialized PostHog flag with empty filters.
const (
	FlagOverheadBytes      = 200
	groupTypeOverheadBytes = 10
	payloadFrameBytes      = 64
	// keyNameEstimateBytes stands in for a flag's key and name where only counts are
	// read (CountTeam): together with FlagOverheadBytes it is what one flag adds to a
	// payload besides its filters.
	keyNameEstimateBytes = 60
)

// TeamSizes measures teams in a PostHog flag database. Each call runs its queries in one
// read-only snapshot under a statement timeout, so one slow chunk fails alone. It is the
// team-size collector's source.
type TeamSizes struct {
	pool    *pgxpool.Pool
	timeout time.Duration
}

// NewTeamSizes returns a measurement over pool; timeout bounds every statement (0: the
// pool's own statement_timeout).
func NewTeamSizes(pool *pgxpool.Pool, timeout time.Duration) *TeamSizes {
	return &TeamSizes{pool: pool, timeout: timeout}
}

// TeamIDBounds returns the lowest and highest team id; ok is false with no teams.
func (p *TeamSizes) TeamIDBounds(ctx context.Context) (lo, hi int64, ok bool, err error) {
	var l, h *int64
	if err := p.pool.QueryRow(ctx, `SELECT min(id), max(id) FROM posthog_team`).Scan(&l, &h); err != nil {
		return 0, 0, false, fmt.Errorf("team id bounds: %w", err)
	}
	if l == nil || h == nil {
		return 0, 0, false, nil
	}
	return *l, *h, true, nil
}

// ChangedSince lists the teams with a flag or cohort created or updated at or after
// since. Without an index on updated_at this scans the flag table; at 10M flags that is
// a few seconds, well inside an incremental pass's budget.
func (p *TeamSizes) ChangedSince(ctx context.Context, since time.Time) ([]int64, error) {
	var ids []int64
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT team_id FROM posthog_featureflag WHERE updated_at >= $1 OR created_at >= $1
			UNION
			SELECT team_id FROM posthog_cohort WHERE created_at >= $1`, since)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("teams changed since %s: %w", since.Format(time.RFC3339), err)
	}
	slices.Sort(ids)
	return ids, nil
}

// MeasureRange measures every team with lo <= id < hi that has flag data.
func (p *TeamSizes) MeasureRange(ctx context.Context, lo, hi int64) ([]snapshot.TeamSize, error) {
	out, err := p.measure(ctx, teamRange(lo, hi))
	if err != nil {
		return nil, fmt.Errorf("measure teams %d..%d: %w", lo, hi-1, err)
	}
	return out, nil
}

// MeasureTeams measures the given teams; teams without flag data are left out.
func (p *TeamSizes) MeasureTeams(ctx context.Context, ids []int64) ([]snapshot.TeamSize, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := p.measure(ctx, teamList(ids))
	if err != nil {
		return nil, fmt.Errorf("measure %d teams: %w", len(ids), err)
	}
	return out, nil
}

func (p *TeamSizes) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if p.timeout > 0 {
			if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = "+strconv.FormatInt(p.timeout.Milliseconds(), 10)); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// teamSet selects the teams one measurement covers: an id range or a list. The values
// travel as query parameters; only the column a predicate applies to is spliced in, and
// that is always one of this file's constants.
type teamSet struct {
	ids    []int64
	lo, hi int64
	isList bool
}

func teamRange(lo, hi int64) teamSet { return teamSet{lo: lo, hi: hi} }
func teamList(ids []int64) teamSet   { return teamSet{ids: ids, isList: true} }

// on returns the predicate selecting the set's teams by col.
func (s teamSet) on(col string) string {
	if s.isList {
		return col + " = ANY($1)"
	}
	return col + " >= $1 AND " + col + " < $2"
}

// args returns the parameters every predicate of on refers to.
func (s teamSet) args() []any {
	if s.isList {
		return []any{s.ids}
	}
	return []any{s.lo, s.hi}
}

// cohortPath finds every cohort id a filters document depends on: properties of type
// "cohort" anywhere in it. Strict mode skips non-objects instead of failing.
const cohortPath = `'strict $.** ? (@.type == "cohort").value'`

// measurement is what one snapshot's three queries gather before they are combined.
type measurement struct {
	byTeam map[int64]*snapshot.TeamSize
	// direct lists the cohort ids each team's flags reference.
	direct map[int64][]int64
	// cohorts by team: only a team's own cohorts count, a reference elsewhere is missing.
	cohorts map[int64]map[int64]*cohort
}

// measure runs the three sizing queries for the teams in set in one snapshot and
// combines them into one TeamSize per team with flag data.
func (p *TeamSizes) measure(ctx context.Context, set teamSet) ([]snapshot.TeamSize, error) {
	now := time.Now()
	m := measurement{byTeam: map[int64]*snapshot.TeamSize{}, direct: map[int64][]int64{}, cohorts: map[int64]map[int64]*cohort{}}
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		if err := m.readFlagSizes(ctx, tx, set); err != nil {
			return err
		}
		if err := m.readCohortRefs(ctx, tx, set); err != nil {
			return err
		}
		return m.readCohorts(ctx, tx, set)
	})
	if err != nil {
		return nil, err
	}
	return m.sizes(now), nil
}

var flagSizesSQL = `
	SELECT t.id, t.project_id,
	       coalesce(f.flags, 0), coalesce(f.active, 0), coalesce(f.deleted, 0),
	       coalesce(f.filters_bytes, 0), coalesce(f.largest, 0),
	       coalesce(f.flags_payload, 0), coalesce(f.defs_payload, 0),
	       coalesce(f.null_filters, 0), coalesce(f.non_object, 0), f.updated,
	       coalesce(g.n, 0), coalesce(g.bytes, 0)
	FROM posthog_team t
	LEFT JOIN (
	    SELECT team_id,
	           count(*) AS flags,
	           count(*) FILTER (WHERE active AND NOT deleted) AS active,
	           count(*) FILTER (WHERE deleted) AS deleted,
	           sum(octet_length(filters::text)) FILTER (WHERE NOT deleted) AS filters_bytes,
	           max(octet_length(filters::text)) FILTER (WHERE NOT deleted) AS largest,
	           sum(coalesce(octet_length(filters::text), 2) + octet_length(key) + octet_length(name) + ` + strconv.Itoa(FlagOverheadBytes) + `)
	               FILTER (WHERE active AND NOT deleted) AS flags_payload,
	           sum(coalesce(octet_length(filters::text), 2) + octet_length(key) + octet_length(name) + ` + strconv.Itoa(FlagOverheadBytes) + `)
	               FILTER (WHERE NOT deleted AND NOT (coalesce(is_remote_configuration, false) AND coalesce(has_encrypted_payloads, false))) AS defs_payload,
	           count(*) FILTER (WHERE filters IS NULL AND NOT deleted) AS null_filters,
	           count(*) FILTER (WHERE jsonb_typeof(filters) <> 'object' AND NOT deleted) AS non_object,
	           max(greatest(created_at, updated_at)) AS updated
	    FROM posthog_featureflag WHERE %[1]s
	    GROUP BY team_id
	) f ON f.team_id = t.id
	LEFT JOIN (
	    SELECT team_id, count(*) AS n, sum(octet_length(group_type) + ` + strconv.Itoa(groupTypeOverheadBytes) + `) AS bytes
	    FROM posthog_grouptypemapping WHERE %[1]s
	    GROUP BY team_id
	) g ON g.team_id = t.id
	WHERE %[2]s`

// readFlagSizes reads every selected team with its flag and group-type sizes.
func (m *measurement) readFlagSizes(ctx context.Context, tx pgx.Tx, set teamSet) error {
	rows, err := tx.Query(ctx, fmt.Sprintf(flagSizesSQL, set.on("team_id"), set.on("t.id")), set.args()...)
	if err != nil {
		return fmt.Errorf("flag sizes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ts snapshot.TeamSize
		var nullFilters, nonObject, groupBytes int64
		var updated *time.Time
		if err := rows.Scan(&ts.TeamID, &ts.ProjectID, &ts.Flags, &ts.ActiveFlags, &ts.DeletedFlags,
			&ts.FiltersBytes, &ts.LargestFilterBytes, &ts.FlagsPayloadBytes, &ts.DefinitionsPayloadBytes,
			&nullFilters, &nonObject, &updated, &ts.GroupTypes, &groupBytes); err != nil {
			return fmt.Errorf("scan flag sizes: %w", err)
		}
		if updated != nil {
			ts.UpdatedAt = *updated
		}
		ts.DefinitionsPayloadBytes += groupBytes
		if nullFilters > 0 {
			ts.BadRows += nullFilters
			ts.BadReasons = append(ts.BadReasons, BadNullFilters)
		}
		if nonObject > 0 {
			ts.BadRows += nonObject
			ts.BadReasons = append(ts.BadReasons, BadNonObjectFilters)
		}
		m.byTeam[ts.TeamID] = &ts
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("flag sizes: %w", err)
	}
	return nil
}

// readCohortRefs reads the cohort ids each team's live flags reference; a reference
// that is not an id is bad data of its team.
func (m *measurement) readCohortRefs(ctx context.Context, tx pgx.Tx, set teamSet) error {
	rows, err := tx.Query(ctx, `
		SELECT DISTINCT f.team_id, v #>> '{}'
		FROM posthog_featureflag f, jsonb_path_query(f.filters, `+cohortPath+`) v
		WHERE `+set.on("f.team_id")+` AND NOT f.deleted AND jsonb_typeof(f.filters) = 'object'`, set.args()...)
	if err != nil {
		return fmt.Errorf("cohort references: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var team int64
		var ref string
		if err := rows.Scan(&team, &ref); err != nil {
			return fmt.Errorf("scan cohort reference: %w", err)
		}
		if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
			m.direct[team] = append(m.direct[team], id)
		} else if ts := m.byTeam[team]; ts != nil {
			ts.BadRows++
			ts.BadReasons = appendOnce(ts.BadReasons, BadCohortReference)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cohort references: %w", err)
	}
	return nil
}

// readCohorts reads the selected teams' cohorts with the cohorts each depends on.
func (m *measurement) readCohorts(ctx context.Context, tx pgx.Tx, set teamSet) error {
	rows, err := tx.Query(ctx, `
		SELECT c.id, c.team_id, c.deleted, c.is_static,
		       coalesce(octet_length(c.filters::text), 0), c.created_at,
		       CASE WHEN jsonb_typeof(c.filters) = 'object'
		            THEN ARRAY(SELECT v #>> '{}' FROM jsonb_path_query(c.filters, `+cohortPath+`) v)
		            ELSE '{}'::text[] END
		FROM posthog_cohort c WHERE `+set.on("c.team_id"), set.args()...)
	if err != nil {
		return fmt.Errorf("cohorts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c cohort
		var created *time.Time
		var refs []string
		if err := rows.Scan(&c.id, &c.team, &c.deleted, &c.static, &c.bytes, &created, &refs); err != nil {
			return fmt.Errorf("scan cohort: %w", err)
		}
		for _, r := range refs {
			if id, err := strconv.ParseInt(r, 10, 64); err == nil {
				c.refs = append(c.refs, id)
			}
		}
		if m.cohorts[c.team] == nil {
			m.cohorts[c.team] = map[int64]*cohort{}
		}
		m.cohorts[c.team][c.id] = &c
		if ts := m.byTeam[c.team]; ts != nil && created != nil && created.After(ts.UpdatedAt) {
			ts.UpdatedAt = *created
		}
	}
	return rows.Err()
}

// sizes combines the three reads: the cohorts each team's payload pulls in, and their
// bad data. Teams without flag data are left out: nothing to cache, nothing to watch.
func (m *measurement) sizes(now time.Time) []snapshot.TeamSize {
	out := make([]snapshot.TeamSize, 0, len(m.byTeam))
	for id, ts := range m.byTeam {
		if ts.Flags == 0 && len(m.cohorts[id]) == 0 {
			continue
		}
		use := closeCohorts(m.direct[id], m.cohorts[id])
		ts.Cohorts, ts.CohortBytes = use.count, use.bytes
		ts.FlagsPayloadBytes += use.bytes + payloadFrameBytes
		ts.DefinitionsPayloadBytes += use.bytes + payloadFrameBytes
		if use.cycles > 0 {
			ts.BadRows += use.cycles
			ts.BadReasons = appendOnce(ts.BadReasons, BadCohortCycle)
		}
		if use.missing > 0 {
			ts.BadRows += use.missing
			ts.BadReasons = appendOnce(ts.BadReasons, BadMissingCohort)
		}
		ts.MeasuredAt = now
		out = append(out, *ts)
	}
	slices.SortFunc(out, func(a, b snapshot.TeamSize) int { return int(a.TeamID - b.TeamID) })
	return out
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
