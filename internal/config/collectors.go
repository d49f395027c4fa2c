package config

import (
	"time"
	// The time zone database, so that detectors.backlog_timezone loads on hosts
	// without one.
	_ "time/tzdata"

	detectordefaults "github.com/flagwarden/flagwarden/detectors/defaults"
)

// Loop times one ticker loop: a collector or the detector pass.
type Loop struct {
	// Interval between passes.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one pass; it must not exceed the interval.
	Timeout time.Duration `yaml:"timeout"`
	// Jitter spreads passes by up to this fraction of the interval (0..0.5).
	Jitter float64 `yaml:"jitter"`
}

func (l Loop) validate(p *problems, path string) {
	p.positive(path+".interval", l.Interval)
	p.positive(path+".timeout", l.Timeout)
	if l.Timeout > l.Interval && l.Interval > 0 {
		p.add(path+".timeout", "must not exceed %s.interval (%s), got %s", path, l.Interval, l.Timeout)
	}
	if l.Jitter < 0 || l.Jitter > 0.5 {
		p.add(path+".jitter", "must be between 0 and 0.5, got %g", l.Jitter)
	}
}

// Collectors configures every collector and the series store they write to.
type Collectors struct {
	// Celery measures broker queues.
	Celery Loop `yaml:"celery"`
	// Teams measures per-team data sizes in the flag database.
	Teams TeamsLoop `yaml:"teams"`
	// Pods measures worker pod health (and the optional PromQL queries).
	Pods Loop `yaml:"pods"`
	// Caches measures cache freshness.
	Caches Loop `yaml:"caches"`
	// Series bounds the in-memory history.
	Series Series `yaml:"series"`
}

// TeamsLoop is the team-size collector: an incremental pass every interval and a full
// pass every full_interval.
type TeamsLoop struct {
	Loop `yaml:",inline"`
	// FullInterval is how often every team is measured, not only the changed ones.
	FullInterval time.Duration `yaml:"full_interval"`
	// ChunkTeams is how many team ids one query covers.
	ChunkTeams int `yaml:"chunk_teams"`
}

// Series bounds the in-memory series store.
type Series struct {
	// Retention is how far back samples are kept.
	Retention time.Duration `yaml:"retention"`
	// MaxPoints bounds each series' ring buffer.
	MaxPoints int `yaml:"max_points"`
	// MaxSeries bounds how many series exist; new ones beyond it are dropped and counted.
	MaxSeries int `yaml:"max_series"`
}

func defaultCollectors() Collectors {
	return Collectors{
		Celery: Loop{Interval: 15 * time.Second, Timeout: 10 * time.Second, Jitter: 0.1},
		Teams: TeamsLoop{
			Loop:         Loop{Interval: time.Minute, Timeout: 50 * time.Second, Jitter: 0.1},
			FullInterval: 30 * time.Minute,
			ChunkTeams:   5000,
		},
		Pods:   Loop{Interval: 15 * time.Second, Timeout: 10 * time.Second, Jitter: 0.1},
		Caches: Loop{Interval: time.Minute, Timeout: 50 * time.Second, Jitter: 0.1},
		Series: Series{Retention: 14 * 24 * time.Hour, MaxPoints: 20160, MaxSeries: 200000},
	}
}

func (c Collectors) validate(p *problems) {
	c.Celery.validate(p, "collectors.celery")
	c.Teams.validate(p, "collectors.teams")
	c.Pods.validate(p, "collectors.pods")
	c.Caches.validate(p, "collectors.caches")
	if c.Teams.FullInterval < c.Teams.Interval {
		p.add("collectors.teams.full_interval", "must be at least collectors.teams.interval (%s), got %s", c.Teams.Interval, c.Teams.FullInterval)
	}
	p.atLeast("collectors.teams.chunk_teams", int64(c.Teams.ChunkTeams), 1)
	p.positive("collectors.series.retention", c.Series.Retention)
	p.atLeast("collectors.series.max_points", int64(c.Series.MaxPoints), 2)
	p.atLeast("collectors.series.max_series", int64(c.Series.MaxSeries), 1)
}

// Detectors configures the detector pass and its thresholds.
type Detectors struct {
	Loop `yaml:",inline"`
	// For is how long a condition must hold before a finding fires.
	For time.Duration `yaml:"for"`
	// WorkerMemoryLimit is the Celery worker's memory limit; a team whose estimated build
	// needs more is always a finding.
	WorkerMemoryLimit ByteSize `yaml:"worker_memory_limit"`
	// BacklogLimit is the queue depth the ETA is computed against.
	BacklogLimit int64 `yaml:"backlog_limit"`
	// BacklogFloor is the depth below which a queue is never called growing.
	BacklogFloor int64 `yaml:"backlog_floor"`
	// StaleAfter is the cache lag above which a team's cache is stale.
	StaleAfter time.Duration `yaml:"stale_after"`
	// CollectorDownAfter is how long a collector may go without success before it is a finding.
	CollectorDownAfter time.Duration `yaml:"collector_down_after"`
	// OutlierMinBytes is the absolute floor under which no team is an outlier.
	OutlierMinBytes ByteSize `yaml:"outlier_min_bytes"`
	// BacklogShortWindow is the window in which a queue must grow steadily (Mann–Kendall
	// τ and Theil–Sen slope over 5-minute medians) to be called growing.
	BacklogShortWindow time.Duration `yaml:"backlog_short_window"`
	// BacklogLongWindow backs the short window up while less than a day of history
	// exists (after a day, growth is compared with the same hours of the previous day).
	BacklogLongWindow time.Duration `yaml:"backlog_long_window"`
	// StallAfter is how long a non-empty queue may go without its depth decreasing
	// before it is stalled.
	StallAfter time.Duration `yaml:"stall_after"`
	// BacklogWeeks is how many weeks of five-minute history backlog growth is compared
	// with: the same weekday of each once three exist, before that the recent days of
	// the same kind (weekday or weekend).
	BacklogWeeks int `yaml:"backlog_weeks"`
	// BacklogTimezone is the IANA time zone whose calendar tells weekdays from
	// weekends for those comparisons.
	BacklogTimezone string `yaml:"backlog_timezone"`
	// OOMWindow is the interval worker OOM kills are counted over.
	OOMWindow time.Duration `yaml:"oom_window"`
	// OOMKeepFiring is how long worker_oom_kills keeps firing after the last kill, so
	// that kills every half hour are one episode and one page.
	OOMKeepFiring time.Duration `yaml:"oom_keep_firing"`
	// MemoryNearLimit is the worker memory usage/limit ratio that is a warning.
	MemoryNearLimit float64 `yaml:"memory_near_limit"`
	// GrowthMinDays is how many days of size history a team needs before slow-burn
	// growth is judged.
	GrowthMinDays int `yaml:"growth_min_days"`
	// FindingsRetention is how long resolved findings are kept in the state database.
	FindingsRetention time.Duration `yaml:"findings_retention"`
	// RunbookBaseURL is the runbook document; each finding links to its alertname's
	// section (#backlog_growth, …).
	RunbookBaseURL string `yaml:"runbook_base_url"`
}

// Location is the time zone of BacklogTimezone (UTC when it does not load; validate
// reports that).
func (d Detectors) Location() *time.Location {
	if loc, err := time.LoadLocation(d.BacklogTimezone); err == nil && d.BacklogTimezone != "" {
		return loc
	}
	return time.UTC
}

func defaultDetectors() Detectors {
	return Detectors{
		Loop:               Loop{Interval: 30 * time.Second, Timeout: 20 * time.Second, Jitter: 0},
		For:                detectordefaults.For,
		WorkerMemoryLimit:  detectordefaults.WorkerMemoryLimit,
		BacklogLimit:       detectordefaults.BacklogLimit,
		BacklogFloor:       detectordefaults.BacklogFloor,
		StaleAfter:         detectordefaults.StaleAfter,
		CollectorDownAfter: 5 * time.Minute,
		OutlierMinBytes:    1 << 20,
		BacklogShortWindow: detectordefaults.BacklogShortWindow,
		BacklogLongWindow:  detectordefaults.BacklogLongWindow,
		StallAfter:         detectordefaults.StallAfter,
		BacklogWeeks:       detectordefaults.BacklogWeeks,
		BacklogTimezone:    detectordefaults.BacklogTimezone,
		OOMWindow:          detectordefaults.OOMWindow,
		OOMKeepFiring:      detectordefaults.OOMKeepFiring,
		MemoryNearLimit:    detectordefaults.MemoryNearLimit,
		GrowthMinDays:      detectordefaults.GrowthMinDays,
		FindingsRetention:  detectordefaults.FindingsRetention,
		RunbookBaseURL:     "https://github.com/flagwarden/flagwarden/blob/main/docs/runbook.md",
	}
}

func (d Detectors) validate(p *problems) {
	d.Loop.validate(p, "detectors")
	if d.For < 0 {
		p.add("detectors.for", "must not be negative, got %s", d.For)
	}
	p.atLeast("detectors.worker_memory_limit", int64(d.WorkerMemoryLimit), 1)
	p.atLeast("detectors.backlog_limit", d.BacklogLimit, 1)
	p.atLeast("detectors.backlog_floor", d.BacklogFloor, 0)
	p.positive("detectors.stale_after", d.StaleAfter)
	p.positive("detectors.collector_down_after", d.CollectorDownAfter)
	if d.BacklogFloor >= d.BacklogLimit {
		p.add("detectors.backlog_floor", "must be below detectors.backlog_limit (%d), got %d", d.BacklogLimit, d.BacklogFloor)
	}
	p.atLeast("detectors.outlier_min_bytes", int64(d.OutlierMinBytes), 0)
	if d.BacklogShortWindow < 30*time.Minute {
		p.add("detectors.backlog_short_window", "must be at least 30m (six 5-minute buckets), got %s", d.BacklogShortWindow)
	}
	if d.BacklogLongWindow < d.BacklogShortWindow {
		p.add("detectors.backlog_long_window", "must be at least detectors.backlog_short_window (%s), got %s", d.BacklogShortWindow, d.BacklogLongWindow)
	}
	p.positive("detectors.stall_after", d.StallAfter)
	p.positive("detectors.oom_window", d.OOMWindow)
	p.positive("detectors.oom_keep_firing", d.OOMKeepFiring)
	if d.BacklogWeeks < 1 || d.BacklogWeeks > 8 {
		p.add("detectors.backlog_weeks", "must be between 1 and 8, got %d", d.BacklogWeeks)
	}
	if _, err := time.LoadLocation(d.BacklogTimezone); err != nil || d.BacklogTimezone == "" {
		p.add("detectors.backlog_timezone", "must be an IANA time zone such as UTC or Europe/Berlin, got %q", d.BacklogTimezone)
	}
	if d.MemoryNearLimit <= 0 || d.MemoryNearLimit > 1 {
		p.add("detectors.memory_near_limit", "must be in (0, 1], got %g", d.MemoryNearLimit)
	}
	p.atLeast("detectors.growth_min_days", int64(d.GrowthMinDays), 2)
	p.positive("detectors.findings_retention", d.FindingsRetention)
	if d.RunbookBaseURL != "" {
		checkURL(p, "detectors.runbook_base_url", d.RunbookBaseURL, "http", "https")
	}
}
