// Package rebuild is flagwarden's flag-cache rebuild engine: intake and per-team dedup,
// admission by measured size into lanes (small, large, quarantine), a shared memory
// budget, the streaming builder that writes both caches in one bounded pass, and the
// publisher that makes a payload live atomically.
package rebuild

import (
	"time"

	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Lane is where an admitted build runs.
type Lane string

// Lanes: small teams run many at once; large teams stream with few workers; quarantined
// teams wait for release or run one at a time, never delaying the others.
const (
	LaneSmall      Lane = "small"
	LaneLarge      Lane = "large"
	LaneQuarantine Lane = "quarantine"
)

// ErrUnknownTeam is returned for a team id that does not exist in the flag database.
var ErrUnknownTeam = posthog.ErrUnknownTeam

// RequestResult says what a rebuild request became.
type RequestResult struct {
	TeamID int64 `json:"team_id"`
	// JobID is the waiting job the request created or joined.
	JobID int64 `json:"job_id"`
	// Joined is true when a build was already waiting and the request joined it.
	Joined bool `json:"joined"`
	Lane   Lane `json:"lane"`
}

// Quarantine is one quarantined team.
type Quarantine = snapshot.Quarantine

// BuildResult is the outcome of one build.
type BuildResult struct {
	TeamID     int64     `json:"team_id"`
	JobID      int64     `json:"job_id"`
	Lane       Lane      `json:"lane"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"`
	// Unchanged is true when the payloads hashed the same as the live ones and were not
	// rewritten.
	Unchanged        bool  `json:"unchanged"`
	Flags            int64 `json:"flags"`
	Cohorts          int64 `json:"cohorts"`
	SkippedFlags     int64 `json:"skipped_flags"`
	FlagsBytes       int64 `json:"flags_bytes"`
	DefinitionsBytes int64 `json:"definitions_bytes"`
	// FlagsStoredBytes and DefinitionsStoredBytes are what Redis holds: in the PostHog
	// layout the pickled, compressed values.
	FlagsStoredBytes       int64  `json:"flags_stored_bytes"`
	DefinitionsStoredBytes int64  `json:"definitions_stored_bytes"`
	FlagsETag              string `json:"flags_etag,omitempty"`
	DefinitionsETag        string `json:"definitions_etag,omitempty"`
	// PeakHeapBytes is the whole process's peak Go heap while the build ran, other
	// builds and the server included: an upper bound on what this build held, not its
	// own figure. MemoryBoundBytes is the build's own: what it reserved of the memory
	// budget before it started (its size estimate); 0 for builds outside the engine.
	PeakHeapBytes    int64 `json:"peak_heap_bytes"`
	MemoryBoundBytes int64 `json:"memory_bound_bytes"`
	// PeakLiveHeapBytes is the whole process's peak live heap while the build ran: what
	// the collector found reachable, without the garbage PeakHeapBytes includes (up to
	// as much again, by GOGC). Process wide too.
	PeakLiveHeapBytes int64 `json:"peak_live_heap_bytes"`
	// FirstPassSeconds is the build's first pass, the database extracting each flag's
	// references; the rest of the build is the streaming pass and the publish.
	FirstPassSeconds float64 `json:"first_pass_seconds"`
	// PredictionReused is true when the build predicted from the team's previous build
	// (PredictionSource says whose) instead of having the database extract every flag's references
	// (the shorter first pass); Attempts is how many streaming passes it took, 2 or more
	// when the prediction, either kind, was wrong.
	PredictionReused bool `json:"prediction_reused"`
	Attempts         int  `json:"attempts"`
	// PredictionSource is where the first pass's prediction came from: references (the
	// full first pass), previous_build (this process's last build of the team) or
	// shared (the last build by any replica, from the shared store).
	PredictionSource string `json:"prediction_source,omitempty"`
	// SharedPredictionLoad and SharedPredictionSave are what the build did with the
	// shared store: loaded, absent, invalid or error; saved, kept, too_large or error.
	// SharedPredictionError says why an operation failed (the build went on without).
	SharedPredictionLoad  string `json:"shared_prediction_load,omitempty"`
	SharedPredictionSave  string `json:"shared_prediction_save,omitempty"`
	SharedPredictionError string `json:"shared_prediction_error,omitempty"`
	// Problems are the bad rows the build reported (cohorts it could not use, cohort
	// cycles), at most 20.
	Problems []string `json:"problems,omitempty"`
	// Skipped lists flags left out of both payloads because the Rust reader would
	// refuse the team's payload with them, with the reason (at most 100).
	Skipped []SkippedFlag `json:"skipped,omitempty"`
	// SkippedByReason counts the skipped flags by reason.
	SkippedByReason map[string]int64 `json:"skipped_by_reason,omitempty"`
	// Reason is what asked for the build (api, notify, celery, sweep, cli, …).
	Reason string `json:"reason,omitempty"`
}

// LaneStatus is one lane's load in this deployment.
type LaneStatus struct {
	Lane Lane `json:"lane"`
	// Running counts the lane's jobs in the running state of the job table, across every
	// replica: it includes builds whose completion is not yet written (the job client
	// frees a worker slot before it records the end) and jobs of a process that died
	// until they are rescued, so it can exceed Workers.
	Running int `json:"running"`
	// RunningHere is the builds this process is running now, out of Workers.
	RunningHere int `json:"running_here"`
	Waiting     int `json:"waiting"`
	Workers     int `json:"workers"`
}

// Status is the engine's state for the API and dashboard.
type Status struct {
	Lanes []LaneStatus `json:"lanes"`
	// BudgetBytes is this process's memory budget; BudgetInUse what running builds hold.
	BudgetBytes int64         `json:"budget_bytes"`
	BudgetInUse int64         `json:"budget_in_use_bytes"`
	Quarantined []Quarantine  `json:"quarantined"`
	Recent      []BuildResult `json:"recent"`
}
