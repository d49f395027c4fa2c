// Package defaults holds the detectors' default thresholds that are also config keys.
// The detectors fill unset options with them and internal/config starts the detectors
// section from them, so each default is written here once; the package imports only
// time so that the config loader can use it without the detectors' dependencies.
package defaults

import "time"

// The backlog detector.
const (
	// BacklogLimit is the queue depth the ETA is computed against.
	BacklogLimit = 100000
	// BacklogFloor is the depth below which a queue is never called growing.
	BacklogFloor = 100
	// BacklogShortWindow is the window in which a queue must grow steadily.
	BacklogShortWindow = 2 * time.Hour
	// BacklogLongWindow backs the short window up while less than a day of history exists.
	BacklogLongWindow = 6 * time.Hour
	// StallAfter is how long a non-empty queue may go without its depth decreasing.
	StallAfter = 15 * time.Minute
	// For is how long growth must hold before it fires.
	For = 5 * time.Minute
	// BacklogWeeks is how many weeks of history growth is compared with.
	BacklogWeeks = 4
	// BacklogTimezone is the IANA zone whose calendar tells weekdays from weekends.
	BacklogTimezone = "UTC"
)

// Thresholds the API and the caches collector judge by as well.
const (
	// StaleAfter is the cache lag above which a team's cache is stale.
	StaleAfter = 15 * time.Minute
	// WorkerMemoryLimit is the worker memory a load-everything build is compared with.
	WorkerMemoryLimit = 8 << 30
)

// The worker detectors.
const (
	// OOMWindow is the interval OOM kills are counted over.
	OOMWindow = 15 * time.Minute
	// OOMKeepFiring is how long worker_oom_kills keeps firing after the last kill.
	OOMKeepFiring = time.Hour
	// MemoryNearLimit is the worker memory usage/limit ratio that is a warning.
	MemoryNearLimit = 0.9
)

// Growth and the findings' lifecycle.
const (
	// GrowthMinDays is how many days of size history slow-burn growth needs.
	GrowthMinDays = 3
	// FindingsRetention is how long resolved findings are kept.
	FindingsRetention = 30 * 24 * time.Hour
)
