package app

import (
	"cmp"
	"context"
	"fmt"

	"github.com/flagwarden/flagwarden/collectors/caches"
	"github.com/flagwarden/flagwarden/collectors/celery"
	"github.com/flagwarden/flagwarden/collectors/pods"
	"github.com/flagwarden/flagwarden/collectors/promql"
	"github.com/flagwarden/flagwarden/collectors/teams"
	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/loop"
)

// wireCollectors builds one loop per configured source. Every replica runs them (they
// only read), and each loop is kept in a.loops so that the API and the collector-down
// detector see its health.
func (a *App) wireCollectors(ctx context.Context) error {
	cfg := a.cfg
	col := cfg.Collectors
	add := func(name string, timing config.Loop, pass func(context.Context) error) {
		l := loop.New(name, loopTiming(timing), pass, a.logger, a.loopMetrics)
		a.loops = append(a.loops, l)
		a.services = append(a.services, l)
	}

	celeryOpts := celery.OptionsFrom(cfg.Broker)
	celeryOpts.Now = a.now
	cc, err := celery.New(a.broker, celeryOpts, a.snapshots, a.series, a.registry, a.logger)
	if err != nil {
		return err
	}
	add("celery", col.Celery, cc.RunOnce)

	tc, err := teams.New(a.teamSource(), teams.Options{
		Now:          a.now,
		FullInterval: col.Teams.FullInterval,
		ChunkTeams:   col.Teams.ChunkTeams,
		// Leave a quarter of the pass for the changed teams and publishing.
		SweepBudget: col.Teams.Timeout * 3 / 4,
	}, a.snapshots, a.series, a.registry, a.logger)
	if err != nil {
		return err
	}
	add("teams", col.Teams.Loop, tc.RunOnce)

	var memory pods.MemoryReader
	if cfg.Prometheus.URL != "" {
		qs := make([]promql.Query, len(cfg.Prometheus.Queries))
		for i, q := range cfg.Prometheus.Queries {
			qs[i] = promql.Query{Name: q.Name, Expr: q.Query}
		}
		pc, err := promql.New(promql.Options{
			URL: cfg.Prometheus.URL.Value(), Queries: qs, PodMemoryQuery: cfg.Prometheus.PodMemoryQuery, Timeout: cfg.Prometheus.Timeout,
		}, a.series, a.registry, a.logger)
		if err != nil {
			return err
		}
		if len(qs) > 0 {
			add("promql", col.Pods, pc.RunOnce)
		}
		if cfg.Prometheus.PodMemoryQuery != "" {
			memory = pc
		}
	}

	if e := a.embedded; e != nil {
		// embedded mode: the given pods stand in for the informer (embedded.go).
		pc, err := pods.New(e.Pods, pods.Options{Subject: cfg.Kubernetes.Namespace, Recent: 2 * col.Pods.Interval,
			Memory: cmp.Or(memory, e.PodMemory), Now: a.now}, a.snapshots, a.series, a.registry, a.logger)
		if err != nil {
			return err
		}
		add("pods", col.Pods, pc.RunOnce)
	} else if k := cfg.Kubernetes; k.Enabled {
		client, err := pods.NewClient(k.InCluster, k.Kubeconfig)
		if err != nil {
			return fmt.Errorf("pods collector: %w", err)
		}
		inf, err := pods.NewInformer(client, k.Namespace, k.LabelSelector, 0)
		if err != nil {
			return fmt.Errorf("pods collector: %w", err)
		}
		a.services = append(a.services, inf) // before its loop: started first, stopped last
		pc, err := pods.New(inf, pods.Options{Subject: k.Namespace, Recent: 2 * col.Pods.Interval, Memory: memory},
			a.snapshots, a.series, a.registry, a.logger)
		if err != nil {
			return err
		}
		add("pods", col.Pods, pc.RunOnce)
	}

	// Not in embedded mode: the demo builds only the teams whose flags change (it has no
	// stale sweep), so its thousands of never-built teams would all read as missing.
	if (cfg.Rebuild.Enabled || cfg.Cache.WatchPostHog) && a.embedded == nil {
		kc, err := caches.New(a.cache, caches.Options{
			Layout:       cachekeys.Layout{Prefix: cfg.Cache.KeyPrefix, PostHog: cfg.Cache.Layout == "posthog"},
			Flagwarden:   cfg.Rebuild.Enabled,
			WatchPostHog: cfg.Cache.WatchPostHog,
			TTL:          cfg.Cache.TTL,
			StaleAfter:   cfg.Detectors.StaleAfter,
			Teams:        a.snapshots.Teams,
			Now:          a.now,
		}, a.snapshots, a.series, a.registry, a.logger)
		if err != nil {
			return err
		}
		add("caches", col.Caches, kc.RunOnce)
	}
	return nil
}
