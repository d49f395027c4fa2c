package app

import (
	"context"
	"fmt"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/notifier"
	"github.com/flagwarden/flagwarden/internal/service"
)

// wireDetectors builds the findings store (read by every replica's API), the
// Alertmanager notifier and the detector pass; the pass and the notifier run only on
// the leader, so that one replica evaluates and pages.
func (a *App) wireDetectors(ctx context.Context) error {
	cfg := a.cfg
	d := cfg.Detectors
	a.findings = a.newFindingStore() // Postgres, or in memory when embedded

	var pager detectors.Pager
	if len(cfg.Alertmanager.URLs) > 0 {
		n, err := notifier.New(notifier.Options{
			URLs:              cfg.Alertmanager.URLs,
			Username:          cfg.Alertmanager.Username,
			Password:          cfg.Alertmanager.Password.Value(),
			BearerToken:       cfg.Alertmanager.BearerToken.Value(),
			Timeout:           cfg.Alertmanager.Timeout,
			ResendInterval:    cfg.Alertmanager.ResendInterval,
			ResolvedRetention: cfg.Alertmanager.ResolvedRetention,
			QueueCapacity:     cfg.Alertmanager.QueueCapacity,
			BatchSize:         cfg.Alertmanager.BatchSize,
			Logger:            a.logger,
			Registerer:        a.registry,
		})
		if err != nil {
			return fmt.Errorf("notifier: %w", err)
		}
		pager = a.pagerFor(n) // on the wall clock, also in embedded mode
		a.leaderOnly = append(a.leaderOnly, n)
	}

	// Collector loops only: the detector loop reporting itself down would be circular.
	collectorLoops := append([]*loop.Loop(nil), a.loops...)
	engine, err := detectors.NewEngine(detectors.EngineOptions{
		Series:     a.series,
		Snapshots:  a.snapshots,
		Health:     func() []loop.Health { return a.healthOf(collectorLoops) },
		Quarantine: a.quarantineSource(),
		Mismatches: a.mismatches,
		Store:      a.findings,
		Pager:      pager,
		Links:      detectors.Links{RunbookBase: d.RunbookBaseURL, ExternalURL: cfg.HTTP.ExternalURL},

		ResolvedRetention: cfg.Alertmanager.ResolvedRetention,
		FindingsRetention: d.FindingsRetention,
		Backlog: detectors.BacklogOptions{
			Limit: float64(d.BacklogLimit), Floor: float64(d.BacklogFloor),
			ShortWindow: d.BacklogShortWindow, LongWindow: d.BacklogLongWindow,
			StallAfter: d.StallAfter, For: d.For, Weeks: d.BacklogWeeks, Location: d.Location(),
		},
		Outlier: detectors.OutlierOptions{MinBytes: int64(d.OutlierMinBytes), WorkerMemoryLimit: int64(d.WorkerMemoryLimit)},
		Growth:  detectors.GrowthOptions{MinDays: d.GrowthMinDays, MinBytes: int64(d.OutlierMinBytes)},
		Worker: detectors.WorkerOptions{
			OOMWindow: d.OOMWindow, MemoryNearLimit: d.MemoryNearLimit, For: d.For, OOMKeepFiring: d.OOMKeepFiring,
		},
		Cache:              detectors.CacheOptions{StaleAfter: d.StaleAfter},
		CollectorDownAfter: d.CollectorDownAfter,
		Logger:             a.logger,
		Registerer:         a.registry,
		Now:                a.now,
	})
	if err != nil {
		return err
	}
	l := loop.New("detectors", loopTiming(d.Loop), engine.RunOnce, a.logger, a.loopMetrics)
	a.leaderOnly = append(a.leaderOnly, resetOnStart{Service: l, reset: engine.Reset})
	return nil
}

// resetOnStart makes a regained leadership start from the stored findings, not from
// what this replica remembered when it last led.
type resetOnStart struct {
	service.Service
	reset func()
}

func (r resetOnStart) Start(ctx context.Context) error {
	r.reset()
	return r.Service.Start(ctx)
}

func loopHealth(loops []*loop.Loop) []loop.Health {
	out := make([]loop.Health, 0, len(loops))
	for _, l := range loops {
		out = append(out, l.Health())
	}
	return out
}
