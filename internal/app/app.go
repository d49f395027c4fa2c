// Package app wires flagwarden together: it opens connections, applies migrations,
// builds every component from the configuration, and runs them as services that start
// in order and stop in reverse within a bounded drain.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/leader"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/service"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/statedb"
	"github.com/flagwarden/flagwarden/rebuild"
	"github.com/flagwarden/flagwarden/rebuild/s3tier"
	"github.com/flagwarden/flagwarden/web"
)

// Options are what the command line hands to the app.
type Options struct {
	// Config is the loaded, validated configuration.
	Config config.Config
	// Logger is the process logger.
	Logger *slog.Logger
	// Registry receives every metric; nil creates one with the process and Go collectors.
	Registry *prometheus.Registry
	// Version is reported by /metrics and the replica table.
	Version string
	// ReplicaID names this replica; empty uses the hostname, the process id and the
	// start time. It must differ between runs: the builds of a replica id that stopped
	// heartbeating are rescued, and a container restarted in place keeps its hostname
	// and often its pid.
	ReplicaID string
	// Embedded, when set, runs without Postgres or Kubernetes (see embedded.go).
	Embedded *Embedded
}

// App is one running flagwarden process.
type App struct {
	cfg      config.Config
	logger   *slog.Logger
	registry *prometheus.Registry
	replica  string
	version  string

	statePool *pgxpool.Pool
	flagPool  *pgxpool.Pool
	broker    *redis.Client
	cache     *redis.Client

	series      *series.Store
	snapshots   *snapshot.Store
	loopMetrics *loop.Metrics
	loops       []*loop.Loop

	// findings is readable on every replica; the leader's detector pass writes it.
	findings detectors.FindingStore
	// embedded is set in embedded mode: no databases, this replica always leads, and
	// the wire functions take its sources (embedded.go). clock is the one clock of the
	// freshness path (build times, collectors, sweep, detectors, API): the wall clock,
	// or the embedded (simulated) one; now is its Now, for components taking a func.
	embedded *Embedded
	clock    clock.Clock
	now      func() time.Time
	// quarantines is the rebuild engine's quarantine list, set by wireRebuild when the
	// engine runs; nil (a nil interface, never a typed nil) when it is disabled.
	quarantines detectors.QuarantineSource
	// engine is the rebuild engine, set by wireRebuild; nil when rebuild.enabled is off.
	engine *rebuild.Engine
	// s3 is PostHog's S3 cache tier, nil unless cache.s3 is enabled.
	s3 *s3tier.Tier
	// mismatches is the cache verification, set by wireVerify; nil (a nil interface)
	// when verify.enabled is off.
	mismatches detectors.MismatchSource

	// services run on every replica, in this order; leaderOnly run on the leader.
	services   []service.Service
	leaderOnly []service.Service
	elector    *leader.Elector
	http       *web.Server
	ready      map[string]web.ReadyFunc
	routes     []func(*gin.Engine)
	closers    []func()

	group *service.Group
}

// New connects to the configured dependencies, applies migrations and wires every
// component. Nothing runs until Start.
func New(ctx context.Context, opts Options) (a *App, err error) {
	cfg := opts.Config
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector(),
			versioncollector.NewCollector("flagwarden"))
	}
	replica := opts.ReplicaID
	if replica == "" {
		host, _ := os.Hostname()
		replica = fmt.Sprintf("%s-%d-%x", host, os.Getpid(), time.Now().UnixMilli()&0xffffff)
	}
	a = &App{
		cfg: cfg, logger: opts.Logger, registry: reg, replica: replica, version: opts.Version,
		ready: map[string]web.ReadyFunc{}, clock: clock.Wall, now: clock.Wall.Now,
	}
	// close what was opened on failure; the named result is nil by then.
	opened := a
	defer func() {
		if err != nil {
			opened.close()
		}
	}()

	// Embedded mode opens no database: its sources stand in for the flag database and
	// SQLite for the state database (embedded.go).
	if opts.Embedded != nil {
		if err := a.useEmbedded(opts.Embedded); err != nil {
			return nil, err
		}
	} else if err := a.openDatabases(ctx); err != nil {
		return nil, err
	}
	if a.broker, err = redisClient(cfg.Broker.URL); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	a.closers = append(a.closers, func() { a.broker.Close() })
	if a.cache, err = redisClient(cfg.Cache.URL); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	a.closers = append(a.closers, func() { a.cache.Close() })
	if a.s3, err = NewS3Tier(ctx, cfg, reg); err != nil {
		return nil, err
	}

	a.ready["broker"] = func(ctx context.Context) error { return a.broker.Ping(ctx).Err() }
	a.ready["cache"] = func(ctx context.Context) error { return a.cache.Ping(ctx).Err() }

	a.series = series.New(seriesOptions(cfg.Collectors.Series), reg)
	a.snapshots = snapshot.NewStore()
	a.loopMetrics = loop.NewMetrics(reg)

	for _, wire := range []func(context.Context) error{a.wireCollectors, a.wireRebuild, a.wireVerify, a.wireDetectors, a.wireWeb} {
		if err := wire(ctx); err != nil {
			return nil, err
		}
	}

	if a.embedded != nil {
		// the only replica leads from the start: no election, no lock.
		a.services = append(a.services, a.leaderOnly...)
	} else if a.elector, err = leader.New(leader.Options{
		ConnString:    cfg.StateDatabase.URL.Value(),
		LockID:        cfg.Leader.LockID,
		RetryInterval: cfg.Leader.RetryInterval,
		Services:      a.leaderOnly,
		Logger:        a.logger,
		Registerer:    reg,
	}); err != nil {
		return nil, err
	}
	a.http = web.NewServer(web.Options{
		Listen:            cfg.HTTP.Listen,
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		Logger:            a.logger.With("component", "http"),
	}, web.NewRouter(web.Options{
		Gatherer: reg,
		Ready:    a.ready,
		Routes: func(r *gin.Engine) {
			for _, add := range a.routes {
				add(r)
			}
		},
	}))
	return a, nil
}

// openDatabases opens the state and flag databases and migrates the state database.
func (a *App) openDatabases(ctx context.Context) (err error) {
	cfg := a.cfg
	if a.statePool, err = OpenDatabase(ctx, cfg.StateDatabase); err != nil {
		return fmt.Errorf("state database: %w", err)
	}
	a.closers = append(a.closers, a.statePool.Close)
	if err := a.migrate(ctx); err != nil {
		return err
	}
	if cfg.FlagDatabase.URL == cfg.StateDatabase.URL {
		a.flagPool = a.statePool
	} else {
		if a.flagPool, err = OpenDatabase(ctx, cfg.FlagDatabase); err != nil {
			return fmt.Errorf("flag database: %w", err)
		}
		a.closers = append(a.closers, a.flagPool.Close)
	}
	a.ready["state_database"] = func(ctx context.Context) error { return a.statePool.Ping(ctx) }
	a.ready["flag_database"] = func(ctx context.Context) error { return a.flagPool.Ping(ctx) }
	return nil
}

func (a *App) migrate(ctx context.Context) error {
	applied, err := statedb.Migrate(ctx, a.statePool)
	if err != nil {
		return fmt.Errorf("migrate state database: %w", err)
	}
	if len(applied) > 0 {
		a.logger.Info("applied migrations", "versions", applied)
	}
	return a.migrateRebuild(ctx)
}

func redisClient(u config.URL) (*redis.Client, error) {
	opt, err := redis.ParseURL(u.Value())
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", u, err)
	}
	return redis.NewClient(opt), nil
}

// Start starts every service: the per-replica ones, then the leader elector (which runs
// the leader-only services while this replica leads), then the HTTP server last so that
// nothing is served before the parts behind it run.
func (a *App) Start(ctx context.Context) error {
	a.group = service.NewGroup(a.logger)
	all := append([]service.Service{}, a.services...)
	if a.elector != nil {
		all = append(all, a.elector)
	}
	all = append(all, a.http)
	if a.statePool != nil { // embedded mode has no replica table
		all = append(all, service.NewFunc("heartbeat", a.logger, a.heartbeats))
	}
	if err := a.group.Start(ctx, all...); err != nil {
		return err
	}
	a.logger.Info("flagwarden started", "addr", a.http.Addr(), "replica", a.replica)
	return nil
}

// Stop stops every service in reverse order within ctx and closes connections. It is
// idempotent.
func (a *App) Stop(ctx context.Context) error {
	var err error
	if a.group != nil {
		// A service whose Stop ignores its context must not hold the process past the
		// drain: stop in the background and give up once ctx ends.
		done := make(chan error, 1)
		go func() { done <- a.group.Stop(ctx) }()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = fmt.Errorf("services still stopping when the drain ended: %w", ctx.Err())
		}
	}
	a.close()
	return err
}

func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Addr is the HTTP listen address once started.
func (a *App) Addr() string { return a.http.Addr() }

// IsLeader reports whether this replica runs the leader-only services now.
func (a *App) IsLeader() bool { return a.elector == nil || a.elector.IsLeader() }

// heartbeats records this replica, and whether it leads, in the replicas table now and
// then every few leader retry intervals, so that last_seen tells which replicas are
// alive. Best effort: a failed write is logged and tried again on the next tick.
func (a *App) heartbeats(ctx context.Context) error {
	tick := time.NewTicker(a.heartbeatEvery())
	defer tick.Stop()
	for {
		_, err := a.statePool.Exec(ctx, `INSERT INTO flagwarden_replicas (id, hostname, version, started_at, last_seen, is_leader)
			VALUES ($1, $2, $3, now(), now(), $4)
			ON CONFLICT (id) DO UPDATE SET last_seen = now(), version = EXCLUDED.version, is_leader = EXCLUDED.is_leader`,
			a.replica, hostname(), a.version, a.IsLeader())
		if err != nil && ctx.Err() == nil {
			a.logger.Warn("recording replica failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// heartbeatEvery is how often this replica records itself as alive.
func (a *App) heartbeatEvery() time.Duration { return 5 * a.cfg.Leader.RetryInterval }

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// Run starts the app and blocks until ctx is cancelled (SIGINT/SIGTERM), then stops it
// within the configured drain timeout.
func Run(ctx context.Context, opts Options) error {
	a, err := New(ctx, opts)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		a.close()
		return err
	}
	<-ctx.Done()
	opts.Logger.Info("shutting down", "drain_timeout", opts.Config.Shutdown.DrainTimeout)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.Config.Shutdown.DrainTimeout)
	defer cancel()
	if err := a.Stop(stopCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if errors.Is(stopCtx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("shutdown exceeded drain timeout %s", opts.Config.Shutdown.DrainTimeout)
	}
	return nil
}
