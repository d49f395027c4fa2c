package rebuild

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flagwarden/flagwarden/internal/pgretry"
)

// store keeps the engine's own state next to River's jobs: quarantine, failure streaks,
// the per-team run guard and follow-up mark, and recent results. It speaks the SQL
// common to Postgres and SQLite through database/sql, so the same code serves both
// drivers.
type store struct {
	db *sql.DB
	// retry repeats a statement whose connection turned out dead (a terminated
	// backend, a failover) once, so the first write after it does not fail.
	retry pgretry.Retrier
}

// exec, scanRow and query are the database/sql calls with that one retry. Every
// statement here is safe to repeat: the writes are idempotent updates, or inserts
// whose connection died before they could commit.
func (s *store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return pgretry.Value(ctx, s.retry, func() (sql.Result, error) { return s.db.ExecContext(ctx, q, args...) })
}

func (s *store) scanRow(ctx context.Context, q string, args []any, dest ...any) error {
	return s.retry.Do(ctx, func() error { return s.db.QueryRowContext(ctx, q, args...).Scan(dest...) })
}

func (s *store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return pgretry.Value(ctx, s.retry, func() (*sql.Rows, error) { return s.db.QueryContext(ctx, q, args...) })
}

// sqliteSchema is the SQLite form of migration 0003_rebuild.sql.
const sqliteSchema = `
CREATE TABLE IF NOT EXISTS flagwarden_rebuild_teams (
    team_id              INTEGER PRIMARY KEY,
    quarantined          BOOLEAN NOT NULL DEFAULT false,
    quarantine_reason    TEXT NOT NULL DEFAULT '',
    quarantine_auto      BOOLEAN NOT NULL DEFAULT false,
    quarantined_at       DATETIME,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    running_since        DATETIME,
    followup             BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS flagwarden_rebuild_results (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id     INTEGER NOT NULL,
    finished_at DATETIME NOT NULL,
    ok          BOOLEAN NOT NULL,
    result      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS flagwarden_rebuild_results_team ON flagwarden_rebuild_results (team_id, id DESC);
`

// resultsKept is how many results per team the store keeps.
const resultsKept = 50

func (s *store) ensure(ctx context.Context, team int64) error {
	_, err := s.exec(ctx, `INSERT INTO flagwarden_rebuild_teams (team_id) VALUES ($1) ON CONFLICT (team_id) DO NOTHING`, team)
	if err != nil {
		return fmt.Errorf("record team %d: %w", team, err)
	}
	return nil
}

// beginRun takes the team's run guard; false means another build of the team runs.
func (s *store) beginRun(ctx context.Context, team int64, now, staleBefore time.Time) (bool, error) {
	if err := s.ensure(ctx, team); err != nil {
		return false, err
	}
	r, err := s.exec(ctx, `UPDATE flagwarden_rebuild_teams SET running_since = $2, followup = false
		WHERE team_id = $1 AND (running_since IS NULL OR running_since < $3)`, team, now.UTC(), staleBefore.UTC())
	if err != nil {
		return false, fmt.Errorf("begin build of team %d: %w", team, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

// endRun releases the guard, updates the failure streak and says whether a request
// arrived during the run.
func (s *store) endRun(ctx context.Context, team int64, ok bool) (followup bool, failures int, err error) {
	err = s.scanRow(ctx, `UPDATE flagwarden_rebuild_teams SET running_since = NULL,
			consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END
		WHERE team_id = $1 RETURNING followup, consecutive_failures`, []any{team, ok}, &followup, &failures)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("end build of team %d: %w", team, err)
	}
	return followup, failures, nil
}

// markFollowUp records a request against a running build; false means no build of the
// team holds the guard right now.
func (s *store) markFollowUp(ctx context.Context, team int64) (bool, error) {
	r, err := s.exec(ctx, `UPDATE flagwarden_rebuild_teams SET followup = true
		WHERE team_id = $1 AND running_since IS NOT NULL`, team)
	if err != nil {
		return false, fmt.Errorf("mark follow-up of team %d: %w", team, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

// quarantine marks the team; false means it already was.
func (s *store) quarantine(ctx context.Context, team int64, reason string, auto bool, now time.Time) (bool, error) {
	if err := s.ensure(ctx, team); err != nil {
		return false, err
	}
	r, err := s.exec(ctx, `UPDATE flagwarden_rebuild_teams
		SET quarantined = true, quarantine_reason = $2, quarantine_auto = $3, quarantined_at = $4
		WHERE team_id = $1 AND NOT quarantined`, team, reason, auto, now.UTC())
	if err != nil {
		return false, fmt.Errorf("quarantine team %d: %w", team, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

// release clears the quarantine and the failure streak; false means it was not
// quarantined.
func (s *store) release(ctx context.Context, team int64) (bool, error) {
	r, err := s.exec(ctx, `UPDATE flagwarden_rebuild_teams
		SET quarantined = false, quarantine_reason = '', quarantine_auto = false, quarantined_at = NULL, consecutive_failures = 0
		WHERE team_id = $1 AND quarantined`, team)
	if err != nil {
		return false, fmt.Errorf("release team %d: %w", team, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

func (s *store) quarantined(ctx context.Context, team int64) (Quarantine, bool, error) {
	var q Quarantine
	var at sql.NullTime
	err := s.scanRow(ctx, `SELECT team_id, quarantine_reason, quarantine_auto, quarantined_at
		FROM flagwarden_rebuild_teams WHERE team_id = $1 AND quarantined`, []any{team}, &q.TeamID, &q.Reason, &q.Auto, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return q, false, nil
	}
	if err != nil {
		return q, false, fmt.Errorf("read quarantine of team %d: %w", team, err)
	}
	q.Since = at.Time.UTC()
	return q, true, nil
}

func (s *store) listQuarantined(ctx context.Context) ([]Quarantine, error) {
	rows, err := s.query(ctx, `SELECT team_id, quarantine_reason, quarantine_auto, quarantined_at
		FROM flagwarden_rebuild_teams WHERE quarantined ORDER BY team_id`)
	if err != nil {
		return nil, fmt.Errorf("list quarantined teams: %w", err)
	}
	defer rows.Close()
	out := []Quarantine{}
	for rows.Next() {
		var q Quarantine
		var at sql.NullTime
		if err := rows.Scan(&q.TeamID, &q.Reason, &q.Auto, &at); err != nil {
			return nil, fmt.Errorf("list quarantined teams: %w", err)
		}
		q.Since = at.Time.UTC()
		out = append(out, q)
	}
	return out, rows.Err()
}

func (s *store) addResult(ctx context.Context, r BuildResult) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, `INSERT INTO flagwarden_rebuild_results (team_id, finished_at, ok, result) VALUES ($1, $2, $3, $4)`,
		r.TeamID, r.FinishedAt.UTC(), r.OK, string(body)); err != nil {
		return fmt.Errorf("record build result of team %d: %w", r.TeamID, err)
	}
	_, err = s.exec(ctx, `DELETE FROM flagwarden_rebuild_results WHERE team_id = $1 AND id NOT IN
		(SELECT id FROM flagwarden_rebuild_results WHERE team_id = $1 ORDER BY id DESC LIMIT $2)`, r.TeamID, resultsKept)
	if err != nil {
		return fmt.Errorf("prune build results of team %d: %w", r.TeamID, err)
	}
	return nil
}

// results returns the newest results of one team (team > 0) or of all teams.
func (s *store) results(ctx context.Context, team int64, limit int) ([]BuildResult, error) {
	q := `SELECT result FROM flagwarden_rebuild_results WHERE team_id = $1 ORDER BY id DESC LIMIT $2`
	args := []any{team, limit}
	if team <= 0 {
		q = `SELECT result FROM flagwarden_rebuild_results ORDER BY id DESC LIMIT $1`
		args = []any{limit}
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read build results: %w", err)
	}
	defer rows.Close()
	out := []BuildResult{}
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("read build results: %w", err)
		}
		var r BuildResult
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return nil, fmt.Errorf("decode build result: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// jobCounts counts River jobs per queue and state among the unfinished ones.
func (s *store) jobCounts(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := s.query(ctx, `SELECT queue, state, count(*) FROM river_job
		WHERE kind = $1 AND state IN ('available', 'scheduled', 'retryable', 'running', 'pending') GROUP BY queue, state`, jobKind)
	if err != nil {
		return nil, fmt.Errorf("count rebuild jobs: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]int{}
	for rows.Next() {
		var q, st string
		var n int
		if err := rows.Scan(&q, &st, &n); err != nil {
			return nil, fmt.Errorf("count rebuild jobs: %w", err)
		}
		if out[q] == nil {
			out[q] = map[string]int{}
		}
		out[q][st] = n
	}
	return out, rows.Err()
}
