package config

import (
	"time"

	rebuilddefaults "github.com/flagwarden/flagwarden/rebuild/defaults"
)

// Rebuild configures the cache rebuild engine.
type Rebuild struct {
	// Enabled runs the engine in this process (workers and intake).
	Enabled bool `yaml:"enabled"`
	// GoMemoryLimit is the process's soft memory limit (runtime/debug.SetMemoryLimit).
	GoMemoryLimit ByteSize `yaml:"go_memory_limit"`
	// MemoryBudget is shared by concurrent builds in one process; a build whose estimate
	// does not fit waits.
	MemoryBudget ByteSize `yaml:"memory_budget"`
	// LargeTeamBytes routes teams whose estimated payload is at least this to the large lane.
	LargeTeamBytes ByteSize `yaml:"large_team_bytes"`
	// HardLimitBytes quarantines teams whose estimated payload is at least this.
	HardLimitBytes ByteSize `yaml:"hard_limit_bytes"`
	// QuarantineAfterFailures quarantines a team after this many failed builds in a row.
	QuarantineAfterFailures int `yaml:"quarantine_after_failures"`
	// QuarantineMode is "hold" (builds wait until release) or "serial" (one at a time).
	QuarantineMode string `yaml:"quarantine_mode"`
	// Workers per lane.
	Workers LaneWorkers `yaml:"workers"`
	// BuildTimeout bounds one build.
	BuildTimeout time.Duration `yaml:"build_timeout"`
	// MaxAttempts is how often a failing build is tried.
	MaxAttempts int `yaml:"max_attempts"`
	// PageSize is how many flags one read fetches.
	PageSize int `yaml:"page_size"`
	// PredictionCache bounds the teams' last build indexes a process keeps, from which
	// their next builds predict instead of extracting every flag's references; 0 keeps
	// none.
	PredictionCache ByteSize `yaml:"prediction_cache"`
	// SharedPredictionTTL keeps each team's last build index in the cache Redis for
	// this long, so that a build on any replica, or after a restart, predicts from it
	// too; 0 shares none.
	SharedPredictionTTL time.Duration `yaml:"shared_prediction_ttl"`
	// ChunkBytes is the size of one write to Redis.
	ChunkBytes ByteSize `yaml:"chunk_bytes"`
	// MaxValueBytes is the largest single Redis value written; a larger payload is
	// stored as chunk keys plus a manifest (Redis refuses values over 512 MB).
	MaxValueBytes ByteSize `yaml:"max_value_bytes"`
	// OnMalformed is "skip" (leave the flag out and report it) or "fail" (fail the build).
	OnMalformed string `yaml:"on_malformed"`
	// CeleryConsumer takes cache-update tasks off a broker queue.
	CeleryConsumer CeleryConsumer `yaml:"celery_consumer"`
	// Notify listens for Postgres NOTIFY from the flag database's triggers.
	Notify Notify `yaml:"notify"`
	// SweepInterval is how often caches older than their data are found and rebuilt; 0 disables.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// CoalesceDelay is how long a team's new job, and the one follow-up after a build
	// that was requested during it, wait before they may start; requests for the team
	// meanwhile join the job in memory without a database round trip. At most 5s.
	CoalesceDelay time.Duration `yaml:"coalesce_delay"`
	// QuarantineCacheTTL is how long a process trusts its copy of the quarantined teams
	// when routing requests (its own quarantines and releases apply at once; every build
	// checks the database before it starts).
	QuarantineCacheTTL time.Duration `yaml:"quarantine_cache_ttl"`
}

// LaneWorkers is how many builds run at once in each lane in one process.
type LaneWorkers struct {
	Small      int `yaml:"small"`
	Large      int `yaml:"large"`
	Quarantine int `yaml:"quarantine"`
}

// CeleryConsumer takes update_team_flags_cache and update_team_service_flags_cache tasks
// from a broker queue, the way a kombu consumer does.
type CeleryConsumer struct {
	// Enabled turns the consumer on.
	Enabled bool `yaml:"enabled"`
	// Queue is the broker queue the platform routes the tasks to.
	Queue string `yaml:"queue"`
	// Tasks are the task names taken; others are left on the queue's dead-letter list.
	Tasks []string `yaml:"tasks"`
}

// Notify listens on a Postgres channel fed by the shipped triggers.
type Notify struct {
	// Enabled turns the listener on.
	Enabled bool `yaml:"enabled"`
	// Channel is the NOTIFY channel name.
	Channel string `yaml:"channel"`
}

func defaultRebuild() Rebuild {
	return Rebuild{
		Enabled:                 true,
		MemoryBudget:            rebuilddefaults.MemoryBudget,
		LargeTeamBytes:          rebuilddefaults.LargeTeamBytes,
		HardLimitBytes:          rebuilddefaults.HardLimitBytes,
		QuarantineAfterFailures: rebuilddefaults.QuarantineAfterFailures,
		QuarantineMode:          "serial",
		Workers: LaneWorkers{
			Small: rebuilddefaults.SmallWorkers, Large: rebuilddefaults.LargeWorkers, Quarantine: rebuilddefaults.QuarantineWorkers,
		},
		BuildTimeout:        rebuilddefaults.BuildTimeout,
		MaxAttempts:         rebuilddefaults.MaxAttempts,
		PageSize:            500,
		PredictionCache:     rebuilddefaults.PredictionCache,
		SharedPredictionTTL: rebuilddefaults.SharedPredictionTTL,
		ChunkBytes:          rebuilddefaults.ChunkBytes,
		MaxValueBytes:       rebuilddefaults.MaxValueBytes,
		OnMalformed:         "skip",
		CeleryConsumer: CeleryConsumer{
			Queue: "flagwarden",
			Tasks: []string{"posthog.tasks.feature_flags.update_team_flags_cache", "posthog.tasks.feature_flags.update_team_service_flags_cache"},
		},
		Notify:             Notify{Channel: "flagwarden_flag_change"},
		SweepInterval:      5 * time.Minute,
		CoalesceDelay:      rebuilddefaults.CoalesceDelay,
		QuarantineCacheTTL: rebuilddefaults.QuarantineCacheTTL,
	}
}

func (r Rebuild) validate(p *problems) {
	if r.GoMemoryLimit < 0 {
		p.add("rebuild.go_memory_limit", "must not be negative")
	}
	p.atLeast("rebuild.memory_budget", int64(r.MemoryBudget), 1<<20)
	if r.GoMemoryLimit > 0 && r.MemoryBudget > r.GoMemoryLimit {
		p.add("rebuild.memory_budget", "must not exceed rebuild.go_memory_limit (%s), got %s", r.GoMemoryLimit, r.MemoryBudget)
	}
	p.atLeast("rebuild.large_team_bytes", int64(r.LargeTeamBytes), 1)
	if r.HardLimitBytes <= r.LargeTeamBytes {
		p.add("rebuild.hard_limit_bytes", "must exceed rebuild.large_team_bytes (%s), got %s", r.LargeTeamBytes, r.HardLimitBytes)
	}
	p.atLeast("rebuild.quarantine_after_failures", int64(r.QuarantineAfterFailures), 1)
	p.oneOf("rebuild.quarantine_mode", r.QuarantineMode, "hold", "serial")
	p.atLeast("rebuild.workers.small", int64(r.Workers.Small), 1)
	p.atLeast("rebuild.workers.large", int64(r.Workers.Large), 1)
	p.atLeast("rebuild.workers.quarantine", int64(r.Workers.Quarantine), 1)
	p.positive("rebuild.build_timeout", r.BuildTimeout)
	p.atLeast("rebuild.max_attempts", int64(r.MaxAttempts), 1)
	p.atLeast("rebuild.page_size", int64(r.PageSize), 1)
	p.atLeast("rebuild.prediction_cache", int64(r.PredictionCache), 0)
	if r.SharedPredictionTTL < 0 {
		p.add("rebuild.shared_prediction_ttl", "must not be negative, got %s", r.SharedPredictionTTL)
	}
	p.atLeast("rebuild.chunk_bytes", int64(r.ChunkBytes), 1024)
	if r.MaxValueBytes < r.ChunkBytes || r.MaxValueBytes > 512<<20 {
		p.add("rebuild.max_value_bytes", "must be between rebuild.chunk_bytes (%s) and 512MiB, got %s", r.ChunkBytes, r.MaxValueBytes)
	}
	p.oneOf("rebuild.on_malformed", r.OnMalformed, "skip", "fail")
	if r.CeleryConsumer.Enabled {
		p.required("rebuild.celery_consumer.queue", r.CeleryConsumer.Queue)
		if len(r.CeleryConsumer.Tasks) == 0 {
			p.add("rebuild.celery_consumer.tasks", "must list at least one task name")
		}
	}
	if r.Notify.Enabled {
		p.required("rebuild.notify.channel", r.Notify.Channel)
	}
	if r.SweepInterval < 0 {
		p.add("rebuild.sweep_interval", "must not be negative, got %s", r.SweepInterval)
	}
	if r.CoalesceDelay <= 0 || r.CoalesceDelay > 5*time.Second {
		p.add("rebuild.coalesce_delay", "must be more than 0 and at most 5s, got %s", r.CoalesceDelay)
	}
	p.positive("rebuild.quarantine_cache_ttl", r.QuarantineCacheTTL)
}
