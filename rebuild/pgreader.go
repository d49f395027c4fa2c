package rebuild

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgReader is one build's reads: a REPEATABLE READ, read-only transaction on one
// connection, so that the first pass, the id streams and the streaming pass (and a
// restart) all see the same rows.
type pgReader struct {
	conn *pgxpool.Conn
	tx   pgx.Tx
	team TeamInfo
	opts ReadOptions
	// Tables and columns newer PostHog versions added; absent ones read as empty/NULL.
	hasSurvey, hasExperiment        bool
	surveySampling                  bool
	bucketing, rollout              bool
	backfillPersons, backfillEvents bool
}

var _ TeamReader = (*pgReader)(nil)

// Open starts a snapshot of the team's data.
func (s *PGSource) Open(ctx context.Context, teamID int64, opts ReadOptions) (TeamReader, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("open flag database: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Release()
		return nil, fmt.Errorf("begin snapshot of team %d: %w", teamID, err)
	}
	r := &pgReader{conn: conn, tx: tx, opts: opts}
	if r.team, err = readTeam(ctx, tx, teamID); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.probe(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// probe finds the optional tables and columns.
func (r *pgReader) probe(ctx context.Context) error {
	rows, err := r.tx.Query(ctx, `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND (table_name, column_name) IN (
			('posthog_survey', 'targeting_flag_id'), ('posthog_survey', 'internal_response_sampling_flag_id'),
			('posthog_experiment', 'feature_flag_id'), ('posthog_featureflag', 'bucketing_identifier'),
			('posthog_featureflag', 'rollout_percentage'), ('posthog_cohort', 'last_backfill_person_properties_at'),
			('posthog_cohort', 'last_backfill_events_at'))`)
	if err != nil {
		return fmt.Errorf("inspect flag schema: %w", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return fmt.Errorf("inspect flag schema: %w", err)
		}
		have[s] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inspect flag schema: %w", err)
	}
	r.hasSurvey = have["posthog_survey.targeting_flag_id"]
	r.surveySampling = have["posthog_survey.internal_response_sampling_flag_id"]
	r.hasExperiment = have["posthog_experiment.feature_flag_id"]
	r.bucketing = have["posthog_featureflag.bucketing_identifier"]
	r.rollout = have["posthog_featureflag.rollout_percentage"]
	r.backfillPersons = have["posthog_cohort.last_backfill_person_properties_at"]
	r.backfillEvents = have["posthog_cohort.last_backfill_events_at"]
	return nil
}

func (r *pgReader) Team() TeamInfo { return r.team }

func (r *pgReader) Close() {
	if r.tx != nil {
		_ = r.tx.Rollback(context.Background())
		r.tx = nil
	}
	if r.conn != nil {
		r.conn.Release()
		r.conn = nil
	}
}

func (r *pgReader) GroupTypes(ctx context.Context) ([]GroupType, error) {
	rows, err := r.tx.Query(ctx, `SELECT group_type_index, group_type FROM posthog_grouptypemapping
		WHERE project_id = $1 ORDER BY group_type_index`, r.team.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("read group types of project %d: %w", r.team.ProjectID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (GroupType, error) {
		var g GroupType
		var idx int32
		err := row.Scan(&idx, &g.Type)
		g.Index = int(idx)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("read group types of project %d: %w", r.team.ProjectID, err)
	}
	return out, nil
}

func (r *pgReader) SurveyFlagIDs(ctx context.Context) ([]int64, error) {
	if !r.hasSurvey {
		return nil, nil
	}
	sampling := "NULL::integer"
	if r.surveySampling {
		sampling = "internal_response_sampling_flag_id"
	}
	rows, err := r.tx.Query(ctx, `SELECT DISTINCT id FROM (
			SELECT unnest(ARRAY[targeting_flag_id, internal_targeting_flag_id, `+sampling+`]) AS id
			FROM posthog_survey WHERE team_id = $1) s WHERE id IS NOT NULL`, r.team.ID)
	if err != nil {
		return nil, fmt.Errorf("read survey flags of team %d: %w", r.team.ID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("read survey flags of team %d: %w", r.team.ID, err)
	}
	return ids, nil
}

// refsPath selects a flag's condition properties that name a flag or a cohort.
const refsPath = `lax $.groups[*].properties[*] ? (@.type == "flag" || @.type == "cohort")`

// effectiveFilters is get_filters() in SQL when legacy rows are up-converted.
func (r *pgReader) effectiveFilters() string {
	if !r.opts.UpConvertLegacy {
		return "f.filters"
	}
	return `CASE WHEN jsonb_typeof(f.filters) = 'object' AND NOT f.filters ? 'groups'
		THEN jsonb_build_object('groups', jsonb_build_array(jsonb_build_object('properties', COALESCE(f.filters->'properties', '[]'::jsonb))))
		ELSE f.filters END`
}

// References has the database extract each flag's flag and cohort properties: the
// filters themselves never leave the server in this pass.
func (r *pgReader) References(ctx context.Context, fn func(*RefRow) error) error {
	rows, err := r.tx.Query(ctx, `SELECT id, key, active, enc, remote, refs FROM (
			SELECT f.id, f.key, f.active, COALESCE(f.has_encrypted_payloads, false) AS enc,
				COALESCE(f.is_remote_configuration, false) AS remote,
				jsonb_path_query_array(`+r.effectiveFilters()+`, '`+refsPath+`', '{}', true) AS refs
			FROM posthog_featureflag f WHERE f.team_id = $1 AND NOT f.deleted) s
		WHERE refs <> '[]'::jsonb`, r.team.ID)
	if err != nil {
		return fmt.Errorf("read flag references of team %d: %w", r.team.ID, err)
	}
	defer rows.Close()
	var row RefRow
	var id int32
	for rows.Next() {
		row.Refs = row.Refs[:0]
		if err := rows.Scan(&id, &row.Key, &row.Active, &row.Encrypted, &row.Remote, &row.Refs); err != nil {
			return fmt.Errorf("read flag references of team %d: %w", r.team.ID, err)
		}
		row.ID = int64(id)
		if err := fn(&row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read flag references of team %d: %w", r.team.ID, err)
	}
	return nil
}

func (r *pgReader) FlagHeads(ctx context.Context, ids []int64, keys []string, fn func(*FlagHead) error) error {
	rows, err := r.tx.Query(ctx, `SELECT id, key, active, COALESCE(has_encrypted_payloads, false), COALESCE(is_remote_configuration, false)
		FROM posthog_featureflag WHERE team_id = $1 AND NOT deleted AND (id = ANY($2::bigint[]) OR key = ANY($3::text[]))`,
		r.team.ID, ids, keys)
	if err != nil {
		return fmt.Errorf("read dependency flags of team %d: %w", r.team.ID, err)
	}
	defer rows.Close()
	var h FlagHead
	var id int32
	for rows.Next() {
		if err := rows.Scan(&id, &h.Key, &h.Active, &h.Encrypted, &h.Remote); err != nil {
			return fmt.Errorf("read dependency flags of team %d: %w", r.team.ID, err)
		}
		h.ID = int64(id)
		if err := fn(&h); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read dependency flags of team %d: %w", r.team.ID, err)
	}
	return nil
}

func (r *pgReader) FlagIDs(ctx context.Context, f IDFilter, byText bool, fn func(int64) error) error {
	var where strings.Builder
	if f.ActiveOnly {
		where.WriteString(" AND active")
	}
	if f.ExcludeEncrypted {
		where.WriteString(" AND has_encrypted_payloads IS NOT TRUE")
	}
	order := "id"
	if byText {
		order = `id::text COLLATE "C"`
	}
	rows, err := r.tx.Query(ctx, `SELECT id FROM posthog_featureflag WHERE team_id = $1 AND NOT deleted`+where.String()+` ORDER BY `+order, r.team.ID)
	if err != nil {
		return fmt.Errorf("read flag ids of team %d: %w", r.team.ID, err)
	}
	defer rows.Close()
	var id int32
	for rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("read flag ids of team %d: %w", r.team.ID, err)
		}
		if err := fn(int64(id)); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read flag ids of team %d: %w", r.team.ID, err)
	}
	return nil
}

// pageExtras are the evaluation tags and experiments of one page's flags.
type pageExtras struct {
	tags       map[int64][]string
	experiment map[int64]bool
}

// extras reads the tags and live experiments of the flags on one keyset page with one
// query: a per-flag subquery in the flag query costs a plan node per row. Tags come
// in the database's sort order, as array_agg(DISTINCT name) would give them.
func (r *pgReader) extras(ctx context.Context, afterKey string, limit int) (pageExtras, error) {
	var x pageExtras
	exp := ""
	if r.hasExperiment {
		exp = ` UNION ALL SELECT e.feature_flag_id, NULL FROM posthog_experiment e
			WHERE e.feature_flag_id IN (SELECT id FROM page) AND NOT e.deleted`
	}
	rows, err := r.tx.Query(ctx, `WITH page AS (SELECT f.id FROM posthog_featureflag f
			WHERE f.team_id = $1 AND NOT f.deleted AND f.key > $2 ORDER BY f.key LIMIT $3)
		SELECT et.feature_flag_id, t.name FROM posthog_featureflagevaluationtag et JOIN posthog_tag t ON t.id = et.tag_id
		WHERE et.feature_flag_id IN (SELECT id FROM page)`+exp+`
		ORDER BY 1, 2`, pgx.QueryExecModeExec, r.team.ID, afterKey, limit)
	if err != nil {
		return x, fmt.Errorf("read evaluation tags of team %d after %q: %w", r.team.ID, afterKey, err)
	}
	defer rows.Close()
	var (
		id   int32
		name *string
	)
	for rows.Next() {
		if err := rows.Scan(&id, &name); err != nil {
			return x, fmt.Errorf("read evaluation tags of team %d: %w", r.team.ID, err)
		}
		if name == nil {
			if x.experiment == nil {
				x.experiment = map[int64]bool{}
			}
			x.experiment[int64(id)] = true
			continue
		}
		if x.tags == nil {
			x.tags = map[int64][]string{}
		}
		t := x.tags[int64(id)]
		if len(t) == 0 || t[len(t)-1] != *name {
			x.tags[int64(id)] = append(t, *name)
		}
	}
	if err := rows.Err(); err != nil {
		return x, fmt.Errorf("read evaluation tags of team %d: %w", r.team.ID, err)
	}
	return x, nil
}

// Flags streams one keyset page of the team's non-deleted flags; rows go to fn as they
// arrive, so a page never sits in memory whole.
func (r *pgReader) Flags(ctx context.Context, afterKey string, limit int, fn func(*FlagRow) error) (int, error) {
	x, err := r.extras(ctx, afterKey, limit)
	if err != nil {
		return 0, err
	}
	bucketing, rollout := "NULL::text", "NULL::integer"
	if r.bucketing {
		bucketing = "f.bucketing_identifier"
	}
	if r.rollout {
		rollout = "f.rollout_percentage"
	}
	// QueryExecModeExec plans every page with its actual keys: a cached generic plan for
	// "team_id = $1 AND key > $2" can turn each page into a scan of the whole team.
	rows, err := r.tx.Query(ctx, `SELECT f.id, f.key, f.name, f.filters, f.active, f.ensure_experience_continuity,
			f.has_encrypted_payloads, f.is_remote_configuration, f.version, f.evaluation_runtime, `+bucketing+`, `+rollout+`
		FROM posthog_featureflag f
		WHERE f.team_id = $1 AND NOT f.deleted AND f.key > $2
		ORDER BY f.key LIMIT $3`, pgx.QueryExecModeExec, r.team.ID, afterKey, limit)
	if err != nil {
		return 0, fmt.Errorf("read flags of team %d after %q: %w", r.team.ID, afterKey, err)
	}
	defer rows.Close()
	var (
		n                int
		row              = FlagRow{TeamID: r.team.ID}
		id               int32
		version, rollPct *int32
	)
	for rows.Next() {
		row.Filters = row.Filters[:0]
		if err := rows.Scan(&id, &row.Key, &row.Name, &row.Filters, &row.Active, &row.EnsureExperienceContinuity,
			&row.HasEncryptedPayloads, &row.IsRemoteConfiguration, &version, &row.EvaluationRuntime,
			&row.BucketingIdentifier, &rollPct); err != nil {
			return n, fmt.Errorf("read flags of team %d: %w", r.team.ID, err)
		}
		row.ID = int64(id)
		row.Version, row.RolloutPercentage = widen(version), widen(rollPct)
		row.Tags = x.tags[row.ID]
		row.HasExperiment = x.experiment[row.ID]
		n++
		if err := fn(&row); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read flags of team %d: %w", r.team.ID, err)
	}
	return n, nil
}

func widen(v *int32) *int64 {
	if v == nil {
		return nil
	}
	w := int64(*v)
	return &w
}

func (r *pgReader) Cohorts(ctx context.Context, ids []int64, project bool, fn func(*CohortRow) error) error {
	scope := "c.team_id = $2"
	arg := r.team.ID
	if project {
		scope = "c.team_id IN (SELECT t.id FROM posthog_team t WHERE t.project_id = $2)"
		arg = r.team.ProjectID
	}
	persons, events := "NULL::timestamptz", "NULL::timestamptz"
	if r.backfillPersons {
		persons = "c.last_backfill_person_properties_at"
	}
	if r.backfillEvents {
		events = "c.last_backfill_events_at"
	}
	rows, err := r.tx.Query(ctx, `SELECT c.id, c.team_id, c.name, c.description, c.deleted, c.is_static, c.filters, c.query, c.groups,
			c.version, c.pending_version, c.count, c.is_calculating, c.errors_calculating, c.created_by_id, c.cohort_type, `+persons+`, `+events+`
		FROM posthog_cohort c WHERE c.id = ANY($1::bigint[]) AND NOT c.deleted AND `+scope+` ORDER BY c.id`, ids, arg)
	if err != nil {
		return fmt.Errorf("read cohorts of team %d: %w", r.team.ID, err)
	}
	defer rows.Close()
	var (
		c                                  CohortRow
		id, team, errorsCalc               int32
		version, pending, count, createdBy *int32
	)
	for rows.Next() {
		c.Filters, c.Query, c.Groups = c.Filters[:0], c.Query[:0], c.Groups[:0]
		if err := rows.Scan(&id, &team, &c.Name, &c.Description, &c.Deleted, &c.IsStatic, &c.Filters, &c.Query, &c.Groups,
			&version, &pending, &count, &c.IsCalculating, &errorsCalc, &createdBy, &c.CohortType,
			&c.LastBackfillPersonPropertiesAt, &c.LastBackfillEventsAt); err != nil {
			return fmt.Errorf("read cohorts of team %d: %w", r.team.ID, err)
		}
		c.ID, c.TeamID, c.ErrorsCalculating = int64(id), int64(team), int64(errorsCalc)
		c.Version, c.PendingVersion, c.Count, c.CreatedByID = widen(version), widen(pending), widen(count), widen(createdBy)
		if err := fn(&c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read cohorts of team %d: %w", r.team.ID, err)
	}
	return nil
}
