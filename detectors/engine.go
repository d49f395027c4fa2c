package detectors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/detectors/defaults"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Pager hears about every finding Alertmanager should know of after each pass: firing
// ones and those recently resolved (the notifier).
type Pager interface {
	Update(now time.Time, relevant []Finding)
}

// EngineOptions wires the detector pass to its inputs and outputs.
type EngineOptions struct {
	Series    *series.Store
	Snapshots *snapshot.Store
	// Health returns the collector loops' health; nil skips collector_down.
	Health func() []loop.Health
	// Quarantine may be nil when the rebuild engine is disabled.
	Quarantine QuarantineSource
	// Mismatches, if set, are the cache verification's problems (cache_mismatch).
	Mismatches MismatchSource
	// Store persists findings (Store in Postgres, MemStore in process); nil keeps them
	// in memory only (tests, offline use).
	Store FindingStore
	// Pager receives what should page; nil pages nothing.
	Pager Pager

	Links Links
	// ResolvedRetention is how long resolved findings keep being handed to the pager.
	ResolvedRetention time.Duration
	// FindingsRetention is how long resolved findings stay in the store (default 30 days).
	FindingsRetention time.Duration
	// GrowthEvery is how often the slow-burn growth detector runs (default 10m): it
	// reads every team's history and judges days, so every pass would be waste.
	GrowthEvery time.Duration
	// MaxQueueMetrics bounds the queues that get a flagwarden_backlog_eta_seconds series.
	MaxQueueMetrics int
	// MaxQueueHistories bounds the queues whose weeks of five-minute history the engine
	// keeps for comparable-day checks (default 500, about 60 KiB each). A queue gets one
	// once its depth reaches half the backlog floor; the others are judged on what the
	// series store holds.
	MaxQueueHistories int

	Backlog            BacklogOptions
	Outlier            OutlierOptions
	Growth             GrowthOptions
	Worker             WorkerOptions
	Cache              CacheOptions
	CollectorDownAfter time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *EngineOptions) validate() error {
	var errs []error
	if o.Series == nil {
		errs = append(errs, errors.New("detectors: Series is required"))
	}
	if o.Snapshots == nil {
		errs = append(errs, errors.New("detectors: Snapshots is required"))
	}
	if o.CollectorDownAfter <= 0 && o.Health != nil {
		errs = append(errs, errors.New("detectors: CollectorDownAfter must be positive"))
	}
	return errors.Join(errs...)
}

// maxUnsaved bounds the resolutions kept for retry while the state database is away.
const maxUnsaved = 10000

// Engine runs every detector in one pass and keeps the findings' lifecycle. Its RunOnce
// is the detector loop's pass; only the leader runs it.
type Engine struct {
	opts    EngineOptions
	logger  *slog.Logger
	metrics *engineMetrics
	// detectors are the configured detectors in registration order; each keeps its
	// own state between passes.
	detectors []Detector

	mu        sync.Mutex
	tracker   *Tracker
	restored  bool
	lastPrune time.Time
	statuses  []DetectorStatus
	unsaved   []Change
}

type engineMetrics struct {
	active      *prometheus.GaugeVec
	evaluations prometheus.Counter
}

func (o EngineOptions) withDefaults() EngineOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Logger = cmp.Or(o.Logger, slog.New(slog.DiscardHandler))
	o.FindingsRetention = cmp.Or(o.FindingsRetention, defaults.FindingsRetention)
	o.GrowthEvery = cmp.Or(o.GrowthEvery, 10*time.Minute)
	o.MaxQueueMetrics = cmp.Or(o.MaxQueueMetrics, 50)
	o.MaxQueueHistories = cmp.Or(o.MaxQueueHistories, 500)
	o.Backlog = o.Backlog.withDefaults()
	o.ResolvedRetention = cmp.Or(o.ResolvedRetention, 15*time.Minute)
	return o
}

// DefaultEngineOptions are the settings the detectors use where EngineOptions leave a
// field unset, the detectors' own options included. The composition's test holds the
// config file's defaults to them.
func DefaultEngineOptions() EngineOptions {
	o := EngineOptions{}.withDefaults()
	o.Outlier = o.Outlier.withDefaults()
	o.Growth = o.Growth.withDefaults()
	o.Worker = o.Worker.withDefaults()
	return o
}

// NewEngine builds the detector pass.
func NewEngine(opts EngineOptions) (*Engine, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	f := promauto.With(opts.Registerer)
	e := &Engine{
		opts:    opts,
		logger:  opts.Logger.With("component", "detectors"),
		tracker: NewTracker(opts.Links, opts.ResolvedRetention),
		metrics: &engineMetrics{
			active: f.NewGaugeVec(prometheus.GaugeOpts{
				Name: "flagwarden_findings_active",
				Help: "Pending and firing findings by kind and severity.",
			}, []string{"kind", "severity"}),
			evaluations: f.NewCounter(prometheus.CounterOpts{
				Name: "flagwarden_detector_evaluations_total",
				Help: "Detector passes run.",
			}),
		},
	}
	for _, r := range registry {
		if d := r.build(&e.opts, f); d != nil {
			e.detectors = append(e.detectors, d)
		}
	}
	return e, nil
}

// RunOnce evaluates every detector, advances the findings' lifecycle, pages and
// persists. It is the detector loop's pass.
func (e *Engine) RunOnce(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	if !e.restored && e.opts.Store != nil {
		// A new leader continues where the previous one left off; without this every
		// active finding would go back to pending and page again.
		active, err := e.opts.Store.Active(ctx)
		if err != nil {
			return fmt.Errorf("restore active findings: %w", err)
		}
		e.tracker.Restore(active)
	}
	e.restored = true

	obs, statuses, errs := e.detect(ctx, now)
	changes := e.tracker.Update(now, obs)
	e.metrics.evaluations.Inc()
	e.setActiveMetric()
	if e.opts.Pager != nil {
		e.opts.Pager.Update(now, e.tracker.Relevant())
	}
	e.statuses = statuses
	if err := e.persist(ctx, now, changes, statuses); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// detect runs every detector over one pass's inputs. A detector's error is reported
// with the pass; its observations count all the same.
func (e *Engine) detect(ctx context.Context, now time.Time) ([]Observation, []DetectorStatus, []error) {
	p := &Pass{Now: now, Series: e.opts.Series, Snapshots: e.opts.Snapshots, tracker: e.tracker}
	var obs []Observation
	var statuses []DetectorStatus
	var errs []error
	for _, d := range e.detectors {
		o, st, err := d.Detect(ctx, p)
		obs = append(obs, o...)
		statuses = append(statuses, st)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return obs, statuses, errs
}

// persist writes the pass's changes and statuses to the store, and prunes it hourly.
func (e *Engine) persist(ctx context.Context, now time.Time, changes []Change, statuses []DetectorStatus) error {
	var errs []error
	if e.opts.Store != nil {
		// Resolutions and drops are reported once; if writing them fails they are
		// retried with the next pass, or the store would show them active for ever.
		toWrite := append(e.unsaved, changes...)
		e.unsaved = nil
		if err := e.opts.Store.Apply(ctx, toWrite); err != nil {
			errs = append(errs, err)
			for _, c := range toWrite {
				if (c.Dropped || c.Finding.State == StateResolved) && len(e.unsaved) < maxUnsaved {
					e.unsaved = append(e.unsaved, c)
				}
			}
		}
		if err := e.opts.Store.SaveStatus(ctx, statuses); err != nil {
			errs = append(errs, err)
		}
		if now.Sub(e.lastPrune) > time.Hour {
			if _, err := e.opts.Store.Prune(ctx, now.Add(-e.opts.FindingsRetention)); err != nil {
				errs = append(errs, err)
			} else {
				e.lastPrune = now
			}
		}
	}
	return errors.Join(errs...)
}

// Reset forgets the in-memory lifecycle so that the next pass restores it from the
// store: a replica that regains leadership continues from what the last leader wrote.
func (e *Engine) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tracker = NewTracker(e.opts.Links, e.opts.ResolvedRetention)
	e.restored = false
	for _, d := range e.detectors {
		if r, ok := d.(Resetter); ok {
			r.Reset()
		}
	}
}

// Active returns the engine's pending and firing findings (what it last persisted).
func (e *Engine) Active() []Finding {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tracker.Active()
}

// Statuses returns the last pass's per-detector status.
func (e *Engine) Statuses() []DetectorStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.statuses)
}

func (e *Engine) setActiveMetric() {
	e.metrics.active.Reset()
	counts := map[[2]string]int{}
	for _, f := range e.tracker.Active() {
		counts[[2]string{f.Kind, string(f.Severity)}]++
	}
	for k, n := range counts {
		e.metrics.active.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
}
