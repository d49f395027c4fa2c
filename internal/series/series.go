// Package series is flagwarden's in-memory time-series store: one bounded ring buffer
// per series, trimmed to a retention window, with a cap on the number of series. The
// collectors write it; the detectors and the API read it.
package series

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Point is one sample.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// pointBytes is the in-memory size of one Point, for the reported memory use.
const pointBytes = 32

// Options bounds the store.
type Options struct {
	// Retention drops points older than this relative to the newest point of a series.
	Retention time.Duration
	// MaxPoints bounds each series' ring buffer.
	MaxPoints int
	// MaxSeries bounds how many series exist; appends to new series beyond it are dropped.
	MaxSeries int
}

// Store holds every series. It is safe for concurrent use.
type Store struct {
	opts Options

	mu     sync.RWMutex
	series map[string]*ring

	seriesGauge prometheus.GaugeFunc
	pointsGauge prometheus.GaugeFunc
	bytesGauge  prometheus.GaugeFunc
	dropped     prometheus.Counter
}

// New returns an empty store. reg may be nil.
func New(opts Options, reg prometheus.Registerer) *Store {
	s := &Store{opts: opts, series: map[string]*ring{}}
	if opts.MaxPoints < 2 {
		s.opts.MaxPoints = 2
	}
	f := promauto.With(reg)
	s.seriesGauge = f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flagwarden_series",
		Help: "Series held in the in-memory store.",
	}, func() float64 { n, _, _ := s.Stats(); return float64(n) })
	s.pointsGauge = f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flagwarden_series_points",
		Help: "Points held in the in-memory store.",
	}, func() float64 { _, p, _ := s.Stats(); return float64(p) })
	s.bytesGauge = f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flagwarden_series_memory_bytes",
		Help: "Approximate memory held by the in-memory store's points.",
	}, func() float64 { _, _, b := s.Stats(); return float64(b) })
	s.dropped = f.NewCounter(prometheus.CounterOpts{
		Name: "flagwarden_series_dropped_total",
		Help: "Appends dropped because the store already held max_series series.",
	})
	return s
}

// Key joins a series kind and its subject, e.g. Key("queue_depth", "celery").
func Key(kind, subject string) string { return kind + "/" + subject }

// Append adds a point. Points must arrive in time order per series; an older point than
// the newest is dropped (a collector that went back in time is a bug, not data).
// It reports whether the point was kept.
func (s *Store) Append(key string, t time.Time, v float64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.series[key]
	if !ok {
		if s.opts.MaxSeries > 0 && len(s.series) >= s.opts.MaxSeries {
			s.dropped.Inc()
			return false
		}
		r = &ring{buf: make([]Point, 0, min(s.opts.MaxPoints, 64))}
		s.series[key] = r
	}
	if n := r.len(); n > 0 && t.Before(r.at(n-1).T) {
		return false
	}
	r.push(Point{T: t, V: v}, s.opts.MaxPoints)
	if s.opts.Retention > 0 {
		r.trimBefore(t.Add(-s.opts.Retention))
	}
	return true
}

// Range returns a copy of the points of key with from <= T <= to, in time order. A zero
// from or to leaves that end open.
func (s *Store) Range(key string, from, to time.Time) []Point {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.series[key]
	if !ok {
		return nil
	}
	out := make([]Point, 0, r.len())
	for i := range r.len() {
		p := r.at(i)
		if (!from.IsZero() && p.T.Before(from)) || (!to.IsZero() && p.T.After(to)) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// Last returns the newest point of key.
func (s *Store) Last(key string) (Point, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.series[key]
	if !ok || r.len() == 0 {
		return Point{}, false
	}
	return r.at(r.len() - 1), true
}

// Keys returns the keys that start with prefix, sorted.
func (s *Store) Keys(prefix string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for k := range s.series {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Delete removes a series (a queue or team that no longer exists).
func (s *Store) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.series, key)
}

// Stats reports the number of series, points and approximate bytes held.
func (s *Store) Stats() (series, points int, bytes int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.series {
		points += r.len()
		bytes += int64(cap(r.buf)) * pointBytes
	}
	return len(s.series), points, bytes
}

// ring is a fixed-capacity circular buffer that grows up to its cap on demand.
type ring struct {
	buf   []Point
	start int
}

func (r *ring) len() int { return len(r.buf) }

func (r *ring) at(i int) Point { return r.buf[(r.start+i)%len(r.buf)] }

func (r *ring) push(p Point, max int) {
	if len(r.buf) < max {
		if r.start != 0 {
			r.linearize()
		}
		r.buf = append(r.buf, p)
		return
	}
	r.buf[r.start] = p
	r.start = (r.start + 1) % len(r.buf)
}

func (r *ring) linearize() {
	out := make([]Point, len(r.buf), cap(r.buf))
	for i := range r.buf {
		out[i] = r.at(i)
	}
	r.buf, r.start = out, 0
}

func (r *ring) trimBefore(cut time.Time) {
	drop := 0
	for drop < r.len() && r.at(drop).T.Before(cut) {
		drop++
	}
	if drop == 0 {
		return
	}
	r.linearize()
	r.buf = append(r.buf[:0], r.buf[drop:]...)
}
