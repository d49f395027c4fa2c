package config

import "time"

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
}

func defaultDetectors() Detectors {
	return Detectors{
		Loop:               Loop{Interval: 30 * time.Second, Timeout: 20 * time.Second, Jitter: 0},
		For:                5 * time.Minute,
		WorkerMemoryLimit:  8 << 30,
		BacklogLimit:       100000,
		BacklogFloor:       100,
		StaleAfter:         15 * time.Minute,
		CollectorDownAfter: 5 * time.Minute,
		OutlierMinBytes:    1 << 20,
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
}
