package app

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/rebuild"
)

// wireRebuild builds the rebuild engine (workers on every replica), its intake (NOTIFY
// listener and Celery consumer, per config) and the stale sweep (leader only).
func (a *App) wireRebuild(ctx context.Context) error {
	r := a.cfg.Rebuild
	if !r.Enabled {
		return nil
	}
	logger := a.logger.With("component", "rebuild")
	src := a.rebuildSource()                                   // the flag database, or the embedded source (embedded.go)
	pub := NewPublisher(a.cfg, a.cache, Mirror(a.s3), a.clock) // the clock the cache-freshness collector judges by
	opts := EngineOptions(a.cfg, src, pub, Sinks{Logger: logger, Registry: a.registry})
	opts.Builder.Predictions = SharedPredictions(a.cfg, a.cache)
	// Builds run under the replica's id; those of replicas that stopped heartbeating
	// are rescued.
	opts.ReplicaID, opts.RescueDeadAfter = a.replica, a.deadReplicaAfter()
	e, err := a.newRebuildEngine(ctx, opts) // Postgres, or SQLite when embedded
	if err != nil {
		return fmt.Errorf("rebuild engine: %w", err)
	}
	a.engine = e
	a.quarantines = e
	a.services = append(a.services, e)

	if r.Notify.Enabled {
		l, err := rebuild.NewListener(a.flagPool, e, r.Notify.Channel, logger)
		if err != nil {
			return fmt.Errorf("rebuild notify: %w", err)
		}
		a.services = append(a.services, l)
	}
	if r.CeleryConsumer.Enabled {
		b := a.cfg.Broker
		c, err := rebuild.NewCeleryConsumer(a.broker, e, rebuild.CeleryOptions{
			Queue: r.CeleryConsumer.Queue, Tasks: r.CeleryConsumer.Tasks,
			Sep: b.Sep, PrioritySteps: b.PrioritySteps, KeyPrefix: b.GlobalKeyPrefix,
			TeamKwarg: b.TeamArg.Kwarg, TeamPosition: b.TeamArg.Position, VisibilityTimeout: b.VisibilityTimeout,
			Clock: a.clock, Logger: logger, Registerer: a.registry,
		})
		if err != nil {
			return fmt.Errorf("rebuild celery consumer: %w", err)
		}
		a.services = append(a.services, c)
	}
	if r.SweepInterval > 0 {
		sweep := rebuild.NewSweep(src, a.cache, pub.Layout(), e)
		// The team list and the last cache look find caches that vanished for teams
		// whose data did not change (a cache Redis that restarted empty).
		sweep.Teams, sweep.Caches, sweep.Clock = a.snapshots.Teams, a.snapshots.Caches, a.clock
		sweep.Quarantined = e.Quarantined
		l := loop.New("rebuild_sweep", loop.Timing{Interval: r.SweepInterval, Timeout: r.SweepInterval * 9 / 10, Jitter: 0.1},
			func(ctx context.Context) error {
				res, err := sweep.Run(ctx)
				if res.Requested() > 0 {
					logger.InfoContext(ctx, "sweep requested rebuilds", "teams", res.Requested(),
						"changed", res.Changed, "missing", res.Missing, "older", res.Older)
				}
				return err
			}, logger, a.loopMetrics)
		a.loops = append(a.loops, l)
		a.leaderOnly = append(a.leaderOnly, l)
	}
	return nil
}

// migrateRebuild applies River's migrations to the state database.
func (a *App) migrateRebuild(ctx context.Context) error {
	if err := rebuild.MigratePostgres(ctx, a.statePool); err != nil {
		return fmt.Errorf("migrate rebuild jobs: %w", err)
	}
	return nil
}

// NewPublisher is the publisher the configuration describes, writing to rdb (and to
// mirror, PostHog's S3 tier, when not nil) and stamping builds with clk (nil: the wall
// clock). serve, the demo and the rebuild command all publish through it, so they
// write the same keys and encoding.
func NewPublisher(cfg config.Config, rdb redis.UniversalClient, mirror rebuild.Mirror, clk clock.Clock) *rebuild.Publisher {
	return rebuild.NewPublisher(rdb, publisherOptions(cfg, mirror, clk))
}

// publisherOptions are the publisher's settings cache.* and rebuild.* describe.
func publisherOptions(cfg config.Config, mirror rebuild.Mirror, clk clock.Clock) rebuild.PublisherOptions {
	r := cfg.Rebuild
	return rebuild.PublisherOptions{
		Layout:     CacheLayout(cfg),
		ChunkBytes: int(r.ChunkBytes), MaxValueBytes: int64(r.MaxValueBytes),
		TempTTL: r.BuildTimeout + 10*time.Minute, PostHogTTL: cfg.Cache.TTL,
		Compress: cfg.Cache.Compress,
		Mirror:   mirror,
		Clock:    clk,
	}
}

// deadReplicaAfter is how long a replica may go without a heartbeat before the builds
// it was running are rescued: three missed heartbeats. Embedded mode has no replica
// table and one process, so River's own rescue is all it needs.
func (a *App) deadReplicaAfter() time.Duration {
	if a.embedded != nil {
		return 0
	}
	return 3 * a.heartbeatEvery()
}
