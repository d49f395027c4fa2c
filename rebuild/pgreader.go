package rebuild

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/pyjson"
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
	// Every query reads one team's rows. Through the (team_id, key) index the planner
	// never scans other teams' flags (a sequential scan evaluated the jsonpath of every
	// team's filters before testing team_id), and JIT compilation of these plain scans
	// costs more than it saves.
	if _, err := tx.Exec(ctx, `SET LOCAL jit = off; SET LOCAL enable_seqscan = off`); err != nil {
		r.Close()
		return nil, fmt.Errorf("begin snapshot of team %d: %w", teamID, err)
	}
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

// refsPath selects a flag's condition properties that name a flag or a cohort;
// flagRefsPath those that name a flag.
const (
	refsPath     = `lax $.groups[*].properties[*] ? (@.type == "flag" || @.type == "cohort")`
	flagRefsPath = `lax $.groups[*].properties[*] ? (@.type == "flag")`
)

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
	// The exists test stops at the first reference and lets the planner scan in
	// parallel (allowed for this query only): this pass reads every flag's filters on
	// the server while the client has nothing to do.
	if _, err := r.tx.Exec(ctx, `SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0`); err != nil {
		return fmt.Errorf("read flag references of team %d: %w", r.team.ID, err)
	}
	defer func() {
		if r.tx != nil {
			_, _ = r.tx.Exec(context.WithoutCancel(ctx), `RESET parallel_setup_cost; RESET parallel_tuple_cost`)
		}
	}()
	eff := r.effectiveFilters()
	// The key is only needed for flags with flag dependencies.
	rows, err := r.tx.Query(ctx, `SELECT f.id, CASE WHEN jsonb_path_exists(`+eff+`, '`+flagRefsPath+`', '{}', true) THEN f.key END,
			f.active, COALESCE(f.has_encrypted_payloads, false),
			COALESCE(f.is_remote_configuration, false), jsonb_path_query_array(`+eff+`, '`+refsPath+`', '{}', true)
		FROM posthog_featureflag f WHERE f.team_id = $1 AND NOT f.deleted
			AND jsonb_path_exists(`+eff+`, '`+refsPath+`', '{}', true)`, pgx.QueryExecModeExec, r.team.ID)
	if err != nil {
		return fmt.Errorf("read flag references of team %d: %w", r.team.ID, err)
	}
	defer rows.Close()
	var row RefRow
	for rows.Next() {
		v := rows.RawValues()
		id, err := textInt(v[0])
		if err != nil {
			return fmt.Errorf("read flag references of team %d: %w", r.team.ID, err)
		}
		row.ID, row.Key, row.Active, row.Encrypted, row.Remote, row.Refs = id, string(v[1]), textBool(v[2]), textBool(v[3]), textBool(v[4]), v[5]
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

func (r *pgReader) FlagIDs(ctx context.Context, f IDFilter, fn func(int64, bool) error) error {
	var where strings.Builder
	if f.ActiveOnly {
		where.WriteString(" AND active")
	}
	if f.ExcludeEncrypted {
		where.WriteString(" AND has_encrypted_payloads IS NOT TRUE")
	}
	// Two plain queries: the scan is cheap next to one sort that serves both orders.
	// The client only prints ids meanwhile, so the sorts may run in parallel workers.
	if _, err := r.tx.Exec(ctx, `SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0`); err != nil {
		return fmt.Errorf("read flag ids of team %d: %w", r.team.ID, err)
	}
	defer func() {
		if r.tx != nil {
			_, _ = r.tx.Exec(context.WithoutCancel(ctx), `RESET parallel_setup_cost; RESET parallel_tuple_cost`)
		}
	}()
	for _, byText := range []bool{false, true} {
		order := "id"
		if byText {
			order = `id::text COLLATE "C"`
		}
		rows, err := r.tx.Query(ctx, `SELECT id FROM posthog_featureflag WHERE team_id = $1 AND NOT deleted`+where.String()+` ORDER BY `+order,
			pgx.QueryExecModeExec, r.team.ID)
		if err != nil {
			return fmt.Errorf("read flag ids of team %d: %w", r.team.ID, err)
		}
		for rows.Next() {
			id, err := textInt(rows.RawValues()[0])
			if err == nil {
				err = fn(id, byText)
			}
			if err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read flag ids of team %d: %w", r.team.ID, err)
		}
	}
	return nil
}

// Flags streams the team's flags in one query, in key order straight from the
// (team_id, key) index. Evaluation tags (as array_agg(DISTINCT name) would give them)
// and live experiments are correlated subqueries on the flag's id: an index probe per
// flag, and the tag aggregate only for flags that have tags. (Merge joins by key had
// to read every team's flags for the tag and experiment sides.)
func (r *pgReader) Flags(ctx context.Context, fn func(*FlagRow) error) error {
	bucketingCol, rolloutCol := "NULL::text", "NULL::integer"
	if r.bucketing {
		bucketingCol = "f.bucketing_identifier"
	}
	if r.rollout {
		rolloutCol = "f.rollout_percentage"
	}
	experiment := "false"
	if r.hasExperiment {
		experiment = `EXISTS (SELECT FROM posthog_experiment e WHERE e.feature_flag_id = f.id AND NOT e.deleted)`
	}
	rows, err := r.tx.Query(ctx, `SELECT f.id, f.key, f.name, f.filters, f.active, f.ensure_experience_continuity,
			f.has_encrypted_payloads, f.is_remote_configuration, f.version, f.evaluation_runtime, `+bucketingCol+`, `+rolloutCol+`,
			CASE WHEN EXISTS (SELECT FROM posthog_featureflagevaluationtag et WHERE et.feature_flag_id = f.id)
				THEN (SELECT jsonb_agg(DISTINCT t.name ORDER BY t.name) FROM posthog_featureflagevaluationtag et
					JOIN posthog_tag t ON t.id = et.tag_id WHERE et.feature_flag_id = f.id) END,
			`+experiment+`
		FROM posthog_featureflag f
		WHERE f.team_id = $1 AND NOT f.deleted
		ORDER BY f.key`, pgx.QueryExecModeExec, r.team.ID)
	if err != nil {
		return fmt.Errorf("read flags of team %d: %w", r.team.ID, err)
	}
	defer rows.Close()
	// Raw text values decoded by hand: pgx's reflective Scan was most of the client's
	// time per row.
	var (
		row                = FlagRow{TeamID: r.team.ID}
		cont, enc, remote  bool
		version, rollPct   int64
		runtime, bucketing string
		tags               pyjson.Doc
	)
	for rows.Next() {
		v := rows.RawValues()
		id, err := textInt(v[0])
		if err != nil {
			return fmt.Errorf("read flags of team %d: id: %w", r.team.ID, err)
		}
		row.ID, row.Key, row.Name, row.Filters = id, string(v[1]), string(v[2]), v[3]
		row.Active = textBool(v[4])
		row.EnsureExperienceContinuity = optBool(v[5], &cont)
		row.HasEncryptedPayloads = optBool(v[6], &enc)
		row.IsRemoteConfiguration = optBool(v[7], &remote)
		if row.Version, err = optInt(v[8], &version); err != nil {
			return fmt.Errorf("read flags of team %d: version: %w", r.team.ID, err)
		}
		row.EvaluationRuntime = optString(v[9], &runtime)
		row.BucketingIdentifier = optString(v[10], &bucketing)
		if row.RolloutPercentage, err = optInt(v[11], &rollPct); err != nil {
			return fmt.Errorf("read flags of team %d: rollout_percentage: %w", r.team.ID, err)
		}
		row.Tags = row.Tags[:0]
		if v[12] != nil {
			if err := tags.Parse(v[12]); err != nil {
				return fmt.Errorf("read evaluation tags of flag %d: %w", id, err)
			}
			tags.Root().Elems(func(t pyjson.Node) bool {
				s, _ := t.Str()
				row.Tags = append(row.Tags, s)
				return true
			})
		}
		row.HasExperiment = textBool(v[13])
		if err := fn(&row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read flags of team %d: %w", r.team.ID, err)
	}
	return nil
}

func textInt(b []byte) (int64, error) { return strconv.ParseInt(string(b), 10, 64) }

func textBool(b []byte) bool { return len(b) > 0 && b[0] == 't' }

func optBool(b []byte, dst *bool) *bool {
	if b == nil {
		return nil
	}
	*dst = textBool(b)
	return dst
}

func optInt(b []byte, dst *int64) (*int64, error) {
	if b == nil {
		return nil, nil
	}
	v, err := textInt(b)
	*dst = v
	return dst, err
}

func optString(b []byte, dst *string) *string {
	if b == nil {
		return nil
	}
	*dst = string(b)
	return dst
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
