package rebuild

import (
	"context"
	"time"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// TeamInfo is what a build needs to know about a team before reading its flags.
type TeamInfo struct {
	ID        int64
	ProjectID int64
	// Watermark is the newest change to the team's flag data (flag updated_at or
	// created_at, cohort created_at or last_calculation); it is stored with the cache so
	// that the sweep can find caches older than their data.
	Watermark time.Time
}

// FlagRow is one non-deleted flag as a build reads it. Filters is the raw JSON text
// (nil for SQL NULL); it is validated, not decoded.
type FlagRow struct {
	ID                         int64
	TeamID                     int64
	Key                        string
	Name                       string
	Filters                    []byte
	Active                     bool
	EnsureExperienceContinuity bool
	HasEncryptedPayloads       bool
	IsRemoteConfiguration      bool
	// Version is nil for SQL NULL.
	Version           *int64
	EvaluationRuntime string
	// Tags are the flag's evaluation tag names, sorted.
	Tags []string
}

// CohortRow is one cohort as a build reads it. JSON columns are raw text, nil for NULL.
type CohortRow struct {
	ID                int64
	TeamID            int64
	Name              *string
	Description       string
	Deleted           bool
	IsStatic          bool
	Filters           []byte
	Query             []byte
	Groups            []byte
	Version           *int64
	PendingVersion    *int64
	Count             *int64
	IsCalculating     bool
	ErrorsCalculating int64
	CreatedByID       *int64
	CohortType        *string
}

// GroupType is one group type mapping of a project.
type GroupType struct {
	Index int
	Type  string
}

// FlagSource is where a build reads a team's data. The Postgres implementation reads
// PostHog's tables; the embedded demo supplies a simulated one. Implementations must
// stream: fn is called per row as rows arrive and must not be retained.
type FlagSource interface {
	// Team returns the team, or an error wrapping ErrUnknownTeam.
	Team(ctx context.Context, teamID int64) (TeamInfo, error)
	// Flags calls fn for up to limit non-deleted flags of the team whose key sorts after
	// afterKey, in key order, and returns how many it passed (fewer than limit: done).
	Flags(ctx context.Context, teamID int64, afterKey string, limit int, fn func(*FlagRow) error) (int, error)
	// Cohorts calls fn for each of the team's cohorts among ids (any order; missing ids
	// are skipped).
	Cohorts(ctx context.Context, teamID int64, ids []int64, fn func(*CohortRow) error) error
	// GroupTypes returns the project's group type mappings.
	GroupTypes(ctx context.Context, projectID int64) ([]GroupType, error)
}

// SizeSource measures a team for admission. The Postgres implementation prefers the
// team-size collector's snapshot and falls back to a quick count query.
type SizeSource interface {
	// TeamSize returns the team's size, or an error wrapping ErrUnknownTeam.
	TeamSize(ctx context.Context, teamID int64) (snapshot.TeamSize, error)
}

// StaleSource lists teams whose flag data changed after their cache was built: the
// sweep's input.
type StaleSource interface {
	// ChangedSince returns ids of teams with flag data newer than since (bounded by
	// limit), and each team's watermark.
	ChangedSince(ctx context.Context, since time.Time, limit int) (map[int64]time.Time, error)
}
