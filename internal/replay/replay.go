// Package replay runs the February 2026 incident twice on the same simulated fleet and
// traffic: as it happened (naive builds in Celery workers under an 8 GiB limit, no
// dedup, no backlog monitoring) and with flagwarden (its real detectors on the same
// signals, its engine's admission and dedup doing the builds), and compares them.
package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/simulator"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/rebuild"
)

// Options choose the run. Zero values take the defaults, except Policy, which is
// required.
type Options struct {
	// Policy is flagwarden as it runs live (app.ReplayPolicy fills it from the
	// configuration's defaults).
	Policy Policy
	// Seed makes the run reproducible (default 1).
	Seed uint64
	// Duration is how much simulated time each run covers (default 7 days).
	Duration time.Duration
	// FixAt is when the test account's data is cleaned up (default 5 days 12 hours).
	FixAt time.Duration
	// Step is the simulation step; changes are seen by the consumers at step
	// boundaries (default 5s).
	Step time.Duration
	// Progress, if set, is called as each run advances: run is "as it happened" or
	// "with flagwarden", done how much of its Duration has been simulated.
	Progress func(run string, done, of time.Duration)
}

// Policy is the live configuration the replay runs flagwarden with.
type Policy struct {
	// Detectors gives the judgment thresholds: Backlog, Outlier, Growth, Worker and
	// Cache. Its stores, pager and clock are the replay's own.
	Detectors detectors.EngineOptions
	// DetectInterval is the live detector pass, reported next to the replay's own.
	DetectInterval time.Duration
	// Rebuild gives the engine's lanes and limits: the workers per lane, the large
	// and hard limits on a team's payload, and the memory budget of a build.
	Rebuild rebuild.Options
	// Queue is the Celery queue flagwarden's consumer reads.
	Queue string
	// Series bounds the in-memory series the detectors read.
	Series series.Options
}

// progress reports how far run is.
func (o Options) progress(run string, start, now time.Time) {
	if o.Progress != nil {
		o.Progress(run, now.Sub(start), o.Duration)
	}
}

func (o Options) withDefaults() Options {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Duration == 0 {
		o.Duration = 7 * 24 * time.Hour
	}
	if o.FixAt == 0 {
		o.FixAt = 132 * time.Hour
	}
	if o.Step == 0 {
		o.Step = 5 * time.Second
	}
	return o
}

// Page is the first alert of a run.
type Page struct {
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Summary  string    `json:"summary"`
	// Backlog is the queue depth when it fired.
	Backlog int64 `json:"backlog"`
}

// Outcome is one run's column of the comparison.
type Outcome struct {
	Name         string     `json:"name"`
	FirstOOMKill *time.Time `json:"first_oom_kill"`
	FirstPage    *Page      `json:"first_page"`
	// FirstCritical is the first critical page, when the first was a warning.
	FirstCritical    *Page   `json:"first_critical,omitempty"`
	PeakBacklog      int64   `json:"peak_backlog"`
	PeakBacklogAt    string  `json:"peak_backlog_at,omitempty"`
	OOMKills         int     `json:"oom_kills"`
	CrashLoopMinutes float64 `json:"crashloop_minutes"`
	// OthersP99Seconds is the 99th percentile, over every change of every team except
	// the test-automation team, of the time until a live cache reflected it.
	OthersP99Seconds float64 `json:"others_p99_staleness_seconds"`
	WorstTeam        int64   `json:"worst_team"`
	WorstTeamSeconds float64 `json:"worst_team_staleness_seconds"`
	// StableAfterSeconds is how long after the start the run was last unstable
	// (backlog ≥ 1,000, a pod in CrashLoopBackOff, or an OOM kill in the last 15
	// minutes); 0 means it never was.
	StableAfterSeconds float64 `json:"stable_after_seconds"`
	Builds             int64   `json:"builds"`
	TasksEnqueued      int64   `json:"tasks_enqueued"`
}

// Param is one model parameter, listed so a reader can judge the model.
type Param struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Report is the whole comparison.
type Report struct {
	Seed           uint64    `json:"seed"`
	Start          time.Time `json:"start"`
	Duration       string    `json:"duration"`
	AsItHappened   Outcome   `json:"as_it_happened"`
	WithFlagwarden Outcome   `json:"with_flagwarden"`
	Parameters     []Param   `json:"parameters"`
	Notes          []string  `json:"notes"`
}

// sampleEvery is how often both runs are measured, as the collectors' default interval.
const sampleEvery = 15 * time.Second

// detectEvery is how often the replay runs the detector pass: every two simulated
// minutes rather than the configured 30 s, because a pass over 2,000 teams costs a few
// milliseconds and a week has 5,040 of them at this rate. Findings fire at most two
// minutes later than they would live.
const detectEvery = 2 * time.Minute

// crashLoopRule is kubernetes-mixin's KubePodCrashLooping: a pod seen waiting in
// CrashLoopBackOff within the last 5 minutes, continuously for 15 minutes (warning).
// The incident's cluster is assumed to have had it; it is the only page of the
// "as it happened" run.
type crashLoopRule struct {
	lastWaiting map[string]time.Time
	since       map[string]time.Time
}

func (r *crashLoopRule) observe(pods []snapshot.Pod, now time.Time) (fired string) {
	for _, p := range pods {
		if p.Waiting == snapshot.ReasonCrashLoop {
			r.lastWaiting[p.Name] = now
		}
		if now.Sub(r.lastWaiting[p.Name]) <= 5*time.Minute && !r.lastWaiting[p.Name].IsZero() {
			if r.since[p.Name].IsZero() {
				r.since[p.Name] = now
			}
			if now.Sub(r.since[p.Name]) >= 15*time.Minute && fired == "" {
				fired = p.Name
			}
		} else {
			r.since[p.Name] = time.Time{}
		}
	}
	return fired
}

// Run performs both runs and returns the comparison.
func Run(ctx context.Context, o Options) (Report, error) {
	o = o.withDefaults()
	p := o.Policy
	if p.Queue == "" || p.Rebuild.SmallWorkers <= 0 {
		return Report{}, errors.New("replay: Options.Policy is required (app.ReplayPolicy)")
	}
	simOpts := simulator.Options{Seed: o.Seed, FixAt: o.FixAt}
	workerOpts := simulator.WorkerOptions{Seed: o.Seed}
	eng := engineOptions{
		SmallWorkers: p.Rebuild.SmallWorkers, LargeWorkers: p.Rebuild.LargeWorkers,
		QuarantineWorkers: p.Rebuild.QuarantineWorkers,
		LargeTeamBytes:    p.Rebuild.LargeTeamBytes, HardLimitBytes: p.Rebuild.HardLimitBytes,
		BuildOverhead: 20 * time.Millisecond, BytesPerSecond: 60e6, MemoryBudget: p.Rebuild.MemoryBudget,
	}
	naive, err := runNaive(ctx, o, simOpts, workerOpts)
	if err != nil {
		return Report{}, err
	}
	with, err := runFlagwarden(ctx, o, simOpts, workerOpts, eng, p)
	if err != nil {
		return Report{}, err
	}
	start := simOpts.Start
	if start.IsZero() {
		start = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	}
	return Report{
		Seed: o.Seed, Start: start, Duration: o.Duration.String(),
		AsItHappened: naive, WithFlagwarden: with,
		Parameters: parameters(o, workerOpts, eng, p),
		Notes: []string{
			"The simulation is deterministic for a seed: the fleet, every flag change and every task are the same in both runs.",
			"As it happened: Celery workers take each task (acked on receipt, Celery's default, so a task on a killed worker is lost) and build it by loading everything: memory = worker baseline + snapshot.NaiveBuildFactor × (flags payload + definitions payload).",
			"The only alerting assumed in the first run is kubernetes-mixin's KubePodCrashLooping; nothing watched the backlog.",
			"With flagwarden: the detector pass is flagwarden's detectors.Engine on series and snapshots fed from the simulation every 15 s (queues, pods) and before each pass (teams, caches); builds follow the rebuild engine's policy (per-team dedup with one follow-up, lanes by measured payload, quarantine past the hard limit, streaming builds in a bounded memory budget), applied by the replay with the engine's configured thresholds because the engine's own admission runs inside its River-backed store.",
			"Staleness counts each change of each cache kind from the change until a build that read the data after it went live; changes still waiting at the end count with their age.",
		},
	}, nil
}

func runNaive(ctx context.Context, o Options, so simulator.Options, wo simulator.WorkerOptions) (Outcome, error) {
	s, err := simulator.New(ctx, so)
	if err != nil {
		return Outcome{}, err
	}
	w := simulator.NewCeleryWorkers(wo, s.Now)
	out := Outcome{Name: "as it happened"}
	rule := &crashLoopRule{lastWaiting: map[string]time.Time{}, since: map[string]time.Time{}}
	tr := &tracker{start: s.Now}
	end := s.Now.Add(o.Duration)
	for s.Now.Before(end) {
		if err := s.Advance(ctx, w, s.Now.Add(sampleEvery), o.Step); err != nil {
			return Outcome{}, err
		}
		depth, err := s.Broker.Depth(ctx, s.Opts.Queue)
		if err != nil {
			return Outcome{}, err
		}
		pods := make([]snapshot.Pod, 0, len(w.Pods))
		for _, p := range w.Pods {
			pods = append(pods, p.Snapshot(s.Now))
		}
		if name := rule.observe(pods, s.Now); name != "" && out.FirstPage == nil {
			out.FirstPage = &Page{At: s.Now, Kind: "KubePodCrashLooping", Severity: "warning",
				Summary: "Pod " + name + " is crash looping.", Backlog: depth}
		}
		tr.sample(s.Now, depth, pods, w.OOMKills)
		o.progress(out.Name, tr.start, s.Now)
	}
	if !w.FirstOOM.IsZero() {
		t := w.FirstOOM
		out.FirstOOMKill = &t
	}
	out.OOMKills = w.OOMKills
	tr.finish(&out, s)
	return out, nil
}

// tracker accumulates what both runs report.
type tracker struct {
	start        time.Time
	lastUnstable time.Time
	lastOOMs     int
	lastOOMAt    time.Time
	peak         int64
	peakAt       time.Time
	crashLoop    time.Duration
}

func (t *tracker) sample(now time.Time, depth int64, pods []snapshot.Pod, ooms int) {
	if depth > t.peak {
		t.peak, t.peakAt = depth, now
	}
	if ooms > t.lastOOMs {
		t.lastOOMs, t.lastOOMAt = ooms, now
	}
	looping := 0
	for _, p := range pods {
		if p.Waiting == snapshot.ReasonCrashLoop {
			looping++
		}
	}
	t.crashLoop += time.Duration(looping) * sampleEvery
	if depth >= 1000 || looping > 0 || (!t.lastOOMAt.IsZero() && now.Sub(t.lastOOMAt) < 15*time.Minute) {
		t.lastUnstable = now
	}
}

func (t *tracker) finish(out *Outcome, s *simulator.Sim) {
	out.PeakBacklog = t.peak
	if t.peak > 0 {
		out.PeakBacklogAt = t.peakAt.Format("2006-01-02 15:04")
	}
	out.CrashLoopMinutes = math.Round(t.crashLoop.Minutes())
	st := s.Staleness(s.Now)
	out.OthersP99Seconds = math.Round(st.OthersP99.Seconds())
	out.WorstTeam, out.WorstTeamSeconds = st.WorstTeam, math.Round(st.WorstTeamLag.Seconds())
	if !t.lastUnstable.IsZero() {
		out.StableAfterSeconds = t.lastUnstable.Add(sampleEvery).Sub(t.start).Seconds()
	}
	out.Builds = s.Builds
	out.TasksEnqueued = s.Enqueued
}

// pageRecorder is the detectors' Pager: it keeps the first firing finding (and the
// first critical one).
type pageRecorder struct {
	first, critical *detectors.Finding
}

func (p *pageRecorder) Update(_ time.Time, relevant []detectors.Finding) {
	for i := range relevant {
		f := relevant[i]
		if f.State != detectors.StateFiring {
			continue
		}
		if p.first == nil || f.FiredAt.Before(p.first.FiredAt) {
			if p.first == nil {
				p.first = &f
			}
		}
		if p.critical == nil && f.Severity == detectors.SeverityCritical {
			p.critical = &f
		}
	}
}

func runFlagwarden(ctx context.Context, o Options, so simulator.Options, wo simulator.WorkerOptions, eo engineOptions, p Policy) (Outcome, error) {
	so.Queue = p.Queue
	s, err := simulator.New(ctx, so)
	if err != nil {
		return Outcome{}, err
	}
	// the Celery workers still run, but the cache tasks go to flagwarden's consumer.
	w := simulator.NewCeleryWorkers(wo, s.Now)
	m := newEngineModel(eo, so.Queue)
	st := series.New(p.Series, nil)
	snaps := snapshot.NewStore()
	pager := &pageRecorder{}
	now := s.Now
	d := p.Detectors
	engine, err := detectors.NewEngine(detectors.EngineOptions{
		Series: st, Snapshots: snaps, Quarantine: m, Pager: pager,
		Backlog: d.Backlog, Outlier: d.Outlier, Growth: d.Growth, Worker: d.Worker, Cache: d.Cache,
		Logger:     slog.New(slog.DiscardHandler),
		Registerer: prometheus.NewRegistry(),
		Now:        func() time.Time { return now },
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("detectors: %w", err)
	}
	out := Outcome{Name: "with flagwarden"}
	tr := &tracker{start: s.Now}
	feed := &feeder{series: st, snaps: snaps, lastPayload: map[int64]int64{}, lastFlags: map[int64]int64{}}
	end := s.Now.Add(o.Duration)
	var lastDetect time.Time
	for s.Now.Before(end) {
		if err := s.Advance(ctx, m, s.Now.Add(sampleEvery), o.Step); err != nil {
			return Outcome{}, err
		}
		now = s.Now
		depth, err := s.Broker.Depth(ctx, so.Queue)
		if err != nil {
			return Outcome{}, err
		}
		// the engine's waiting builds are the backlog flagwarden leaves.
		depth += int64(m.waiting())
		pods := make([]snapshot.Pod, 0, len(w.Pods))
		for _, p := range w.Pods {
			pods = append(pods, p.Snapshot(now))
		}
		feed.queues(now, so.Queue, depth)
		feed.pods(now, wo.Namespace, pods)
		if now.Sub(lastDetect) >= detectEvery {
			lastDetect = now
			feed.teams(now, s)
			feed.caches(now, s)
			if err := engine.RunOnce(ctx); err != nil {
				return Outcome{}, fmt.Errorf("detector pass: %w", err)
			}
			if pager.first != nil && out.FirstPage == nil {
				out.FirstPage = pageOf(pager.first, depth)
			}
			if pager.critical != nil && out.FirstCritical == nil {
				out.FirstCritical = pageOf(pager.critical, depth)
			}
		}
		tr.sample(now, depth, pods, w.OOMKills)
		o.progress(out.Name, tr.start, now)
	}
	out.OOMKills = w.OOMKills
	if !w.FirstOOM.IsZero() {
		t := w.FirstOOM
		out.FirstOOMKill = &t
	}
	tr.finish(&out, s)
	out.Builds = m.Builds
	if out.FirstCritical != nil && out.FirstPage != nil && out.FirstCritical.At.Equal(out.FirstPage.At) && out.FirstCritical.Kind == out.FirstPage.Kind {
		out.FirstCritical = nil
	}
	return out, nil
}

func pageOf(f *detectors.Finding, backlog int64) *Page {
	return &Page{At: f.FiredAt, Kind: f.Kind, Severity: string(f.Severity), Summary: f.Summary, Backlog: backlog}
}

// feeder writes the simulation's state into the series and snapshot stores the way the
// collectors do.
type feeder struct {
	series      *series.Store
	snaps       *snapshot.Store
	sizes       map[int64]snapshot.TeamSize
	lastPayload map[int64]int64
	lastFlags   map[int64]int64
}

func (f *feeder) queues(now time.Time, queue string, depth int64) {
	f.snaps.SetQueues(snapshot.Queues{At: now, Queues: []snapshot.Queue{{Name: queue, Depth: depth, Bound: true,
		ByPriority: map[int]int64{0: depth}}}})
	f.series.Append(series.Key(series.QueueDepth, queue), now, float64(depth))
}

func (f *feeder) pods(now time.Time, ns string, pods []snapshot.Pod) {
	var ready, looping, ooms, restarts float64
	for _, p := range pods {
		if p.Ready {
			ready++
		}
		if p.Waiting == snapshot.ReasonCrashLoop {
			looping++
		}
		if p.NewOOMKill {
			ooms++
		}
		restarts += float64(p.RestartDelta)
	}
	f.snaps.SetPods(snapshot.Pods{At: now, Pods: pods, Source: "simulated"})
	for kind, v := range map[string]float64{series.PodsReady: ready, series.PodsCrashLooping: looping,
		series.PodsTotal: float64(len(pods)), series.OOMKills: ooms, series.Restarts: restarts} {
		f.series.Append(series.Key(kind, ns), now, v)
	}
}

func (f *feeder) teams(now time.Time, s *simulator.Sim) {
	if f.sizes == nil {
		f.sizes = s.Fleet.Sizes(now)
	} else {
		// only the test team's size moves between passes; copy so readers keep theirs.
		f.sizes = maps.Clone(f.sizes)
		f.sizes[s.Fleet.Test.ID] = s.Fleet.Test.Size(now)
	}
	f.snaps.SetTeams(snapshot.Teams{At: now, Full: true, Teams: f.sizes})
	for _, t := range s.Fleet.Teams {
		if !t.TestAutomation && f.lastPayload[t.ID] != 0 {
			continue
		}
		sz := f.sizes[t.ID]
		subject := strconv.FormatInt(t.ID, 10)
		if p := sz.PayloadBytes(); p != f.lastPayload[t.ID] {
			f.lastPayload[t.ID] = p
			f.series.Append(series.Key(series.TeamPayloadBytes, subject), now, float64(p))
		}
		if sz.ActiveFlags != f.lastFlags[t.ID] {
			f.lastFlags[t.ID] = sz.ActiveFlags
			f.series.Append(series.Key(series.TeamFlags, subject), now, float64(sz.ActiveFlags))
		}
	}
}

func (f *feeder) caches(now time.Time, s *simulator.Sim) {
	states := make([]snapshot.CacheState, 0, 2*len(s.Fleet.Teams))
	lags := make([]float64, 0, cap(states))
	for _, t := range s.Fleet.Teams {
		sz := f.sizes[t.ID]
		for _, kind := range []string{"flags", "definitions"} {
			lag := s.Lag(t.ID, kind, now)
			b := sz.FlagsPayloadBytes
			if kind == "definitions" {
				b = sz.DefinitionsPayloadBytes
			}
			built := s.BuiltAt(t.ID, kind)
			// the oldest change the cache does not reflect is what its data is newer by.
			updated := built
			if lag > 0 {
				updated = now.Add(-lag)
			}
			states = append(states, snapshot.CacheState{TeamID: t.ID, Kind: kind, Source: "flagwarden", Bytes: b,
				BuiltAt: built, SourceUpdatedAt: updated, Lag: lag})
			lags = append(lags, lag.Seconds())
		}
	}
	f.snaps.SetCaches(snapshot.Caches{At: now, Teams: states})
	p99, mx := quantiles(lags)
	f.series.Append(series.Key(series.CacheLagP99, series.Fleet), now, p99)
	f.series.Append(series.Key(series.CacheLagMax, series.Fleet), now, mx)
}
