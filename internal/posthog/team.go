package posthog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// ErrUnknownTeam is returned for a team id that does not exist in the flag database.
var ErrUnknownTeam = errors.New("unknown team")

// Team is a team as a cache build needs it.
type Team struct {
	ID        int64
	ProjectID int64
	// Watermark is the newest change to the team's flag data (flag updated_at or
	// created_at, cohort created_at or last_calculation); it is stored with the cache so
	// that the sweep can find caches older than their data.
	Watermark time.Time
	// MinimalFlagCalledEvents and PropertyMatchingVersion are the team's
	// TeamFeatureFlagsConfig, false and 1 (legacy) without one.
	MinimalFlagCalledEvents bool
	PropertyMatchingVersion int64
}

// FlagChangedSQL is when a flag row f last changed, its part of the watermark (a soft
// delete updates it too, so deleted flags count).
const FlagChangedSQL = "GREATEST(f.updated_at, f.created_at)"

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ReadTeam reads the team, the watermark of its flag data and its flag settings.
func ReadTeam(ctx context.Context, q Querier, teamID int64) (Team, error) {
	return readTeam(ctx, q, teamID, true)
}

// ReadTeamButFlagChanges is ReadTeam with only the cohorts in the watermark: a build
// reads every flag's change time in its first pass, which costs nothing more there,
// instead of one more scan of a big team's flags before it starts.
func ReadTeamButFlagChanges(ctx context.Context, q Querier, teamID int64) (Team, error) {
	return readTeam(ctx, q, teamID, false)
}

func readTeam(ctx context.Context, q Querier, teamID int64, flagChanges bool) (Team, error) {
	ti := Team{ID: teamID, PropertyMatchingVersion: 1}
	var wm *time.Time
	flags := "NULL::timestamptz"
	if flagChanges {
		flags = "(SELECT max(" + FlagChangedSQL + ") FROM posthog_featureflag f WHERE f.team_id = t.id)"
	}
	err := q.QueryRow(ctx, `SELECT t.project_id, GREATEST(`+flags+`,
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

// CountTeam sizes one team with a single count query: flags, their filter bytes and the
// largest filter; the payload sizes are estimated from them. It is what admission uses
// for a team the team-size collector has not measured yet.
func CountTeam(ctx context.Context, q Querier, teamID int64) (snapshot.TeamSize, error) {
	ts := snapshot.TeamSize{TeamID: teamID}
	var exists bool
	err := q.QueryRow(ctx, `SELECT true, t.project_id,
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
	ts.FlagsPayloadBytes = ts.FiltersBytes + ts.Flags*(FlagOverheadBytes+keyNameEstimateBytes)
	ts.DefinitionsPayloadBytes = ts.FlagsPayloadBytes
	ts.MeasuredAt = time.Now()
	return ts, nil
}

// ChangedTeams lists at most limit teams whose flags or cohorts changed after since,
// each with its newest change, oldest change first: what the stale sweep rebuilds.
func ChangedTeams(ctx context.Context, q Querier, since time.Time, limit int) (map[int64]time.Time, error) {
	rows, err := q.Query(ctx, `SELECT team_id, max(ts) FROM (
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

// TeamsWithFlags lists every team that has (or had) a flag, in id order.
func TeamsWithFlags(ctx context.Context, q Querier) ([]int64, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT team_id::bigint FROM posthog_featureflag ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// TeamIDByName returns the id of the team called name; ok is false when there is none.
func TeamIDByName(ctx context.Context, q Querier, name string) (id int64, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT id FROM posthog_team WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("find team %q: %w", name, err)
	}
	return id, true, nil
}

// CopyFlags streams the rows a build reads of a team's flags with COPY … TO STDOUT into
// w: the benchmark's limit for how fast a build can read.
func CopyFlags(ctx context.Context, pool *pgxpool.Pool, teamID int64, w io.Writer) (int64, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	tag, err := conn.Conn().PgConn().CopyTo(ctx, w, CopyFlagsSQL(teamID))
	if err != nil {
		return 0, fmt.Errorf("copy flags of team %d: %w", teamID, err)
	}
	return tag.RowsAffected(), nil
}

// TeamIDsAfter returns up to limit team ids greater than after, ascending, with one
// keyset query on the team's primary key: the teams that have ever had a flag (a row in
// posthog_featureflag, deleted or not, one probe of the flag index per team), or with
// every set all of them.
func TeamIDsAfter(ctx context.Context, q Querier, after int64, limit int, every bool) ([]int64, error) {
	sql := `SELECT t.id::bigint FROM posthog_team t WHERE t.id > $1
		AND EXISTS (SELECT 1 FROM posthog_featureflag f WHERE f.team_id = t.id) ORDER BY t.id LIMIT $2`
	if every {
		sql = `SELECT id::bigint FROM posthog_team WHERE id > $1 ORDER BY id LIMIT $2`
	}
	rows, err := q.Query(ctx, sql, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list teams after %d: %w", after, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list teams after %d: %w", after, err)
	}
	return ids, nil
}
