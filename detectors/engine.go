package detectors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/units"
	"github.com/flagwarden/flagwarden/rebuild"
)

// QuarantineSource lists quarantined teams (the rebuild engine).
type QuarantineSource interface {
	Quarantined(ctx context.Context) ([]rebuild.Quarantine, error)
}

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
	tracker *Tracker
	metrics *engineMetrics

	mu         sync.Mutex
	restored   bool
	firstSeen  map[string]time.Time
	growthAt   time.Time
	growthObs  []Observation
	growthStat DetectorStatus
	quarObs    []Observation
	etaQueues  map[string]bool
	queues     map[string]*queueState
	lastPrune  time.Time
	statuses   []DetectorStatus
	unsaved    []Change
}

type engineMetrics struct {
	active      *prometheus.GaugeVec
	evaluations prometheus.Counter
	maxScore    prometheus.Gauge
	eta         *prometheus.GaugeVec
}

// NewEngine builds the detector pass.
func NewEngine(opts EngineOptions) (*Engine, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Logger = cmp.Or(opts.Logger, slog.New(slog.DiscardHandler))
	opts.FindingsRetention = cmp.Or(opts.FindingsRetention, 30*24*time.Hour)
	opts.GrowthEvery = cmp.Or(opts.GrowthEvery, 10*time.Minute)
	opts.MaxQueueMetrics = cmp.Or(opts.MaxQueueMetrics, 50)
	opts.MaxQueueHistories = cmp.Or(opts.MaxQueueHistories, 500)
	opts.Backlog = opts.Backlog.withDefaults()
	opts.ResolvedRetention = cmp.Or(opts.ResolvedRetention, 15*time.Minute)
	f := promauto.With(opts.Registerer)
	return &Engine{
		opts:      opts,
		logger:    opts.Logger.With("component", "detectors"),
		tracker:   NewTracker(opts.Links, opts.ResolvedRetention),
		firstSeen: map[string]time.Time{},
		etaQueues: map[string]bool{},
		queues:    map[string]*queueState{},
		metrics: &engineMetrics{
			active: f.NewGaugeVec(prometheus.GaugeOpts{
				Name: "flagwarden_findings_active",
				Help: "Pending and firing findings by kind and severity.",
			}, []string{"kind", "severity"}),
			evaluations: f.NewCounter(prometheus.CounterOpts{
				Name: "flagwarden_detector_evaluations_total",
				Help: "Detector passes run.",
			}),
			maxScore: f.NewGauge(prometheus.GaugeOpts{
				Name: "flagwarden_outlier_max_score",
				Help: "The largest robust z of any team's log size in the last pass.",
			}),
			eta: f.NewGaugeVec(prometheus.GaugeOpts{
				Name: "flagwarden_backlog_eta_seconds",
				Help: "Time until the queue reaches detectors.backlog_limit at its current growth; absent while the queue is not growing.",
			}, []string{"queue"}),
		},
	}, nil
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

	var obs []Observation
	var statuses []DetectorStatus
	backlogObs, backlogStatus, notDraining := e.backlog(now)
	obs = append(obs, backlogObs...)
	statuses = append(statuses, backlogStatus)
	workerObs, workerStatus := e.workers(now, notDraining)
	obs = append(obs, workerObs...)
	statuses = append(statuses, workerStatus)
	outObs, outStatus := e.outliers()
	obs = append(obs, outObs...)
	statuses = append(statuses, outStatus)
	if now.Sub(e.growthAt) >= e.opts.GrowthEvery {
		e.growthObs, e.growthStat = e.teamGrowth(now)
		e.growthAt = now
	}
	obs = append(obs, e.growthObs...)
	statuses = append(statuses, e.growthStat)
	caches := e.opts.Snapshots.Caches()
	obs = append(obs, StaleCaches(caches, now, e.opts.Cache)...)
	statuses = append(statuses, DetectorStatus{Detector: "caches", At: now, Evaluated: len(caches.Teams),
		Insufficient: boolInt(len(caches.Teams) == 0), Note: noteIf(len(caches.Teams) == 0, "no cache measurements yet")})
	if e.opts.Health != nil {
		health := e.opts.Health()
		for _, h := range health {
			if _, ok := e.firstSeen[h.Name]; !ok {
				e.firstSeen[h.Name] = now
			}
		}
		obs = append(obs, CollectorsDown(health, e.firstSeen, now, e.opts.CollectorDownAfter)...)
		statuses = append(statuses, DetectorStatus{Detector: "collectors", At: now, Evaluated: len(health)})
	}
	var quarErr error
	if e.opts.Quarantine != nil {
		qs, err := e.opts.Quarantine.Quarantined(ctx)
		if err != nil {
			// Keep the last known quarantines: a failed lookup must not resolve them.
			quarErr = fmt.Errorf("list quarantined teams: %w", err)
		} else {
			e.quarObs = Quarantined(qs, now)
		}
		obs = append(obs, e.quarObs...)
		statuses = append(statuses, DetectorStatus{Detector: "quarantine", At: now, Evaluated: len(e.quarObs),
			Note: noteIf(err != nil, "last lookup failed; showing the previous quarantines")})
	}

	if e.opts.Mismatches != nil {
		ps := e.opts.Mismatches.Problems()
		obs = append(obs, CacheMismatches(ps, now)...)
		statuses = append(statuses, DetectorStatus{Detector: "cache_verify", At: now, Evaluated: len(ps)})
	}

	changes := e.tracker.Update(now, obs)
	e.metrics.evaluations.Inc()
	e.setActiveMetric()
	if e.opts.Pager != nil {
		e.opts.Pager.Update(now, e.tracker.Relevant())
	}
	e.statuses = statuses
	var errs []error
	if quarErr != nil {
		errs = append(errs, quarErr)
	}
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
	e.growthAt = time.Time{}
	e.firstSeen = map[string]time.Time{}
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

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func noteIf(cond bool, note string) string {
	if cond {
		return note
	}
	return ""
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

// queueNames is every queue in the last snapshot or with a depth series.
func (e *Engine) queueNames() []string {
	names := map[string]bool{}
	for _, q := range e.opts.Snapshots.Queues().Queues {
		names[q.Name] = true
	}
	prefix := series.Key(series.QueueDepth, "")
	for _, k := range e.opts.Series.Keys(prefix) {
		names[strings.TrimPrefix(k, prefix)] = true
	}
	return slices.Sorted(maps.Keys(names))
}

func (e *Engine) backlog(now time.Time) ([]Observation, DetectorStatus, []string) {
	st := DetectorStatus{Detector: "backlog", At: now}
	var out []Observation
	var notDraining []string
	names := e.queueNames()
	for q := range e.queues {
		if _, ok := slices.BinarySearch(names, q); !ok {
			delete(e.queues, q) // the queue is gone
		}
	}
	for _, q := range names {
		active := func(kind string) bool {
			return e.tracker.IsFiring(findingID(kind, map[string]string{"queue": q}))
		}
		o, qs := e.evaluateQueue(q, now, active)
		out = append(out, o...)
		st.Evaluated++
		if qs.Insufficient {
			st.Insufficient++
		}
		if qs.Growing || qs.Stalled {
			notDraining = append(notDraining, q)
		}
		if len(st.Queues) < 200 {
			st.Queues = append(st.Queues, qs)
		}
		if e.etaQueues[q] || len(e.etaQueues) < e.opts.MaxQueueMetrics {
			e.etaQueues[q] = true
			// No sentinel: a queue that is not growing has no ETA series at all.
			if qs.ETASeconds >= 0 {
				e.metrics.eta.WithLabelValues(q).Set(qs.ETASeconds)
			} else {
				e.metrics.eta.DeleteLabelValues(q)
			}
		}
	}
	return out, st, notDraining
}

// evaluateQueue judges one queue. A queue that has held messages keeps a bucket
// history here, fed with the samples since the last pass, so weeks of comparable days
// are at hand even though the series store keeps days of raw samples; the others are
// judged on the store's recent samples alone (nearly empty queues cannot grow past the
// floor without first coming near it, and then their history is taken from the store).
func (e *Engine) evaluateQueue(q string, now time.Time, active func(string) bool) ([]Observation, BacklogStatus) {
	bo := e.opts.Backlog
	key := series.Key(series.QueueDepth, q)
	ageKey := series.Key(series.QueueOldestAge, q)
	qs := e.queues[q]
	if qs == nil {
		last, ok := e.opts.Series.Last(key)
		hot := ok && last.V >= bo.Floor/2
		if !hot || len(e.queues) >= e.opts.MaxQueueHistories {
			// Nearly empty: the recent samples are enough to judge it. Beyond the bound:
			// what the store holds of the last day.
			back := 2 * bo.ShortWindow
			if hot {
				back = bo.LongWindow + bo.Season
			}
			recent := e.opts.Series.Range(key, now.Add(-back), now)
			ages := e.opts.Series.Range(ageKey, now.Add(-back), now)
			return EvaluateBacklogAge(q, recent, ages, now, active, bo)
		}
		all := e.opts.Series.Range(key, now.Add(-bo.History()), now)
		qs = newQueueState(bo, backlogWidth(all, bo))
		for _, p := range all {
			qs.add(p)
		}
		for _, p := range e.opts.Series.Range(ageKey, now.Add(-2*bo.StallAfter-time.Hour), now) {
			qs.addAge(p)
		}
		e.queues[q] = qs
		return qs.evaluate(q, now, active)
	}
	var lastT, lastAge time.Time
	if n := len(qs.raw); n > 0 {
		lastT = qs.raw[n-1].T
	}
	if n := len(qs.ages); n > 0 {
		lastAge = qs.ages[n-1].T
	}
	for _, p := range e.opts.Series.Range(key, lastT.Add(time.Nanosecond), now) {
		qs.add(p)
	}
	for _, p := range e.opts.Series.Range(ageKey, lastAge.Add(time.Nanosecond), now) {
		qs.addAge(p)
	}
	return qs.evaluate(q, now, active)
}

func (e *Engine) workers(now time.Time, notDraining []string) ([]Observation, DetectorStatus) {
	st := DetectorStatus{Detector: "workers", At: now}
	pods := e.opts.Snapshots.Pods()
	byNS := map[string][]snapshot.Pod{}
	for _, p := range pods.Pods {
		byNS[p.Namespace] = append(byNS[p.Namespace], p)
	}
	for _, kind := range []string{series.PodsTotal, series.OOMKills} {
		prefix := series.Key(kind, "")
		for _, k := range e.opts.Series.Keys(prefix) {
			ns := strings.TrimPrefix(k, prefix)
			if _, ok := byNS[ns]; !ok {
				byNS[ns] = nil
			}
		}
	}
	if len(byNS) == 0 {
		st.Insufficient, st.Note = 1, "no worker pods measured yet"
		return nil, st
	}
	wo := e.opts.Worker.withDefaults()
	var out []Observation
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		in := WorkerInput{
			Namespace:    ns,
			Pods:         byNS[ns],
			OOMKills:     e.opts.Series.Range(series.Key(series.OOMKills, ns), now.Add(-wo.CalmLookback), now),
			CrashLooping: e.opts.Series.Range(series.Key(series.PodsCrashLooping, ns), now.Add(-wo.CrashLoopWindow), now),
			Restarts:     e.opts.Series.Range(series.Key(series.Restarts, ns), now.Add(-wo.OOMWindow), now),
			NotDraining:  notDraining,
			Firing: func(kind string) bool {
				return e.tracker.IsFiring(findingID(kind, map[string]string{"namespace": ns}))
			},
		}
		if p, ok := e.opts.Series.Last(series.Key(series.MemoryRatioMax, ns)); ok && now.Sub(p.T) < wo.OOMWindow {
			in.MemoryRatio, in.HasMemoryRatio = p.V, true
		}
		out = append(out, WorkerHealth(in, now, e.opts.Worker)...)
		st.Evaluated++
	}
	return out, st
}

func (e *Engine) outliers() ([]Observation, DetectorStatus) {
	snap := e.opts.Snapshots.Teams()
	st := DetectorStatus{Detector: "outliers", At: snap.At}
	if len(snap.Teams) == 0 {
		st.Insufficient, st.Note = 1, "no team sizes measured yet"
		e.metrics.maxScore.Set(0)
		return nil, st
	}
	teams := slices.Collect(maps.Values(snap.Teams))
	r := ScoreTeams(teams, e.opts.Outlier)
	e.metrics.maxScore.Set(r.MaxZ)
	st.Evaluated = r.Teams
	if r.Insufficient {
		st.Insufficient = r.Teams
		st.Note = fmt.Sprintf("insufficient data: %d teams with data, the statistics need %d; only the memory limit rule applies",
			r.Teams, e.opts.Outlier.withDefaults().MinTeams)
	} else {
		st.Note = fmt.Sprintf("median %s, p99.9 %s, threshold z %.2f, largest z %.2f", units.Bytes(int64(r.Median)), units.Bytes(int64(r.P999)), r.Threshold, r.MaxZ)
	}
	return Outliers(r, e.opts.Outlier), st
}

func (e *Engine) teamGrowth(now time.Time) ([]Observation, DetectorStatus) {
	st := DetectorStatus{Detector: "team_growth", At: now}
	prefix := series.Key(series.TeamPayloadBytes, "")
	var out []Observation
	for _, k := range e.opts.Series.Keys(prefix) {
		id, err := strconv.ParseInt(strings.TrimPrefix(k, prefix), 10, 64)
		if err != nil {
			continue
		}
		o, found, insufficient := TeamGrowth(id, e.opts.Series.Range(k, time.Time{}, now), now, e.opts.Growth)
		st.Evaluated++
		if insufficient {
			st.Insufficient++
		}
		if found && len(out) < 50 {
			out = append(out, o)
		}
	}
	if st.Insufficient > 0 {
		st.Note = fmt.Sprintf("insufficient data: %d teams have less than %d days of size history", st.Insufficient, e.opts.Growth.withDefaults().MinDays)
	}
	return out, st
}
