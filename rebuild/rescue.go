package rebuild

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// River rescues a running job only once it is older than RescueStuckJobsAfter, which
// must exceed the longest build (BuildTimeout + 1 min): a build killed with its process
// would wait that long. The replicas' heartbeats (flagwarden_replicas.last_seen) say
// sooner which processes are gone, so their jobs are rescued within
// RescueDeadAfter plus one check, and the temporary keys their builds left are
// removed on the way.

// rescueLoop checks for jobs of dead processes now and then every interval.
func (e *Engine) rescueLoop(ctx context.Context, every time.Duration) {
	defer close(e.rescueDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := e.rescueDead(ctx); err != nil && ctx.Err() == nil {
			e.logger.WarnContext(ctx, "rescuing builds of dead processes failed", "err", err)
		} else if n > 0 {
			e.logger.WarnContext(ctx, "rescued builds of dead processes", "jobs", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deadJob is a running job whose process stopped heartbeating.
type deadJob struct {
	id, team int64
	attempt  int
	by       string
}

// rescueDead makes the running jobs of processes not seen for RescueDeadAfter
// available again (discarded when out of attempts), clears their teams' run guards,
// removes their builds' temporary keys and records the failed attempt. It returns how
// many jobs it rescued. Several replicas may run it at once: each job is claimed by
// one UPDATE.
func (e *Engine) rescueDead(ctx context.Context) (int, error) {
	after := e.opts.RescueDeadAfter.Seconds()
	var dead []deadJob
	err := e.retry.Do(ctx, func() error {
		dead = dead[:0]
		rows, err := e.store.db.QueryContext(ctx, `SELECT j.id, (j.args->>'team_id')::bigint, j.attempt, j.attempted_by[cardinality(j.attempted_by)]
			FROM river_job j
			WHERE j.kind = $1 AND j.state = 'running' AND cardinality(j.attempted_by) > 0
			  AND j.attempted_by[cardinality(j.attempted_by)] <> $2
			  AND j.attempted_at < now() - make_interval(secs => $3)
			  AND NOT EXISTS (SELECT 1 FROM flagwarden_replicas r
			      WHERE r.id = j.attempted_by[cardinality(j.attempted_by)] AND r.last_seen >= now() - make_interval(secs => $3))
			ORDER BY j.id LIMIT 1000`, jobKind, e.opts.ReplicaID, after)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d deadJob
			if err := rows.Scan(&d.id, &d.team, &d.attempt, &d.by); err != nil {
				return err
			}
			dead = append(dead, d)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("find builds of dead processes: %w", err)
	}
	rescued := 0
	for _, d := range dead {
		// The keys go first: once the job is available, a new build of the team may
		// start and register its own.
		removed, err := e.opts.Publisher.Clean(ctx, d.team)
		if err != nil {
			e.logger.WarnContext(ctx, "removing a dead build's temporary keys failed; they expire", "team", d.team, "err", err)
		}
		reason := fmt.Sprintf("the process building it (%s) stopped: rescued", d.by)
		r, err := e.store.exec(ctx, `UPDATE river_job SET
				state = (CASE WHEN attempt >= max_attempts THEN 'discarded' ELSE 'available' END)::river_job_state,
				finalized_at = CASE WHEN attempt >= max_attempts THEN now() END,
				scheduled_at = now(),
				errors = array_append(errors, jsonb_build_object('at', now(), 'attempt', attempt, 'error', $3::text, 'trace', '')),
				metadata = metadata || jsonb_build_object('flagwarden:rescued_from', $4::text)
			WHERE id = $1 AND state = 'running' AND attempt = $2`, d.id, d.attempt, reason, d.by)
		if err != nil {
			return rescued, fmt.Errorf("rescue job %d of team %d: %w", d.id, d.team, err)
		}
		if n, _ := r.RowsAffected(); n != 1 {
			continue // another replica rescued it, or it finished after all
		}
		rescued++
		// A build that takes its process down (an OOM kill) counts as a failure, so
		// that such a team is quarantined like one whose builds fail.
		var failures int
		err = e.store.scanRow(ctx, `UPDATE flagwarden_rebuild_teams SET running_since = NULL, consecutive_failures = consecutive_failures + 1
			WHERE team_id = $1 RETURNING consecutive_failures`, []any{d.team}, &failures)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			e.logger.WarnContext(ctx, "clearing a dead build's run guard failed", "team", d.team, "err", err)
		}
		if failures >= e.opts.QuarantineAfterFailures {
			why := fmt.Sprintf("%d builds in a row failed; last: %s", failures, reason)
			if err := e.quarantine(ctx, d.team, why, true); err != nil {
				e.logger.WarnContext(ctx, "auto quarantine failed", "team", d.team, "err", err)
			}
		}
		now := e.rebuild.now() // build results are on the publisher's clock
		res := BuildResult{TeamID: d.team, JobID: d.id, OK: false, Error: reason, StartedAt: now, FinishedAt: now, Reason: "rescue"}
		if err := e.store.addResult(ctx, res); err != nil {
			e.logger.WarnContext(ctx, "recording a rescued build failed", "team", d.team, "err", err)
		}
		e.metrics.rescued.Inc()
		e.logger.WarnContext(ctx, "rescued the build of a dead process", "team", d.team, "job", d.id, "process", d.by, "removed_keys", removed)
	}
	return rescued, nil
}
