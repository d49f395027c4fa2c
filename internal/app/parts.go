package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/collectors/caches"
	"github.com/flagwarden/flagwarden/collectors/celery"
	"github.com/flagwarden/flagwarden/collectors/pods"
	"github.com/flagwarden/flagwarden/collectors/promql"
	"github.com/flagwarden/flagwarden/collectors/teams"
	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/replay"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/statedb"
	"github.com/flagwarden/flagwarden/rebuild"
)

// The one-shot commands (inspect, rebuild, verify, bench) take their components from
// the constructors in this file, and serve's wiring builds its own with the same
// ones: a command and the service never disagree on an option read from the
// configuration.

// Sinks is where a collector publishes and how it tells time: the app's snapshot
// store and series for serve, nothing for a one-shot collection (a nil store or series
// is skipped by the collectors).
type Sinks struct {
	Snapshots *snapshot.Store
	Series    *series.Store
	// Registry receives the component's metrics; nil gives it a registry of its own.
	Registry prometheus.Registerer
	// Logger is the component's logger; nil discards.
	Logger *slog.Logger
	// Clock is the clock the component judges and stamps by; nil is the wall clock.
	Clock clock.Clock
}

func (s Sinks) registry() prometheus.Registerer {
	if s.Registry == nil {
		return prometheus.NewRegistry()
	}
	return s.Registry
}

func (s Sinks) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// CacheLayout is the cache key layout cache.layout and cache.key_prefix describe.
func CacheLayout(cfg config.Config) cachekeys.Layout {
	return cachekeys.Layout{Prefix: cfg.Cache.KeyPrefix, PostHog: cfg.Cache.Layout == "posthog"}
}

// BuilderOptions is the streaming build rebuild.page_size, rebuild.on_malformed and
// cache.posthog_contract describe, reporting to progress (may be nil).
func BuilderOptions(cfg config.Config, progress func(rebuild.BuildProgress)) rebuild.BuilderOptions {
	return rebuild.BuilderOptions{
		PageSize: cfg.Rebuild.PageSize, FailOnMalformed: cfg.Rebuild.OnMalformed == "fail",
		Contract: rebuild.Contract(cfg.Cache.PostHogContract), Progress: progress,
		PredictionCacheBytes: cmp.Or(int64(cfg.Rebuild.PredictionCache), -1), // 0 keeps none
	}
}

// SharedPredictions is the store rebuild.shared_prediction_ttl describes in the cache
// Redis, or nil when it is 0.
func SharedPredictions(cfg config.Config, rdb redis.UniversalClient) rebuild.PredictionStore {
	if cfg.Rebuild.SharedPredictionTTL <= 0 || rdb == nil {
		return nil
	}
	return rebuild.NewRedisPredictions(rdb, CacheLayout(cfg), cfg.Rebuild.SharedPredictionTTL)
}

// OpenDatabase connects a pool to the database a state_database or flag_database
// section describes.
func OpenDatabase(ctx context.Context, db config.Database) (*pgxpool.Pool, error) {
	return statedb.Open(ctx, databaseOptions(db))
}

// NewCeleryCollector measures the broker's queues as broker.* describes.
func NewCeleryCollector(cfg config.Config, broker redis.UniversalClient, s Sinks) (*celery.Collector, error) {
	opts := celeryOptions(cfg.Broker)
	opts.Clock = s.Clock
	return celery.New(broker, opts, s.Snapshots, s.Series, s.registry(), s.logger())
}

// NewTeamsCollector measures team sizes from src as collectors.teams describes.
func NewTeamsCollector(cfg config.Config, src teams.Source, s Sinks) (*teams.Collector, error) {
	t := cfg.Collectors.Teams
	return teams.New(src, teams.Options{
		Clock:        s.Clock,
		FullInterval: t.FullInterval,
		ChunkTeams:   t.ChunkTeams,
		// Leave a quarter of the pass for the changed teams and publishing.
		SweepBudget: t.Timeout * 3 / 4,
	}, s.Snapshots, s.Series, s.registry(), s.logger())
}

// NewFlagDBTeams is the team-size source on the flag database.
func NewFlagDBTeams(cfg config.Config, pool *pgxpool.Pool) teams.Source {
	return teams.NewPostgres(pool, cfg.FlagDatabase.StatementTimeout)
}

// NewPromQL is the PromQL source prometheus.* describes, or nil when prometheus.url is
// not set.
func NewPromQL(cfg config.Config, s Sinks) (*promql.Collector, error) {
	p := cfg.Prometheus
	if p.URL == "" {
		return nil, nil
	}
	qs := make([]promql.Query, len(p.Queries))
	for i, q := range p.Queries {
		qs[i] = promql.Query{Name: q.Name, Expr: q.Query}
	}
	return promql.New(promql.Options{
		URL: p.URL.Value(), Queries: qs, PodMemoryQuery: p.PodMemoryQuery, Timeout: p.Timeout,
	}, s.Series, s.registry(), s.logger())
}

// PodMemory is the pods' working-set source: pc when prometheus.pod_memory_query is
// set, else nil (a nil interface, never a typed nil).
func PodMemory(cfg config.Config, pc *promql.Collector) pods.MemoryReader {
	if pc == nil || cfg.Prometheus.PodMemoryQuery == "" {
		return nil
	}
	return pc
}

// NewPodInformer watches the worker pods kubernetes.* selects. The caller starts and
// stops it.
func NewPodInformer(cfg config.Config) (*pods.Informer, error) {
	k := cfg.Kubernetes
	client, err := pods.NewClient(k.InCluster, k.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("pods collector: %w", err)
	}
	inf, err := pods.NewInformer(client, k.Namespace, k.LabelSelector, 0)
	if err != nil {
		return nil, fmt.Errorf("pods collector: %w", err)
	}
	return inf, nil
}

// NewPodsCollector summarises the pods lister lists, with working-set usage from
// memory (may be nil).
func NewPodsCollector(cfg config.Config, lister pods.Lister, memory pods.MemoryReader, s Sinks) (*pods.Collector, error) {
	return pods.New(lister, pods.Options{
		Subject: cfg.Kubernetes.Namespace, Recent: 2 * cfg.Collectors.Pods.Interval, Memory: memory, Clock: s.Clock,
	}, s.Snapshots, s.Series, s.registry(), s.logger())
}

// NewCachesCollector judges the freshness of the caches in rdb against the teams'
// newest changes.
func NewCachesCollector(cfg config.Config, rdb redis.UniversalClient, teamSizes func() snapshot.Teams, s Sinks) (*caches.Collector, error) {
	return caches.New(rdb, caches.Options{
		Layout:       CacheLayout(cfg),
		Flagwarden:   cfg.Rebuild.Enabled,
		WatchPostHog: cfg.Cache.WatchPostHog,
		TTL:          cfg.Cache.TTL,
		StaleAfter:   cfg.Detectors.StaleAfter,
		Teams:        teamSizes,
		Clock:        s.Clock,
	}, s.Snapshots, s.Series, s.registry(), s.logger())
}

// EngineOptions is the rebuild engine rebuild.* describes, building from src and
// publishing through pub.
func EngineOptions(cfg config.Config, src RebuildSource, pub *rebuild.Publisher, s Sinks) rebuild.Options {
	r := cfg.Rebuild
	return rebuild.Options{
		Source: src, Sizes: src, Publisher: pub,
		Builder:      BuilderOptions(cfg, nil),
		SmallWorkers: r.Workers.Small, LargeWorkers: r.Workers.Large, QuarantineWorkers: r.Workers.Quarantine,
		LargeTeamBytes: int64(r.LargeTeamBytes), HardLimitBytes: int64(r.HardLimitBytes),
		QuarantineAfterFailures: r.QuarantineAfterFailures, QuarantineHold: r.QuarantineMode == "hold",
		MemoryBudget: int64(r.MemoryBudget), GoMemoryLimit: int64(r.GoMemoryLimit),
		BuildTimeout: r.BuildTimeout, MaxAttempts: r.MaxAttempts,
		CoalesceDelay: r.CoalesceDelay, QuarantineCacheTTL: r.QuarantineCacheTTL,
		Logger: s.Logger, Registerer: s.Registry,
	}
}

// ReplayPolicy is flagwarden as cfg runs it, for the incident replay: the detectors'
// thresholds, the rebuild engine's lanes and limits, the consumer's queue and the
// series bounds.
func ReplayPolicy(cfg config.Config) replay.Policy {
	return replay.Policy{
		Detectors:      detectorOptions(cfg),
		DetectInterval: cfg.Detectors.Interval,
		Rebuild:        EngineOptions(cfg, nil, nil, Sinks{}),
		Queue:          cfg.Rebuild.CeleryConsumer.Queue,
		Series:         seriesOptions(cfg.Collectors.Series),
	}
}

// NewPostgresEngine is the rebuild engine on a Postgres pool whose River migrations
// are applied (rebuild.MigratePostgres); opts usually come from EngineOptions.
func NewPostgresEngine(pool *pgxpool.Pool, opts rebuild.Options) (*rebuild.Engine, error) {
	e, err := rebuild.NewPostgres(pool, opts)
	if err != nil {
		return nil, fmt.Errorf("rebuild engine: %w", err)
	}
	return e, nil
}

// NewFlagSource is the rebuild engine's reader of the flag database.
func NewFlagSource(pool *pgxpool.Pool) *rebuild.PGSource { return rebuild.NewPGSource(pool, nil) }
