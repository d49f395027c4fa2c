// Package detectors turns collected measurements into findings with evidence: outlier
// teams, slow-burn growth, growing or stalled backlogs, crash-looping or falsely calm
// workers, stale caches and collectors that stopped reporting. Findings move through a
// lifecycle (pending, firing, resolved) and page through the notifier.
package detectors

import "time"

// Severity of a finding.
type Severity string

// Severities, as Alertmanager routes them.
const (
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// State of a finding in its lifecycle.
type State string

// States: pending until the condition has held for its `for` duration, then firing,
// then resolved once the condition clears.
const (
	StatePending  State = "pending"
	StateFiring   State = "firing"
	StateResolved State = "resolved"
)

// Finding is one detected problem with the numbers that made it fire.
type Finding struct {
	// ID is stable for the same kind and subject: kind plus its identifying labels.
	ID string `json:"id"`
	// Kind is the alert name in snake case: outlier_team, team_growth, backlog_growth,
	// backlog_stalled, workers_crashlooping, worker_oom_kills, worker_memory_near_limit,
	// workers_false_calm, cache_stale, fleet_cache_stale, collector_down, team_quarantined,
	// cache_mismatch.
	Kind     string   `json:"kind"`
	Severity Severity `json:"severity"`
	// Subject is the team id, queue name, namespace or collector, as a string.
	Subject string `json:"subject"`
	// Labels identify the finding to Alertmanager (alertname, team, queue, namespace…).
	Labels map[string]string `json:"labels"`
	// Summary is one line for a pager; Description says what was compared with what.
	Summary     string `json:"summary"`
	Description string `json:"description"`
	// Evidence holds the numbers: value, baseline, window and the statistics used.
	Evidence map[string]float64 `json:"evidence"`
	State    State              `json:"state"`
	// ActiveAt is when the condition was first seen, FiredAt when it started firing,
	// ResolvedAt when it cleared (zero while active).
	ActiveAt     time.Time `json:"active_at"`
	FiredAt      time.Time `json:"fired_at,omitzero"`
	ResolvedAt   time.Time `json:"resolved_at,omitzero"`
	RunbookURL   string    `json:"runbook_url"`
	GeneratorURL string    `json:"generator_url"`
}
