package app

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
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
	src := a.rebuildSource()                                 // the flag database, or the embedded source (embedded.go)
	pub := NewPublisher(a.cfg, a.cache, Mirror(a.s3), a.now) // the clock the cache-freshness collector judges by
	e, err := a.newRebuildEngine(ctx, rebuild.Options{       // Postgres, or SQLite when embedded
		Source: src, Sizes: src, Publisher: pub,
		Builder: rebuild.BuilderOptions{PageSize: r.PageSize, FailOnMalformed: r.OnMalformed == "fail",
			Contract: rebuild.Contract(a.cfg.Cache.PostHogContract)},
		SmallWorkers: r.Workers.Small, LargeWorkers: r.Workers.Large, QuarantineWorkers: r.Workers.Quarantine,
		LargeTeamBytes: int64(r.LargeTeamBytes), HardLimitBytes: int64(r.HardLimitBytes),
		QuarantineAfterFailures: r.QuarantineAfterFailures, QuarantineHold: r.QuarantineMode == "hold",
		MemoryBudget: int64(r.MemoryBudget), GoMemoryLimit: int64(r.GoMemoryLimit),
		BuildTimeout: r.BuildTimeout, MaxAttempts: r.MaxAttempts,
		CoalesceDelay: r.CoalesceDelay, QuarantineCacheTTL: r.QuarantineCacheTTL,
		Logger: logger, Registerer: a.registry,
	})
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
			TeamKwarg: b.TeamArg.Kwarg, TeamPosition: b.TeamArg.Position, Logger: logger,
		})
		if err != nil {
			return fmt.Errorf("rebuild celery consumer: %w", err)
		}
		a.services = append(a.services, c)
	}
	if r.SweepInterval > 0 {
		sweep := rebuild.NewSweep(src, a.cache, pub.Layout(), e)
		l := loop.New("rebuild_sweep", loop.Timing{Interval: r.SweepInterval, Timeout: r.SweepInterval * 9 / 10, Jitter: 0.1},
			func(ctx context.Context) error {
				n, err := sweep.RunOnce(ctx)
				if n > 0 {
					logger.InfoContext(ctx, "sweep requested rebuilds", "teams", n)
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
// mirror, PostHog's S3 tier, when not nil) and stamping builds with now (nil: the wall
// clock). serve, the demo and the rebuild command all publish through it, so they
// write the same keys and encoding.
func NewPublisher(cfg config.Config, rdb redis.UniversalClient, mirror rebuild.Mirror, now func() time.Time) *rebuild.Publisher {
	r := cfg.Rebuild
	return rebuild.NewPublisher(rdb, rebuild.PublisherOptions{
		Layout:     cachekeys.Layout{Prefix: cfg.Cache.KeyPrefix, PostHog: cfg.Cache.Layout == "posthog"},
		ChunkBytes: int(r.ChunkBytes), MaxValueBytes: int64(r.MaxValueBytes),
		TempTTL: r.BuildTimeout + 10*time.Minute, PostHogTTL: cfg.Cache.TTL,
		Compress: cfg.Cache.Compress,
		Mirror:   mirror,
		Now:      now,
	})
}
