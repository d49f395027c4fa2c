package rebuild

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/posthog"
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
	// extras are the tags and experiment flags, read once per snapshot; nil after
	// extrasRead when they did not fit their bitmaps.
	extras     *flagExtras
	extrasRead bool
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
	// The flags' change times come with the first pass (References).
	if r.team, err = posthog.ReadTeamButFlagChanges(ctx, tx, teamID); err != nil {
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
	rows, err := r.tx.Query(ctx, posthog.OptionalColumnsSQL)
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
	rows, err := r.tx.Query(ctx, posthog.GroupTypesSQL, r.team.ProjectID)
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
	rows, err := r.tx.Query(ctx, posthog.SurveyFlagIDsSQL(r.surveySampling), r.team.ID)
	if err != nil {
		return nil, fmt.Errorf("read survey flags of team %d: %w", r.team.ID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("read survey flags of team %d: %w", r.team.ID, err)
	}
	return ids, nil
}

// References has the database extract each flag's flag and cohort properties: the
// filters themselves never leave the server in this pass. The evaluation tags come
// along from the same scan of the team's flags, for flagExtras, so the streaming pass
// needs no join of its own for them.
func (r *pgReader) References(ctx context.Context, fn func(*RefRow) error) error {
	c := newExtrasCollector()
	if err := r.references(ctx, c, fn); err != nil {
		return err
	}
	x, err := r.completeFlagExtras(ctx, c)
	if err != nil {
		return err
	}
	r.extras, r.extrasRead = x, true
	return nil
}

func (r *pgReader) references(ctx context.Context, c *extrasCollector, fn func(*RefRow) error) error {
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
	// The key comes only for flags with flag dependencies, and the change time in binary: printing a timestamp per flag as text would cost
	// the server more than the rest of the row. (Describe-then-execute honours per-column
	// result formats, plain exec mode returns text only; the statement is unnamed, so it
	// is still planned for this team's id.)
	formats := pgx.QueryResultFormats{pgx.TextFormatCode, pgx.TextFormatCode, pgx.TextFormatCode, pgx.TextFormatCode,
		pgx.TextFormatCode, pgx.TextFormatCode, pgx.TextFormatCode, pgx.BinaryFormatCode, pgx.TextFormatCode}
	args := []any{r.team.ID}
	if since := r.opts.RefsChangedAfter; !since.IsZero() {
		args = append(args, since)
	}
	rows, err := r.tx.Query(ctx, posthog.FlagReferencesSQL(r.opts.UpConvertLegacy, len(args) > 1),
		append([]any{pgx.QueryExecModeDescribeExec, formats}, args...)...)
	if err != nil {
		return fmt.Errorf("read flag references of team %d: %w", r.team.ID, err)
	}
	defer rows.Close()
	// A flag with n tags comes n times, not necessarily in a row (parallel workers
	// interleave their rows): reported holds the tagged flags fn has had. It is a
	// subset of the ids the first pass's id bitmap holds, so it is at most that size
	// (about 2 bytes per id when ids are sparse, a fraction of a bit when dense), and
	// it is gone when the pass ends.
	reported := roaring64.New()
	var row RefRow
	for rows.Next() {
		v := rows.RawValues()
		id, err := textInt(v[0])
		if err != nil {
			return fmt.Errorf("read flag references of team %d: %w", r.team.ID, err)
		}
		if v[8] != nil {
			c.tag(id, v[8])
			if !reported.CheckedAdd(uint64(id)) {
				continue
			}
		}
		row.ID, row.Key, row.Active, row.Encrypted, row.Remote, row.Refs = id, string(v[1]), textBool(v[2]), textBool(v[3]), textBool(v[4]), v[5]
		row.Deleted = textBool(v[6])
		if row.Changed, err = binaryTimestamptz(v[7]); err != nil {
			return fmt.Errorf("read flag references of team %d: flag %d: %w", r.team.ID, id, err)
		}
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
	rows, err := r.tx.Query(ctx, posthog.FlagHeadsSQL, r.team.ID, ids, keys)
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
		rows, err := r.tx.Query(ctx, posthog.FlagIDsSQL(f.ActiveOnly, f.ExcludeEncrypted, byText), pgx.QueryExecModeExec, r.team.ID)
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
// (team_id, key) index, with the tags and experiments of flagExtras or, past its
// budget, of posthog.FlagsSQL's subqueries.
func (r *pgReader) Flags(ctx context.Context, fn func(*FlagRow) error) error {
	if !r.extrasRead {
		var err error
		if r.extras, err = r.readFlagExtras(ctx); err != nil {
			return err
		}
		r.extrasRead = true
	}
	x := r.extras
	rows, err := r.tx.Query(ctx, posthog.FlagsSQL(r.bucketing, r.rollout, r.hasExperiment, x != nil), pgx.QueryExecModeExec, r.team.ID)
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
		if x != nil {
			row.Tags = x.tags(id, row.Tags)
		} else if v[12] != nil {
			if err := tags.Parse(v[12]); err != nil {
				return fmt.Errorf("read evaluation tags of flag %d: %w", id, err)
			}
			tags.Root().Elems(func(t pyjson.Node) bool {
				s, _ := t.Str()
				row.Tags = append(row.Tags, s)
				return true
			})
		}
		row.HasExperiment = textBool(v[13]) || x != nil && x.experiment(id)
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

// pgEpochMicros is where Postgres' binary timestamps count from (2000-01-01 UTC), in Unix
// microseconds.
const pgEpochMicros = 946_684_800_000_000

// binaryTimestamptz decodes a timestamptz in binary form (microseconds since 2000-01-01
// UTC); NULL and ±infinity, which no change time can be, give the zero time.
func binaryTimestamptz(b []byte) (time.Time, error) {
	if b == nil {
		return time.Time{}, nil
	}
	if len(b) != 8 {
		return time.Time{}, fmt.Errorf("timestamp of %d bytes, want 8", len(b))
	}
	us := int64(binary.BigEndian.Uint64(b))
	if us > math.MaxInt64-pgEpochMicros || us == math.MinInt64 {
		return time.Time{}, nil // infinity (or beyond any date Postgres stores)
	}
	return time.UnixMicro(us + pgEpochMicros).UTC(), nil
}

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

// optString keeps the previous row's string when the bytes repeat: these columns
// (evaluation_runtime, bucketing_identifier) take a handful of values.
func optString(b []byte, dst *string) *string {
	if b == nil {
		return nil
	}
	if string(b) != *dst {
		*dst = string(b)
	}
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
	arg := r.team.ID
	if project {
		arg = r.team.ProjectID
	}
	rows, err := r.tx.Query(ctx, posthog.CohortsSQL(project, r.backfillPersons, r.backfillEvents), ids, arg)
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
