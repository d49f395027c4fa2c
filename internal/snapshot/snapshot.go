// Package snapshot holds the latest measurement of each source — queues, team sizes,
// worker pods, caches — as the collectors last saw it. Collectors replace a snapshot
// whole; detectors and the API read copies. Time series live in package series.
package snapshot

import (
	"sync"
	"time"
)

// Queues is one collection of the Celery broker.
type Queues struct {
	At     time.Time `json:"at"`
	Queues []Queue   `json:"queues"`
	// Unacked is HLEN unacked: delivered to a worker, not yet acknowledged (global).
	Unacked int64 `json:"unacked"`
	// Overdue is unacked messages older than the visibility timeout (global).
	Overdue int64 `json:"overdue"`
}

// Queue is one Celery queue's state.
type Queue struct {
	Name string `json:"name"`
	// Depth is the sum over every priority list, as kombu's own size function computes it.
	Depth int64 `json:"depth"`
	// ByPriority maps a priority step to the length of its list.
	ByPriority map[int]int64 `json:"by_priority"`
	// Unacked and Overdue are this queue's share of the unacked messages, where the
	// message says which queue it came from.
	Unacked int64 `json:"unacked"`
	Overdue int64 `json:"overdue"`
	// OldestAge is how long the oldest waiting message has been seen; zero when unknown.
	OldestAge time.Duration `json:"oldest_age"`
	// Bound reports whether a _kombu.binding entry names the queue (someone declared it).
	Bound bool `json:"bound"`
	// Composition is what a sample of the backlog is made of.
	Composition Composition `json:"composition"`
}

// Composition describes a bounded sample of a queue's messages.
type Composition struct {
	Sampled     int `json:"sampled"`
	Undecodable int `json:"undecodable"`
	// ByTask counts sampled messages per task name.
	ByTask map[string]int `json:"by_task"`
	// ByTeam counts sampled messages per team id (only tasks that carry one).
	ByTeam        map[int64]int `json:"by_team"`
	DistinctTeams int           `json:"distinct_teams"`
	// DuplicateRatio is 1 - distinct teams / messages with a team: the share of the
	// backlog a per-team dedup would remove.
	DuplicateRatio float64 `json:"duplicate_ratio"`
}

// Teams is one pass of the team-size collector over the flag database.
type Teams struct {
	At time.Time `json:"at"`
	// Full is true for a pass over every team, false for an incremental one.
	Full bool `json:"full"`
	// PassSeconds is how long the pass took.
	PassSeconds float64 `json:"pass_seconds"`
	// Teams maps team id to its latest measured size (incremental passes merge in).
	Teams map[int64]TeamSize `json:"-"`
}

// TeamSize is what one team's flag data weighs.
type TeamSize struct {
	TeamID       int64 `json:"team_id"`
	ProjectID    int64 `json:"project_id"`
	Flags        int64 `json:"flags"`
	ActiveFlags  int64 `json:"active_flags"`
	DeletedFlags int64 `json:"deleted_flags"`
	// Cohorts and CohortBytes count referenced non-static, non-deleted cohorts.
	Cohorts            int64 `json:"cohorts"`
	CohortBytes        int64 `json:"cohort_bytes"`
	FiltersBytes       int64 `json:"filters_bytes"`
	LargestFilterBytes int64 `json:"largest_filter_bytes"`
	GroupTypes         int64 `json:"group_types"`
	// FlagsPayloadBytes and DefinitionsPayloadBytes estimate the two cache payloads.
	FlagsPayloadBytes       int64 `json:"flags_payload_bytes"`
	DefinitionsPayloadBytes int64 `json:"definitions_payload_bytes"`
	// UpdatedAt is the newest updated_at/created_at among the team's flags and cohorts.
	UpdatedAt time.Time `json:"updated_at"`
	// BadRows counts rows whose data could not be read as expected (non-JSON filters,
	// NULL filters, cohort cycles); BadReasons says which, bounded.
	BadRows    int64     `json:"bad_rows"`
	BadReasons []string  `json:"bad_reasons,omitempty"`
	MeasuredAt time.Time `json:"measured_at"`
}

// PayloadBytes is the larger of the two cache payload estimates: the team's size for
// ranking, admission and outlier detection.
func (t TeamSize) PayloadBytes() int64 { return max(t.FlagsPayloadBytes, t.DefinitionsPayloadBytes) }

// NaiveBuildFactor is how many times its payload a load-everything build holds at once:
// model instances, serializer dicts, the cohort set, and the final JSON string for each
// of the two variants. PostHog's PR #47602 saw 19–26 GB spikes for payloads in the low
// gigabytes; 8× is a conservative reading of that.
const NaiveBuildFactor = 8

// EstimatedNaiveBuildBytes is the memory a load-everything build of this team would need:
// the number the worker memory limit is compared with.
func (t TeamSize) EstimatedNaiveBuildBytes() int64 {
	return NaiveBuildFactor * (t.FlagsPayloadBytes + t.DefinitionsPayloadBytes)
}

// Pods is one look at the worker fleet.
type Pods struct {
	At   time.Time `json:"at"`
	Pods []Pod     `json:"pods"`
	// Source is "kubernetes" or "simulated".
	Source string `json:"source"`
}

// Pod is one classified worker pod.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Phase     string `json:"phase"`
	Ready     bool   `json:"ready"`
	Restarts  int32  `json:"restarts"`
	// RestartDelta is restarts since the previous look.
	RestartDelta int32 `json:"restart_delta"`
	// Waiting is the current waiting reason, e.g. CrashLoopBackOff.
	Waiting string `json:"waiting,omitempty"`
	// LastTermination is the last termination reason, e.g. OOMKilled, and its exit code.
	LastTermination  string    `json:"last_termination,omitempty"`
	LastExitCode     int32     `json:"last_exit_code,omitempty"`
	LastTerminatedAt time.Time `json:"last_terminated_at,omitzero"`
	// NewOOMKill is true when this look saw an OOM kill not seen before (de-duplicated
	// on the termination time).
	NewOOMKill  bool  `json:"new_oom_kill"`
	MemoryLimit int64 `json:"memory_limit_bytes"`
	// MemoryUsage is the working set where a PromQL source reports it; 0 when unknown.
	MemoryUsage int64 `json:"memory_usage_bytes"`
}

// Caches is one look at cache freshness.
type Caches struct {
	At    time.Time    `json:"at"`
	Teams []CacheState `json:"teams"`
}

// CacheState is one team's cache of one kind.
type CacheState struct {
	TeamID int64 `json:"team_id"`
	// Kind is "flags" (the /flags payload) or "definitions" (local evaluation).
	Kind string `json:"kind"`
	// Source is "flagwarden" (published by flagwarden) or "posthog" (PostHog's own cache).
	Source  string    `json:"source"`
	Bytes   int64     `json:"bytes"`
	BuiltAt time.Time `json:"built_at"`
	ETag    string    `json:"etag,omitempty"`
	// SourceUpdatedAt is the newest change to the team's flag data.
	SourceUpdatedAt time.Time `json:"source_updated_at,omitzero"`
	// Lag is SourceUpdatedAt - BuiltAt when positive: how far the cache is behind.
	Lag time.Duration `json:"lag"`
	// Missing is true when the team has flag data but no cache at all; its Lag is then
	// MissingLag.
	Missing bool `json:"missing"`
}

// MissingLag is the lag of a missing cache: a cache that is not there serves nothing
// fresh, so it is as stale as a duration can say, and every staleness threshold
// judges it stale at once.
const MissingLag = time.Duration(1<<63 - 1)

// Store holds the latest snapshot of each kind. It is safe for concurrent use; getters
// return the stored value, which callers must treat as read-only.
type Store struct {
	mu     sync.RWMutex
	queues Queues
	teams  Teams
	pods   Pods
	caches Caches
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{teams: Teams{Teams: map[int64]TeamSize{}}} }

// SetQueues replaces the queue snapshot.
func (s *Store) SetQueues(q Queues) { s.mu.Lock(); s.queues = q; s.mu.Unlock() }

// Queues returns the queue snapshot.
func (s *Store) Queues() Queues { s.mu.RLock(); defer s.mu.RUnlock(); return s.queues }

// SetTeams replaces the team snapshot.
func (s *Store) SetTeams(t Teams) { s.mu.Lock(); s.teams = t; s.mu.Unlock() }

// Teams returns the team snapshot.
func (s *Store) Teams() Teams { s.mu.RLock(); defer s.mu.RUnlock(); return s.teams }

// Team returns one team's size.
func (s *Store) Team(id int64) (TeamSize, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.teams.Teams[id]
	return t, ok
}

// SetPods replaces the pod snapshot.
func (s *Store) SetPods(p Pods) { s.mu.Lock(); s.pods = p; s.mu.Unlock() }

// Pods returns the pod snapshot.
func (s *Store) Pods() Pods { s.mu.RLock(); defer s.mu.RUnlock(); return s.pods }

// SetCaches replaces the cache snapshot.
func (s *Store) SetCaches(c Caches) { s.mu.Lock(); s.caches = c; s.mu.Unlock() }

// Caches returns the cache snapshot.
func (s *Store) Caches() Caches { s.mu.RLock(); defer s.mu.RUnlock(); return s.caches }
