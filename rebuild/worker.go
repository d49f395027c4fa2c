package rebuild

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/riverqueue/river"
)

// worker runs one team's build as a River job.
type worker struct {
	river.WorkerDefaults[jobArgs]
	e *Engine
}

// Timeout bounds one build; River cancels the job's context after it.
func (w *worker) Timeout(*river.Job[jobArgs]) time.Duration { return w.e.opts.BuildTimeout }

// Work admits the job again (the team may have been quarantined, released or resized
// since it was queued), takes the team's run guard and a share of the memory budget,
// builds, records the result, and turns a request that arrived meanwhile into one
// follow-up run of this same job.
func (w *worker) Work(ctx context.Context, job *river.Job[jobArgs]) error {
	e := w.e
	team, lane := job.Args.TeamID, Lane(job.Queue)
	want, err := e.admit(ctx, team, true)
	if errors.Is(err, ErrUnknownTeam) {
		return river.JobCancel(err) // the team is gone; retrying cannot help
	}
	if err != nil {
		return err
	}
	if want != lane {
		// Move to the lane admission picks now; joining a job waiting there is fine.
		e.jobs.forget(team)
		if _, err := e.insert(ctx, team, job.Args.Reason, want); err != nil {
			return err
		}
		e.metrics.builds.WithLabelValues(string(lane), "rerouted").Inc()
		return nil
	}
	if lane == LaneQuarantine && e.opts.QuarantineHold {
		return river.JobSnooze(e.opts.HoldRecheck)
	}

	now := time.Now()
	ok, err := e.store.beginRun(ctx, team, now, now.Add(-e.opts.BuildTimeout-time.Minute))
	if err != nil {
		return err
	}
	if !ok {
		return river.JobSnooze(time.Second) // another replica builds this team right now
	}
	// From here until end, requests for the team in this process mark a follow-up in
	// memory instead of going to the database.
	e.jobs.begin(team, job.ID, lane)
	ended := false
	defer func() {
		if !ended { // a panic outside the build: never leave the slot claiming a run
			e.jobs.end(team, false, false, time.Time{})
		}
	}()
	size, err := e.sizes.get(ctx, team)
	if err != nil {
		_, _, _ = e.store.endRun(context.WithoutCancel(ctx), team, true)
		return err
	}
	est := e.estimateBytes(size)
	if err := e.budget.Acquire(ctx, est); err != nil {
		_, _, _ = e.store.endRun(context.WithoutCancel(ctx), team, true)
		return fmt.Errorf("wait for memory budget: %w", err)
	}
	e.track(lane, est, 1)
	res, buildErr := e.safeRebuild(ctx, team)
	e.track(lane, -est, -1)
	e.budget.Release(est)

	res.JobID, res.Lane, res.Reason, res.MemoryBoundBytes = job.ID, lane, job.Args.Reason, est
	e.observe(res)
	bg := context.WithoutCancel(ctx)
	followup, failures, err := e.store.endRun(bg, team, buildErr == nil)
	if err != nil {
		e.logger.WarnContext(ctx, "recording build end failed", "team", team, "err", err)
	}
	// Requests in this process during the build were marked in memory, others in the
	// database: either way exactly one more build, after the coalescing delay.
	followup = e.jobs.end(team, buildErr == nil, followup, time.Now().Add(e.opts.CoalesceDelay))
	ended = true
	if err := e.store.addResult(bg, res); err != nil {
		e.logger.WarnContext(ctx, "recording build result failed", "team", team, "err", err)
	}
	if buildErr != nil {
		e.logger.WarnContext(ctx, "build failed", "team", team, "lane", lane, "attempt", job.Attempt, "err", buildErr)
		// A payload PostHog's readers could not be given will not shrink on a retry:
		// quarantine the team at once, with the reason, and keep its old cache live.
		if tooLarge, ok := errors.AsType[*PayloadTooLargeError](buildErr); ok {
			if err := e.quarantine(bg, team, tooLarge.Error(), true); err != nil {
				e.logger.WarnContext(ctx, "auto quarantine failed", "team", team, "err", err)
			}
			return river.JobCancel(buildErr)
		}
		if failures >= e.opts.QuarantineAfterFailures {
			reason := fmt.Sprintf("%d builds in a row failed; last: %v", failures, buildErr)
			if err := e.quarantine(bg, team, reason, true); err != nil {
				e.logger.WarnContext(ctx, "auto quarantine failed", "team", team, "err", err)
			}
		}
		return buildErr
	}
	if followup {
		return river.JobSnooze(e.opts.CoalesceDelay) // exactly one more build, for the requests that arrived meanwhile
	}
	return nil
}

// safeRebuild turns a panic in a build into a failed result.
func (e *Engine) safeRebuild(ctx context.Context, team int64) (res BuildResult, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("build of team %d panicked: %v", team, v)
			res.TeamID, res.OK, res.Error = team, false, err.Error()
			res.FinishedAt = e.rebuild.now()
			e.logger.ErrorContext(ctx, "build panicked", "team", team, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	if e.testHook != nil {
		e.testHook(team)
	}
	return e.rebuild.Rebuild(ctx, team)
}

func (e *Engine) track(lane Lane, bytes int64, running int) {
	e.mu.Lock()
	e.inUse += bytes
	e.running[lane] += running
	inUse, n := e.inUse, e.running[lane]
	e.mu.Unlock()
	e.metrics.inUse.Set(float64(inUse))
	e.metrics.running.WithLabelValues(string(lane)).Set(float64(n))
}

func (e *Engine) observe(res BuildResult) {
	result := "ok"
	switch {
	case !res.OK:
		result = "failed"
	case res.Unchanged:
		result = "unchanged"
	}
	e.metrics.builds.WithLabelValues(string(res.Lane), result).Inc()
	e.metrics.duration.WithLabelValues(string(res.Lane)).Observe(res.FinishedAt.Sub(res.StartedAt).Seconds())
	e.metrics.peakHeap.Set(float64(res.PeakHeapBytes))
	e.metrics.peakLive.Set(float64(res.PeakLiveHeapBytes))
	if res.FirstPassSeconds > 0 { // the build got through its first pass
		e.metrics.firstPass.WithLabelValues(string(res.Lane)).Observe(res.FirstPassSeconds)
	}
	if res.OK && res.Attempts > 0 { // a build that failed proved no prediction right or wrong
		held := "held"
		if res.Attempts > 1 {
			held = "missed"
		}
		e.metrics.predictions.WithLabelValues(cmp.Or(res.PredictionSource, PredictionReferences), held).Inc()
	}
	if res.SharedPredictionError != "" {
		e.logger.Warn("shared prediction store", "team", res.TeamID, "load", res.SharedPredictionLoad,
			"save", res.SharedPredictionSave, "err", res.SharedPredictionError)
	}
	if res.SharedPredictionLoad != "" {
		e.metrics.shared.WithLabelValues("load", res.SharedPredictionLoad).Inc()
	}
	if res.SharedPredictionSave != "" {
		e.metrics.shared.WithLabelValues("save", res.SharedPredictionSave).Inc()
	}
	if res.OK {
		for reason, n := range res.SkippedByReason {
			e.metrics.skipped.WithLabelValues(reason).Add(float64(n))
		}
	}
}
