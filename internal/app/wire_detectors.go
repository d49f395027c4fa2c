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
	opts := detectorOptions(cfg)
	opts.Series, opts.Snapshots = a.series, a.snapshots
	opts.Health = func() []loop.Health { return a.healthOf(collectorLoops) }
	opts.Quarantine, opts.Mismatches, opts.Store, opts.Pager = a.quarantineSource(), a.mismatches, a.findings, pager
	opts.Logger, opts.Registerer, opts.Now = a.logger, a.registry, a.now
	engine, err := detectors.NewEngine(opts)
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
