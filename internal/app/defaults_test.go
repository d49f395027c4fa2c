package app

import (
	"fmt"
	"testing"

	"github.com/flagwarden/flagwarden/collectors/caches"
	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/notifier"
	"github.com/flagwarden/flagwarden/rebuild"
	"github.com/flagwarden/flagwarden/web"
)

// sameDefault is one setting both the config file and a component default: the value
// the config's default turns into, and the one the component uses when it is unset.
type sameDefault struct {
	key                   string
	fromConfig, component any
}

func checkSameDefaults(t *testing.T, cases []sameDefault) {
	t.Helper()
	for _, c := range cases {
		if fmt.Sprint(c.fromConfig) != fmt.Sprint(c.component) {
			t.Errorf("%s: the config's default gives %v, the component's default is %v", c.key, c.fromConfig, c.component)
		}
	}
}

// The rebuild section's defaults and the engine's are one set of values: serve, which
// passes the config through, and a caller that leaves Options unset must run the same
// engine.
func TestRebuildConfigDefaultsAreTheEngines(t *testing.T) {
	cfg := config.Default()
	got, want := EngineOptions(cfg, nil, nil, Sinks{}), rebuild.DefaultOptions()
	checkSameDefaults(t, []sameDefault{
		{"rebuild.workers.small", got.SmallWorkers, want.SmallWorkers},
		{"rebuild.workers.large", got.LargeWorkers, want.LargeWorkers},
		{"rebuild.workers.quarantine", got.QuarantineWorkers, want.QuarantineWorkers},
		{"rebuild.large_team_bytes", got.LargeTeamBytes, want.LargeTeamBytes},
		{"rebuild.hard_limit_bytes", got.HardLimitBytes, want.HardLimitBytes},
		{"rebuild.quarantine_after_failures", got.QuarantineAfterFailures, want.QuarantineAfterFailures},
		{"rebuild.quarantine_mode", got.QuarantineHold, want.QuarantineHold},
		{"rebuild.memory_budget", got.MemoryBudget, want.MemoryBudget},
		{"rebuild.build_timeout", got.BuildTimeout, want.BuildTimeout},
		{"rebuild.max_attempts", got.MaxAttempts, want.MaxAttempts},
		{"rebuild.coalesce_delay", got.CoalesceDelay, want.CoalesceDelay},
		{"rebuild.quarantine_cache_ttl", got.QuarantineCacheTTL, want.QuarantineCacheTTL},
		{"rebuild.on_malformed", got.Builder.FailOnMalformed, rebuild.BuilderOptions{}.FailOnMalformed},
	})
	pub, wantPub := publisherOptions(cfg, nil, nil), rebuild.DefaultPublisherOptions()
	checkSameDefaults(t, []sameDefault{
		{"rebuild.chunk_bytes", pub.ChunkBytes, wantPub.ChunkBytes},
		{"rebuild.max_value_bytes", pub.MaxValueBytes, wantPub.MaxValueBytes},
	})
}

// The detectors section's defaults and the detectors' own are one set of values, so
// that the replay, the tests and anything else building detectors without a config
// judge as serve does.
func TestDetectorConfigDefaultsAreTheDetectors(t *testing.T) {
	got, want := detectorOptions(config.Default()), detectors.DefaultEngineOptions()
	checkSameDefaults(t, []sameDefault{
		{"detectors.backlog_limit", got.Backlog.Limit, want.Backlog.Limit},
		{"detectors.backlog_floor", got.Backlog.Floor, want.Backlog.Floor},
		{"detectors.backlog_short_window", got.Backlog.ShortWindow, want.Backlog.ShortWindow},
		{"detectors.backlog_long_window", got.Backlog.LongWindow, want.Backlog.LongWindow},
		{"detectors.stall_after", got.Backlog.StallAfter, want.Backlog.StallAfter},
		{"detectors.for", got.Backlog.For, want.Backlog.For},
		{"detectors.backlog_weeks", got.Backlog.Weeks, want.Backlog.Weeks},
		{"detectors.backlog_timezone", got.Backlog.Location, want.Backlog.Location},
		{"detectors.oom_window", got.Worker.OOMWindow, want.Worker.OOMWindow},
		{"detectors.oom_keep_firing", got.Worker.OOMKeepFiring, want.Worker.OOMKeepFiring},
		{"detectors.memory_near_limit", got.Worker.MemoryNearLimit, want.Worker.MemoryNearLimit},
		{"detectors.growth_min_days", got.Growth.MinDays, want.Growth.MinDays},
		{"detectors.findings_retention", got.FindingsRetention, want.FindingsRetention},
	})
}

// The API and the caches collector judge by detector thresholds too (the queue trend's
// ETA, the stale mark, the naive-build memory): unset, they must match the config's.
func TestThresholdsSharedWithTheDetectorsHaveTheirDefaults(t *testing.T) {
	d := config.Default().Detectors
	api, cc := web.DefaultAPIOptions(), caches.DefaultOptions()
	checkSameDefaults(t, []sameDefault{
		{"detectors.backlog_limit (API)", d.BacklogLimit, api.BacklogLimit},
		{"detectors.stale_after (API)", d.StaleAfter, api.StaleAfter},
		{"detectors.worker_memory_limit (API)", int64(d.WorkerMemoryLimit), api.WorkerMemoryLimit},
		{"detectors.stale_after (caches collector)", d.StaleAfter, cc.StaleAfter},
	})
}

// The alertmanager section's defaults and the notifier's are one set of values.
func TestAlertmanagerConfigDefaultsAreTheNotifiers(t *testing.T) {
	a, n := config.Default().Alertmanager, notifier.DefaultOptions()
	checkSameDefaults(t, []sameDefault{
		{"alertmanager.timeout", a.Timeout, n.Timeout},
		{"alertmanager.resend_interval", a.ResendInterval, n.ResendInterval},
		{"alertmanager.resolved_retention", a.ResolvedRetention, n.ResolvedRetention},
		{"alertmanager.queue_capacity", a.QueueCapacity, n.QueueCapacity},
		{"alertmanager.batch_size", a.BatchSize, n.BatchSize},
	})
}
