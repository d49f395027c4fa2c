// Package caches measures how fresh each team's flag caches are. For the caches
// flagwarden publishes it reads the build index and each payload's metadata (size, build
// time, ETag); when watching PostHog's own caches it derives build times from PostHog's
// expiry sorted sets and the configured TTL and reads payload sizes and ETags. Lag is
// the newest change to the team's flag data (from the teams collector) minus the build
// time; a team with flag data and no cache at all is reported missing.
package caches

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	detectordefaults "github.com/flagwarden/flagwarden/detectors/defaults"
	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/distribution"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Cache sources, as CacheState.Source reports them.
const (
	SourceFlagwarden = "flagwarden"
	SourcePostHog    = "posthog"
)

// Options configure the collector.
type Options struct {
	// Layout is where flagwarden publishes.
	Layout cachekeys.Layout
	// Flagwarden reads the caches flagwarden publishes; a team with flag data and no
	// such cache is missing only when this is on (the rebuild engine runs).
	Flagwarden bool
	// WatchPostHog also reads PostHog's own caches.
	WatchPostHog bool
	// PostHogPrefix is django-redis's prefix on PostHog's keys. Default "posthog:1:".
	PostHogPrefix string
	// TTL is the lifetime PostHog gives a cache entry: built = expiry - TTL.
	TTL time.Duration
	// StaleAfter is the lag above which a team counts as stale. Default 15m.
	StaleAfter time.Duration
	// PipelineChunk bounds the commands per Redis pipeline. Default 2000.
	PipelineChunk int
	// Teams returns the latest team sizes (for the newest source change). Optional.
	Teams func() snapshot.Teams
	// Clock is what build times are judged against: the wall clock (default), or the
	// demo's simulated one, which also stamped the builds.
	Clock clock.Clock
}

// DefaultOptions are the settings the collector uses where Options leave a field unset.
func DefaultOptions() Options {
	var o Options
	o.applyDefaults()
	return o
}

func (o *Options) applyDefaults() {
	o.PostHogPrefix = cmp.Or(o.PostHogPrefix, cachekeys.PostHogPrefix)
	o.StaleAfter = cmp.Or(o.StaleAfter, detectordefaults.StaleAfter)
	o.PipelineChunk = cmp.Or(o.PipelineChunk, 2000)
	if o.Teams == nil {
		o.Teams = func() snapshot.Teams { return snapshot.Teams{} }
	}
	o.Clock = clock.Or(o.Clock)
}

func (o Options) validate() error {
	var errs []error
	if o.WatchPostHog && o.TTL <= 0 {
		errs = append(errs, fmt.Errorf("TTL must be positive to watch PostHog's caches, got %s", o.TTL))
	}
	if o.StaleAfter <= 0 || o.PipelineChunk < 1 {
		errs = append(errs, errors.New("StaleAfter and PipelineChunk must be positive"))
	}
	if !o.Flagwarden && !o.WatchPostHog {
		errs = append(errs, errors.New("nothing to watch: enable Flagwarden or WatchPostHog"))
	}
	return errors.Join(errs...)
}

// Collector measures cache freshness.
type Collector struct {
	rdb     redis.UniversalClient
	opts    Options
	snaps   *snapshot.Store
	series  *series.Store
	metrics *metrics
	logger  *slog.Logger
	mu      sync.Mutex
}

// New returns a collector reading the cache Redis rdb.
func New(rdb redis.UniversalClient, opts Options, snaps *snapshot.Store, ss *series.Store, reg prometheus.Registerer, logger *slog.Logger) (*Collector, error) {
	opts.applyDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("caches collector options: %w", err)
	}
	return &Collector{rdb: rdb, opts: opts, snaps: snaps, series: ss, metrics: newMetrics(reg, opts.StaleAfter), logger: logger.With("component", "caches")}, nil
}

// RunOnce is the loop's pass.
func (c *Collector) RunOnce(ctx context.Context) error {
	s, err := c.Collect(ctx)
	if err != nil {
		return err
	}
	c.publish(s)
	return nil
}

type key struct {
	team int64
	kind cachekeys.Kind
}

// Collect reads every cache once and returns the snapshot without publishing it.
func (c *Collector) Collect(ctx context.Context) (snapshot.Caches, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Clock.Now()
	teams := c.opts.Teams().Teams
	var out []snapshot.CacheState
	if c.opts.Flagwarden {
		states, err := c.flagwarden(ctx)
		if err != nil {
			return snapshot.Caches{}, err
		}
		out = append(out, c.finish(states, SourceFlagwarden, teams)...)
	}
	if c.opts.WatchPostHog {
		states, err := c.posthog(ctx)
		if err != nil {
			return snapshot.Caches{}, err
		}
		out = append(out, c.finish(states, SourcePostHog, teams)...)
	}
	slices.SortFunc(out, func(a, b snapshot.CacheState) int {
		return cmp.Or(cmp.Compare(b.Lag, a.Lag), cmp.Compare(a.TeamID, b.TeamID), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Source, b.Source))
	})
	return snapshot.Caches{At: now, Teams: out}, nil
}

// finish adds the source change time, the lag and the missing caches of teams that have
// flag data.
func (c *Collector) finish(states map[key]snapshot.CacheState, source string, teams map[int64]snapshot.TeamSize) []snapshot.CacheState {
	for id, t := range teams {
		for _, kind := range cachekeys.Kinds {
			k := key{id, kind}
			if _, ok := states[k]; ok || !needsCache(t, kind) {
				continue
			}
			states[k] = snapshot.CacheState{TeamID: id, Kind: string(kind), Source: source, Missing: true}
		}
	}
	out := make([]snapshot.CacheState, 0, len(states))
	for _, s := range states {
		if t, ok := teams[s.TeamID]; ok {
			s.SourceUpdatedAt = t.UpdatedAt
			if !s.Missing && t.UpdatedAt.After(s.BuiltAt) {
				s.Lag = t.UpdatedAt.Sub(s.BuiltAt)
			}
		}
		if s.Missing {
			// Gone is infinitely stale: the detectors' thresholds judge it at once,
			// whatever build time the index still remembers.
			s.Lag = snapshot.MissingLag
		}
		out = append(out, s)
	}
	return out
}

// needsCache reports whether a team's data gives the kind of cache any content.
func needsCache(t snapshot.TeamSize, kind cachekeys.Kind) bool {
	return kind.Needed(t.ActiveFlags, t.Flags-t.DeletedFlags)
}

// flagwarden reads the build index of each kind, then every indexed team's metadata.
func (c *Collector) flagwarden(ctx context.Context) (map[key]snapshot.CacheState, error) {
	states := map[key]snapshot.CacheState{}
	var keys []key
	for _, kind := range cachekeys.Kinds {
		for offset := int64(0); ; {
			const page = 10000
			entries, err := cachekeys.ReadIndex(ctx, c.rdb, c.opts.Layout, kind, offset, page)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				k := key{e.TeamID, kind}
				states[k] = snapshot.CacheState{TeamID: e.TeamID, Kind: string(kind), Source: SourceFlagwarden, BuiltAt: e.BuiltAt}
				keys = append(keys, k)
			}
			if len(entries) < page {
				break
			}
			offset += page
		}
	}
	for chunk := range slices.Chunk(keys, c.opts.PipelineChunk) {
		pipe := c.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		for i, k := range chunk {
			cmds[i] = pipe.HGetAll(ctx, c.opts.Layout.Meta(k.team, k.kind))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read cache metadata: %w", err)
		}
		for i, k := range chunk {
			s := states[k]
			m, err := cachekeys.ParseMeta(cmds[i].Val())
			switch {
			case errors.Is(err, cachekeys.ErrNoMeta):
				// Indexed but the payload is gone (evicted or deleted).
				s.Missing = true
			case err != nil:
				c.metrics.badMeta.Inc()
				c.logger.Warn("unreadable cache metadata", "team", k.team, "kind", k.kind, "err", err)
			default:
				s.Bytes, s.ETag = m.Bytes, m.ETag
				if !m.BuiltAt.IsZero() {
					s.BuiltAt = m.BuiltAt
				}
			}
			states[k] = s
		}
	}
	return states, nil
}

// posthog reads PostHog's expiry sorted sets (member team id, score expiry time) and the
// size and ETag of each payload they name.
func (c *Collector) posthog(ctx context.Context) (map[key]snapshot.CacheState, error) {
	l := cachekeys.Layout{PostHog: true, Prefix: c.opts.PostHogPrefix}
	states := map[key]snapshot.CacheState{}
	var keys []key
	for _, kind := range cachekeys.Kinds {
		zs, err := c.rdb.ZRangeWithScores(ctx, l.Expiry(kind), 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", l.Expiry(kind), err)
		}
		for _, z := range zs {
			s, _ := z.Member.(string)
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				c.metrics.badMeta.Inc()
				continue
			}
			expiry := time.UnixMilli(int64(z.Score * 1000)).UTC()
			k := key{id, kind}
			states[k] = snapshot.CacheState{TeamID: id, Kind: string(kind), Source: SourcePostHog, BuiltAt: expiry.Add(-c.opts.TTL)}
			keys = append(keys, k)
		}
	}
	for chunk := range slices.Chunk(keys, c.opts.PipelineChunk) {
		pipe := c.rdb.Pipeline()
		sizes := make([]*redis.IntCmd, len(chunk))
		etags := make([]*redis.StringCmd, len(chunk))
		for i, k := range chunk {
			sizes[i] = pipe.StrLen(ctx, l.Payload(k.team, k.kind))
			etags[i] = pipe.Get(ctx, l.ETag(k.team, k.kind))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read PostHog payload sizes: %w", err)
		}
		for i, k := range chunk {
			s := states[k]
			// STRLEN is the stored (pickled, maybe compressed) size: what Redis holds.
			s.Bytes = sizes[i].Val()
			// Django stores the :etag pickled like every value.
			if raw, _ := etags[i].Bytes(); len(raw) > 0 {
				if tag, err := hypercache.DecodeString(raw, 64); err == nil {
					s.ETag = tag
				} else {
					c.metrics.badMeta.Inc()
				}
			}
			if s.Bytes == 0 {
				s.Missing = true // tracked for expiry but the value is gone
			}
			states[k] = s
		}
	}
	return states, nil
}

// Fleet is one look summarized per source.
type Fleet struct {
	Entries, Missing, Stale int
	LagP50, LagP99, LagMax  time.Duration
	// Lags are every present cache's lag, sorted.
	Lags []time.Duration
}

// Summarize computes the fleet view of a snapshot for one source ("" for all). A team
// is stale when any of its caches lags by more than staleAfter or is missing.
func Summarize(c snapshot.Caches, source string, staleAfter time.Duration) Fleet {
	var f Fleet
	var lags []time.Duration
	stale := map[int64]bool{}
	for _, s := range c.Teams {
		if source != "" && s.Source != source {
			continue
		}
		if s.Missing {
			// A missing cache makes its team stale but has no lag to chart.
			f.Missing++
			stale[s.TeamID] = true
			continue
		}
		f.Entries++
		lags = append(lags, s.Lag)
		if s.Lag > staleAfter {
			stale[s.TeamID] = true
		}
	}
	f.Stale = len(stale)
	slices.Sort(lags)
	f.Lags = lags
	f.LagP50, f.LagP99 = quantile(lags, 0.5), quantile(lags, 0.99)
	if len(lags) > 0 {
		f.LagMax = lags[len(lags)-1]
	}
	return f
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (c *Collector) publish(s snapshot.Caches) {
	if c.snaps != nil {
		c.snaps.SetCaches(s)
	}
	all := Summarize(s, "", c.opts.StaleAfter)
	if c.series != nil {
		c.series.Append(series.Key(series.CacheLagP99, series.Fleet), s.At, all.LagP99.Seconds())
		c.series.Append(series.Key(series.CacheLagMax, series.Fleet), s.At, all.LagMax.Seconds())
		c.series.Append(series.Key(series.CacheStaleTeams, series.Fleet), s.At, float64(all.Stale))
	}
	for _, src := range []string{SourceFlagwarden, SourcePostHog} {
		if (src == SourceFlagwarden && !c.opts.Flagwarden) || (src == SourcePostHog && !c.opts.WatchPostHog) {
			continue
		}
		f := Summarize(s, src, c.opts.StaleAfter)
		lags := make([]float64, len(f.Lags))
		for i, l := range f.Lags {
			lags[i] = l.Seconds()
		}
		c.metrics.lag.Set(lags, src)
		c.metrics.lagMax.WithLabelValues(src).Set(f.LagMax.Seconds())
		c.metrics.stale.WithLabelValues(src).Set(float64(f.Stale))
		c.metrics.missing.WithLabelValues(src).Set(float64(f.Missing))
		c.metrics.entries.WithLabelValues(src).Set(float64(f.Entries))
	}
}

type metrics struct {
	lag                     *distribution.Histogram
	lagMax                  *prometheus.GaugeVec
	stale, missing, entries *prometheus.GaugeVec
	badMeta                 prometheus.Counter
}

// LagBuckets are the cache-lag histogram's upper bounds, in seconds; staleAfter is added
// so that the share of caches within it is exact.
func LagBuckets(staleAfter time.Duration) []float64 {
	b := []float64{1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400}
	return append(b, staleAfter.Seconds())
}

func newMetrics(reg prometheus.Registerer, staleAfter time.Duration) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		// The lags of the teams' caches now: a state, replaced on every look and read
		// without rate().
		lag: distribution.New("flagwarden_cache_lag_seconds",
			"Lag of the teams' caches in the latest look: newest source change minus build time (replaced each look; read without rate()).",
			LagBuckets(staleAfter), "source"),
		lagMax: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_cache_lag_max_seconds",
			Help: "The largest lag of any team's cache in the latest look.",
		}, []string{"source"}),
		stale: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_cache_stale_teams",
			Help: "Teams with a cache lagging its data by more than detectors.stale_after, or missing.",
		}, []string{"source"}),
		missing: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_cache_missing",
			Help: "Caches absent for teams that have flag data.",
		}, []string{"source"}),
		entries: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_cache_entries",
			Help: "Caches found.",
		}, []string{"source"}),
		badMeta: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_cache_unreadable_entries_total",
			Help: "Cache metadata or expiry entries that could not be parsed.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.lag)
	}
	return m
}
