// Package teams measures what each team's flag data weighs in the flag database: flags
// (total, active, deleted), referenced non-static cohorts and their bytes, total and
// largest filters, group types, the estimated payload of both caches, and the newest
// change. A full pass walks every team in chunks of team ids; in between, incremental
// passes re-measure only the teams changed since the last pass. Bad data (NULL or
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

	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Options configure the collector.
type Options struct {
	// FullInterval is how often every team is measured. Default 30m.
	FullInterval time.Duration
	// ChunkTeams is how many team ids one query covers. Default 5000.
	ChunkTeams int
	// ChangeOverlap widens each incremental window backwards so that a change committed
	// with an older timestamp than the previous pass's start is still seen. Default 1m.
	ChangeOverlap time.Duration
	// Now is the clock; tests set it.
	Now func() time.Time
}

func (o *Options) applyDefaults() {
	o.FullInterval = cmp.Or(o.FullInterval, 30*time.Minute)
	o.ChunkTeams = cmp.Or(o.ChunkTeams, 5000)
	o.ChangeOverlap = cmp.Or(o.ChangeOverlap, time.Minute)
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o Options) validate() error {
	if o.FullInterval < 0 || o.ChunkTeams < 1 || o.ChangeOverlap < 0 {
		return fmt.Errorf("teams collector options: FullInterval and ChangeOverlap must not be negative and ChunkTeams must be positive, got %s, %s, %d",
			o.FullInterval, o.ChangeOverlap, o.ChunkTeams)
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
	lastFull  time.Time
	watermark time.Time
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

// RunOnce is the loop's pass: a full pass when one is due, else an incremental one. The
// result is published even when some chunks failed (teams in failed chunks keep their
// previous size), and the error is returned so that the loop's health shows it.
func (c *Collector) RunOnce(ctx context.Context) error {
	c.mu.Lock()
	full := c.lastFull.IsZero() || c.opts.Now().Sub(c.lastFull) >= c.opts.FullInterval
	c.mu.Unlock()
	t, err := c.Collect(ctx, full)
	if t.At.IsZero() {
		return err
	}
	c.publish(t)
	return err
}

// Collect runs one full or incremental pass and returns the merged snapshot without
// publishing it. A zero At means nothing was measured.
func (c *Collector) Collect(ctx context.Context, full bool) (snapshot.Teams, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := c.opts.Now()
	began := time.Now()
	var next map[int64]snapshot.TeamSize
	var err error
	if full {
		next, err = c.fullPass(ctx)
	} else {
		next, err = c.incrementalPass(ctx)
	}
	if next == nil {
		return snapshot.Teams{}, err
	}
	elapsed := time.Since(began)
	kind := "incremental"
	if full {
		kind = "full"
	}
	c.metrics.passSeconds.WithLabelValues(kind).Observe(elapsed.Seconds())
	if err == nil {
		c.watermark = start
		if full {
			c.lastFull = start
		}
	}
	prev := c.teams
	c.teams = next
	c.appendSeries(prev, next, start)
	return snapshot.Teams{At: start, Full: full, PassSeconds: elapsed.Seconds(), Teams: next}, err
}

// fullPass measures every team id range. A chunk that fails keeps its teams' previous
// sizes so that a slow chunk cannot make teams vanish.
func (c *Collector) fullPass(ctx context.Context) (map[int64]snapshot.TeamSize, error) {
	lo, hi, ok, err := c.src.TeamIDBounds(ctx)
	if err != nil {
		return nil, err
	}
	next := make(map[int64]snapshot.TeamSize, len(c.teams))
	if !ok {
		return next, nil
	}
	var errs []error
	step := int64(c.opts.ChunkTeams)
	for from := lo; from <= hi; from += step {
		to := min(from+step, hi+1)
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("full pass stopped at team %d: %w", from, ctx.Err()))
			c.keep(next, from, hi+1)
			break
		}
		sizes, err := c.src.MeasureRange(ctx, from, to)
		if err != nil {
			errs = append(errs, err)
			c.keep(next, from, to)
			continue
		}
		for _, s := range sizes {
			next[s.TeamID] = s
		}
	}
	return next, errors.Join(errs...)
}

// keep copies the previous sizes of teams in [from, to) into next.
func (c *Collector) keep(next map[int64]snapshot.TeamSize, from, to int64) {
	for id, s := range c.teams {
		if id >= from && id < to {
			next[id] = s
		}
	}
}

func (c *Collector) incrementalPass(ctx context.Context) (map[int64]snapshot.TeamSize, error) {
	ids, err := c.src.ChangedSince(ctx, c.watermark.Add(-c.opts.ChangeOverlap))
	if err != nil {
		return nil, err
	}
	next := maps.Clone(c.teams)
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
	return next, errors.Join(errs...)
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
	quantiles   *prometheus.GaugeVec
	badRows     prometheus.Gauge
	badTeams    prometheus.Gauge
	passSeconds *prometheus.HistogramVec
}

// payloadQuantiles are exported as gauges rather than a histogram: the distribution of
// current team sizes is a state, not a stream of events.
var payloadQuantiles = []float64{0.5, 0.9, 0.99, 1}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		count: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_teams_count",
			Help: "Teams with flag data in the latest measurement.",
		}),
		largest: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_teams_largest_payload_bytes",
			Help: "The largest estimated cache payload of any team.",
		}),
		quantiles: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_teams_payload_bytes",
			Help: "Quantiles of the estimated cache payload over teams (quantile 1 is the largest).",
		}, []string{"quantile"}),
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
	for _, q := range payloadQuantiles {
		m.quantiles.WithLabelValues(fmt.Sprint(q)).Set(float64(quantile(sizes, q)))
	}
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
