// Package teams measures what each team's flag data weighs in the flag database: flags
// (total, active, deleted), referenced non-static cohorts and their bytes, total and
// largest filters, group types, the estimated payload of both caches, and the newest
// change. Every pass re-measures the teams changed since the previous pass; a full sweep
// over every team id range runs every full_interval, a bounded number of chunks per pass,
// so that a database of 250,000 teams never needs one long pass. Bad data (NULL or
// non-object filters, cohort cycles, missing cohorts) is counted per team, never fatal.
package teams

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/distribution"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Options configure the collector.
type Options struct {
	// FullInterval is how often a full sweep over every team starts. Default 30m.
	FullInterval time.Duration
	// ChunkTeams is how many team ids one query covers. Default 5000.
	ChunkTeams int
	// SweepBudget bounds the time one pass spends on the full sweep; the sweep resumes
	// where it stopped on the next pass. Default 30s.
	SweepBudget time.Duration
	// ChangeOverlap widens each incremental window backwards so that a change committed
	// with an older timestamp than the previous pass's start is still seen. Default 1m.
	ChangeOverlap time.Duration
	// Clock times the passes and stamps the snapshots: the wall clock (nil), or the
	// clock the flag database's change times are written by.
	Clock clock.Clock
}

func (o *Options) applyDefaults() {
	o.FullInterval = cmp.Or(o.FullInterval, 30*time.Minute)
	o.ChunkTeams = cmp.Or(o.ChunkTeams, 5000)
	o.SweepBudget = cmp.Or(o.SweepBudget, 30*time.Second)
	o.ChangeOverlap = cmp.Or(o.ChangeOverlap, time.Minute)
	o.Clock = clock.Or(o.Clock)
}

func (o Options) validate() error {
	if o.FullInterval < 0 || o.ChunkTeams < 1 || o.ChangeOverlap < 0 || o.SweepBudget < 0 {
		return fmt.Errorf("teams collector options: FullInterval, SweepBudget and ChangeOverlap must not be negative and ChunkTeams must be positive, got %s, %s, %s, %d",
			o.FullInterval, o.SweepBudget, o.ChangeOverlap, o.ChunkTeams)
	}
	return nil
}

// Collector keeps every team's latest size.
type Collector struct {
	src     Source
	opts    Options
	snaps   *snapshot.Store
	series  *series.Store
	metrics *metrics
	logger  *slog.Logger

	mu        sync.Mutex
	teams     map[int64]snapshot.TeamSize
	watermark time.Time // changes at or after this are picked up by the next pass
	lastFull  time.Time // start of the last completed sweep
	sweep     *sweep    // the sweep in progress, nil between sweeps
}

// sweep is a full pass in progress: the next team id to measure and the last one.
type sweep struct {
	next, hi int64
	started  time.Time
	work     time.Duration
}

// New returns a collector reading src.
func New(src Source, opts Options, snaps *snapshot.Store, ss *series.Store, reg prometheus.Registerer, logger *slog.Logger) (*Collector, error) {
	opts.applyDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Collector{
		src: src, opts: opts, snaps: snaps, series: ss, metrics: newMetrics(reg),
		logger: logger.With("component", "teams"), teams: map[int64]snapshot.TeamSize{},
	}, nil
}

// RunOnce is the loop's pass: the changed teams, then up to SweepBudget of the full
// sweep when one is due or under way. The result is published even when some queries
// failed (teams they covered keep their previous sizes), and the error is returned so
// that the loop's health shows it.
func (c *Collector) RunOnce(ctx context.Context) error {
	t, err := c.pass(ctx, c.opts.SweepBudget)
	if !t.At.IsZero() {
		c.publish(t)
	}
	return err
}

// Collect runs the changed teams and a complete full sweep now, and returns the snapshot
// without publishing it. The CLI and benchmarks use it.
func (c *Collector) Collect(ctx context.Context) (snapshot.Teams, error) {
	c.mu.Lock()
	if c.sweep == nil {
		c.lastFull = time.Time{} // force a sweep
	}
	c.mu.Unlock()
	return c.pass(ctx, 0)
}

// Refresh re-measures only the teams changed since the previous pass.
func (c *Collector) Refresh(ctx context.Context) (snapshot.Teams, error) {
	return c.pass(ctx, -1)
}

// pass runs one pass. budget > 0 bounds the sweep's time, 0 runs it to the end, < 0
// skips it. A zero At in the result means nothing was measured.
func (c *Collector) pass(ctx context.Context, budget time.Duration) (snapshot.Teams, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := c.opts.Clock.Now()
	began := time.Now()
	next := maps.Clone(c.teams)
	var errs []error
	measured := false

	if !c.watermark.IsZero() {
		if err := c.refreshChanged(ctx, next); err != nil {
			errs = append(errs, err)
		} else {
			measured = true
			c.watermark = start
			c.metrics.passSeconds.WithLabelValues("incremental").Observe(time.Since(began).Seconds())
		}
	} else {
		// Everything before the first sweep is covered by that sweep.
		c.watermark = start
	}

	full := false
	due := c.sweep != nil || c.lastFull.IsZero() || start.Sub(c.lastFull) >= c.opts.FullInterval
	if due && budget >= 0 {
		done, ran, err := c.runSweep(ctx, next, start, budget)
		if err != nil {
			errs = append(errs, err)
		}
		measured = measured || ran
		full = done
	}
	if !measured {
		return snapshot.Teams{}, errors.Join(errs...)
	}
	prev := c.teams
	c.teams = next
	c.appendSeries(prev, next, start)
	return snapshot.Teams{At: start, Full: full, PassSeconds: time.Since(began).Seconds(), Teams: next}, errors.Join(errs...)
}

// runSweep advances the full sweep by whole chunks until it ends or the budget is used.
// A chunk replaces every team in its id range, so teams whose data is gone drop out; a
// chunk that fails keeps its teams' previous sizes and the sweep moves on, so one bad
// range cannot stall every other team.
func (c *Collector) runSweep(ctx context.Context, next map[int64]snapshot.TeamSize, start time.Time, budget time.Duration) (done, ran bool, err error) {
	if c.sweep == nil {
		lo, hi, ok, err := c.src.TeamIDBounds(ctx)
		if err != nil {
			return false, false, err
		}
		if !ok {
			clear(next)
			c.lastFull = start
			return true, true, nil
		}
		c.sweep = &sweep{next: lo, hi: hi, started: start}
	}
	sw := c.sweep
	began := time.Now()
	var errs []error
	step := int64(c.opts.ChunkTeams)
	for sw.next <= sw.hi {
		// At least one chunk per pass, so that any budget makes progress.
		if ctx.Err() != nil || (ran && budget > 0 && time.Since(began) >= budget) {
			break
		}
		from, to := sw.next, min(sw.next+step, sw.hi+1)
		sizes, err := c.src.MeasureRange(ctx, from, to)
		sw.next = to
		ran = true
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for id := range next {
			if id >= from && id < to {
				delete(next, id)
			}
		}
		for _, s := range sizes {
			next[s.TeamID] = s
		}
	}
	sw.work += time.Since(began)
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("full sweep paused at team %d: %w", sw.next, ctx.Err()))
	}
	if sw.next > sw.hi {
		// Teams created after the sweep took its bounds are above hi; the next
		// pass's changed-teams query finds them.
		c.metrics.passSeconds.WithLabelValues("full").Observe(sw.work.Seconds())
		c.logger.Info("full sweep done", "teams", len(next), "work", sw.work, "took", start.Sub(sw.started)+time.Since(began))
		c.lastFull = sw.started
		c.sweep = nil
		done = true
	}
	return done, ran, errors.Join(errs...)
}

// refreshChanged re-measures the teams changed since the watermark.
func (c *Collector) refreshChanged(ctx context.Context, next map[int64]snapshot.TeamSize) error {
	ids, err := c.src.ChangedSince(ctx, c.watermark.Add(-c.opts.ChangeOverlap))
	if err != nil {
		return err
	}
	var errs []error
	for chunk := range slices.Chunk(ids, c.opts.ChunkTeams) {
		sizes, err := c.src.MeasureTeams(ctx, chunk)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got := make(map[int64]bool, len(sizes))
		for _, s := range sizes {
			next[s.TeamID] = s
			got[s.TeamID] = true
		}
		for _, id := range chunk {
			if !got[id] {
				delete(next, id) // its flag data is gone
			}
		}
	}
	return errors.Join(errs...)
}

// appendSeries records a team's payload size and flag count when they change, so that
// mostly idle teams cost one point, not one per pass.
func (c *Collector) appendSeries(prev, next map[int64]snapshot.TeamSize, at time.Time) {
	if c.series == nil {
		return
	}
	for id, s := range next {
		p, had := prev[id]
		subject := fmt.Sprint(id)
		if !had || p.PayloadBytes() != s.PayloadBytes() {
			c.series.Append(series.Key(series.TeamPayloadBytes, subject), at, float64(s.PayloadBytes()))
		}
		if !had || p.ActiveFlags != s.ActiveFlags {
			c.series.Append(series.Key(series.TeamFlags, subject), at, float64(s.ActiveFlags))
		}
	}
}

func (c *Collector) publish(t snapshot.Teams) {
	if c.snaps != nil {
		c.snaps.SetTeams(t)
	}
	c.metrics.set(t)
}

type metrics struct {
	count       prometheus.Gauge
	largest     prometheus.Gauge
	payload     *distribution.Histogram
	badRows     prometheus.Gauge
	badTeams    prometheus.Gauge
	passSeconds *prometheus.HistogramVec
}

// PayloadBuckets are the team-size histogram's upper bounds: each spans a factor of 4
// from 1 KiB to 16 GiB, the same bins as the API's size distribution.
var PayloadBuckets = prometheus.ExponentialBuckets(1024, 4, 13)

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		count: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_teams",
			Help: "Teams with flag data in the latest measurement.",
		}),
		largest: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_teams_largest_payload_bytes",
			Help: "The largest estimated cache payload of any team.",
		}),
		// The distribution of current team sizes is a state, not a stream of events:
		// replaced on every measurement, read without rate().
		payload: distribution.New("flagwarden_teams_payload_bytes",
			"Estimated cache payload of the teams in the latest measurement (replaced each measurement; read without rate()).",
			PayloadBuckets),
		badRows: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_teams_bad_rows",
			Help: "Rows that could not be read as expected (NULL or non-object filters, cohort cycles, missing cohorts), over all teams.",
		}),
		badTeams: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_teams_with_bad_rows",
			Help: "Teams with at least one bad row.",
		}),
		passSeconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flagwarden_teams_pass_duration_seconds",
			Help:    "Time one full or incremental pass over the flag database took.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12),
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.payload)
	}
	return m
}

func (m *metrics) set(t snapshot.Teams) {
	sizes := make([]int64, 0, len(t.Teams))
	var bad, badTeams int64
	for _, s := range t.Teams {
		sizes = append(sizes, s.PayloadBytes())
		bad += s.BadRows
		if s.BadRows > 0 {
			badTeams++
		}
	}
	slices.Sort(sizes)
	m.count.Set(float64(len(sizes)))
	m.badRows.Set(float64(bad))
	m.badTeams.Set(float64(badTeams))
	values := make([]float64, len(sizes))
	for i, v := range sizes {
		values[i] = float64(v)
	}
	m.payload.Set(values)
	m.largest.Set(float64(quantile(sizes, 1)))
}

// quantile is the nearest-rank quantile of sorted values; 0 for none.
func quantile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
