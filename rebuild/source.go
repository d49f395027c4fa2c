package rebuild

import (
	"context"
	"time"

	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// TeamInfo is what a build needs to know about a team before reading its flags.
type TeamInfo = posthog.Team

// FlagRow is one non-deleted flag as a build reads it. JSON columns are raw text, nil
// for SQL NULL; nullable columns are pointers.
type FlagRow struct {
	ID                         int64
	TeamID                     int64
	Key                        string
	Name                       string
	Filters                    []byte
	Active                     bool
	EnsureExperienceContinuity *bool
	HasEncryptedPayloads       *bool
	IsRemoteConfiguration      *bool
	Version                    *int64
	EvaluationRuntime          *string
	BucketingIdentifier        *string
	// RolloutPercentage is the legacy column that get_filters() up-converts.
	RolloutPercentage *int64
	// HasExperiment: a non-deleted experiment uses the flag.
	HasExperiment bool
	// Tags are the flag's evaluation tag names, distinct, in the database's sort order.
	Tags []string
}

// RefRow is a flag as the first pass reads it. Refs is a JSON array of the release
// conditions' flag and cohort properties in document order
// (filters.groups[*].properties[*]), computed by the source, not read whole; nil when
// there are none. Key may be empty unless the flag has flag properties.
//
// A source may also report deleted flags (Deleted set, nothing else but Changed
// meaningful) and each flag's last change, which the build folds into the team's
// watermark; a zero Changed adds nothing.
type RefRow struct {
	ID        int64
	Key       string
	Active    bool
	Encrypted bool
	Remote    bool
	Refs      []byte
	Deleted   bool
	Changed   time.Time
}

// FlagHead is a flag named by a dependency, without its filters.
type FlagHead struct {
	ID        int64
	Key       string
	Active    bool
	Encrypted bool
	Remote    bool
}

// CohortRow is one cohort as a build reads it. JSON columns are raw text, nil for NULL.
type CohortRow struct {
	ID                             int64
	TeamID                         int64
	Name                           *string
	Description                    string
	Deleted                        bool
	IsStatic                       bool
	Filters                        []byte
	Query                          []byte
	Groups                         []byte
	Version                        *int64
	PendingVersion                 *int64
	Count                          *int64
	IsCalculating                  bool
	ErrorsCalculating              int64
	CreatedByID                    *int64
	CohortType                     *string
	LastBackfillPersonPropertiesAt *time.Time
	LastBackfillEventsAt           *time.Time
}

// GroupType is one group type mapping of a project.
type GroupType struct {
	Index int
	Type  string
}

// IDFilter selects the flags an id stream returns: always the team's non-deleted
// flags, then these.
type IDFilter struct {
	ActiveOnly       bool
	ExcludeEncrypted bool
}

// ReadOptions shape what a TeamReader computes on the source's side.
type ReadOptions struct {
	// UpConvertLegacy reads references from filters without "groups" as get_filters()
	// up-converts them (one group with the row's properties).
	UpConvertLegacy bool
	// RefsChangedAfter, when set, has References extract the references of the flags
	// changed after it only (RefRow's Key and Refs stay empty for the others, whose
	// filters are not read): the build predicts the rest from its previous build of the
	// team, which saw them as they are.
	RefsChangedAfter time.Time
}

// FlagSource is where a build reads a team's data. The Postgres implementation reads
// PostHog's tables; the embedded demo supplies a simulated one.
type FlagSource interface {
	// Team returns the team, or an error wrapping ErrUnknownTeam.
	Team(ctx context.Context, teamID int64) (TeamInfo, error)
	// Open starts one build's reads of a team: every read through the TeamReader sees
	// the same state of the data. The caller must Close it.
	Open(ctx context.Context, teamID int64, opts ReadOptions) (TeamReader, error)
}

// TeamReader reads one team for one build. Implementations must stream: fn is called
// per row as rows arrive and must not retain the row.
type TeamReader interface {
	// Team is the team as of the reader's snapshot. Its watermark may leave out the
	// flags' change times that References reports.
	Team() TeamInfo
	// GroupTypes returns the project's group type mappings.
	GroupTypes(ctx context.Context) ([]GroupType, error)
	// SurveyFlagIDs returns the flags surveys of the team own (targeting, internal
	// targeting, response sampling).
	SurveyFlagIDs(ctx context.Context) ([]int64, error)
	// References calls fn for each non-deleted flag (and perhaps deleted ones, marked),
	// in any order, with the flag and cohort properties of its release conditions. It is a cheap prediction that the
	// build checks against every flag it reads; it must not read filters to the client.
	// Its ids also give evaluation_metadata's, so that FlagIDs is needed only for a
	// team whose ids outgrow the build's budget for them.
	References(ctx context.Context, fn func(*RefRow) error) error
	// FlagHeads calls fn for the team's non-deleted flags among ids or keys.
	FlagHeads(ctx context.Context, ids []int64, keys []string, fn func(*FlagHead) error) error
	// FlagIDs calls fn with the ids of the non-deleted flags f selects in numeric order,
	// then (byText) with the same ids again ordered as decimal strings: the two orders
	// flags.json's dependency stages and transitive dependencies are printed in.
	FlagIDs(ctx context.Context, f IDFilter, fn func(id int64, byText bool) error) error
	// Flags calls fn for each non-deleted flag of the team, in key order (the database's
	// collation, as PostHog's order_by("key")), as the rows arrive.
	Flags(ctx context.Context, fn func(*FlagRow) error) error
	// Cohorts calls fn for the non-deleted cohorts among ids, by id, of the team or,
	// with project, of any team of the team's project.
	Cohorts(ctx context.Context, ids []int64, project bool, fn func(*CohortRow) error) error
	// Close ends the reads.
	Close()
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
