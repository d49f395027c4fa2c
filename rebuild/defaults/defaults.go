// Package defaults holds the rebuild engine's default settings. The engine fills unset
// Options with them and internal/config starts the rebuild section from them, so each
// default is written here once; the package imports nothing heavier than time so that
// the config loader can use it without pulling in River or a database driver.
package defaults

import "time"

// Lanes: concurrent builds per lane in one process.
const (
	SmallWorkers      = 8
	LargeWorkers      = 2
	QuarantineWorkers = 1
)

// Admission and quarantine.
const (
	// LargeTeamBytes routes a team whose estimated payload is at least this to the
	// large lane.
	LargeTeamBytes = 16 << 20
	// HardLimitBytes quarantines a team whose estimated payload is at least this.
	HardLimitBytes = 4 << 30
	// QuarantineAfterFailures quarantines a team after this many failed builds in a row.
	QuarantineAfterFailures = 3
	// MemoryBudget is what concurrent builds in one process may hold together.
	MemoryBudget = 512 << 20
	// QuarantineCacheTTL is how long a process trusts its copy of the quarantined teams.
	QuarantineCacheTTL = 5 * time.Second
)

// Builds and their retries.
const (
	// BuildTimeout bounds one build.
	BuildTimeout = 10 * time.Minute
	// MaxAttempts is how often a failing build is tried.
	MaxAttempts = 5
	// CoalesceDelay is how long a team's new job and its follow-up wait before they
	// may start, so that requests meanwhile join them in memory.
	CoalesceDelay = 500 * time.Millisecond
	// PredictionCache bounds the teams' last build indexes a builder keeps to predict
	// their next builds from.
	PredictionCache = 32 << 20
	// SharedPredictionTTL is how long a team's shared prediction lives in Redis after
	// the last build that stored or confirmed it.
	SharedPredictionTTL = 7 * 24 * time.Hour
)

// Publishing.
const (
	// ChunkBytes is the size of one write to Redis.
	ChunkBytes = 1 << 20
	// MaxValueBytes is the largest single Redis value written.
	MaxValueBytes = 256 << 20
)
