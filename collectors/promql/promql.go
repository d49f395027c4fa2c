// Package promql evaluates configured PromQL queries against a Prometheus: what the pod
// API cannot see, such as a prefork child killed for memory (the container survives, so
// no OOMKilled appears; Celery's WorkerLostError count and the working set against the
// limit do), and each pod's memory working set for the pod collector.
package promql

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"

	"github.com/flagwarden/flagwarden/internal/series"
)

// Query is one named expression.
type Query struct {
	Name, Expr string
}

// Options configure the collector.
type Options struct {
	// URL is the Prometheus HTTP API base, e.g. http://127.0.0.1:9090.
	URL string
	// Queries are evaluated each pass; names must be unique (they become a label value
	// and a series subject, so their number is bounded by the configuration).
	Queries []Query
	// PodMemoryQuery returns one working-set sample per pod, labelled "pod".
	PodMemoryQuery string
	// Timeout bounds each query. Default 10s.
	Timeout time.Duration
	// Now is the evaluation time; tests set it.
	Now func() time.Time
}

// Result is a query's latest value: the largest sample of a vector (write sum() or
// max() in the query to choose), or the scalar. Samples is 0 when the query matched
// nothing, and Value is then NaN.
type Result struct {
	Name    string    `json:"name"`
	Query   string    `json:"query"`
	Value   float64   `json:"value"`
	Samples int       `json:"samples"`
	At      time.Time `json:"at"`
	Error   string    `json:"error,omitempty"`
}

// Collector evaluates the queries.
type Collector struct {
	api     v1.API
	opts    Options
	series  *series.Store
	metrics *metrics
	logger  *slog.Logger

	mu      sync.Mutex
	results map[string]Result
}

// New returns a collector for the Prometheus at opts.URL.
func New(opts Options, ss *series.Store, reg prometheus.Registerer, logger *slog.Logger) (*Collector, error) {
	if opts.URL == "" {
		return nil, errors.New("promql collector: URL is required")
	}
	seen := map[string]bool{}
	for _, q := range opts.Queries {
		if q.Name == "" || q.Expr == "" || seen[q.Name] {
			return nil, fmt.Errorf("promql collector: query %q needs a unique name and an expression", q.Name)
		}
		seen[q.Name] = true
	}
	opts.Timeout = cmp.Or(opts.Timeout, 10*time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	client, err := api.NewClient(api.Config{Address: opts.URL})
	if err != nil {
		return nil, fmt.Errorf("promql collector: %w", err)
	}
	return &Collector{
		api: v1.NewAPI(client), opts: opts, series: ss, metrics: newMetrics(reg),
		logger: logger.With("component", "promql"), results: map[string]Result{},
	}, nil
}

// RunOnce evaluates every query. A query that fails is recorded and counted and the
// others still run; the pass then fails so that the loop's health shows it.
func (c *Collector) RunOnce(ctx context.Context) error {
	var errs []error
	now := c.opts.Now()
	for _, q := range c.opts.Queries {
		r := Result{Name: q.Name, Query: q.Expr, At: now, Value: math.NaN()}
		v, n, err := c.scalar(ctx, q.Expr, now)
		if err != nil {
			r.Error = err.Error()
			c.metrics.errors.WithLabelValues(q.Name).Inc()
			errs = append(errs, fmt.Errorf("query %s: %w", q.Name, err))
		} else {
			r.Value, r.Samples = v, n
			c.metrics.samples.WithLabelValues(q.Name).Set(float64(n))
			if n > 0 {
				c.metrics.value.WithLabelValues(q.Name).Set(v)
				if c.series != nil {
					c.series.Append(series.Key(series.PromQL, q.Name), now, v)
				}
			} else {
				// No data is not zero: drop the value rather than report a calm 0.
				c.metrics.value.DeleteLabelValues(q.Name)
			}
		}
		c.mu.Lock()
		c.results[q.Name] = r
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Results returns the latest result of every query.
func (c *Collector) Results() map[string]Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.results)
}

func (c *Collector) eval(ctx context.Context, expr string, at time.Time) (model.Value, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	v, warnings, _, err := c.api.Query(ctx, expr, at)
	if err != nil {
		return nil, err
	}
	if len(warnings) > 0 {
		c.logger.Debug("query warnings", "query", expr, "warnings", warnings)
	}
	return v, nil
}

func (c *Collector) scalar(ctx context.Context, expr string, at time.Time) (float64, int, error) {
	v, err := c.eval(ctx, expr, at)
	if err != nil {
		return 0, 0, err
	}
	switch x := v.(type) {
	case *model.Scalar:
		return float64(x.Value), 1, nil
	case model.Vector:
		if len(x) == 0 {
			return math.NaN(), 0, nil
		}
		best := math.Inf(-1)
		for _, s := range x {
			best = max(best, float64(s.Value))
		}
		return best, len(x), nil
	default:
		return 0, 0, fmt.Errorf("result type %s: want an instant vector or scalar", v.Type())
	}
}

// PodMemory implements pods.MemoryReader with PodMemoryQuery.
func (c *Collector) PodMemory(ctx context.Context) (map[string]int64, error) {
	if c.opts.PodMemoryQuery == "" {
		return nil, nil
	}
	v, err := c.eval(ctx, c.opts.PodMemoryQuery, c.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("pod memory query: %w", err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("pod memory query returned %s, want an instant vector", v.Type())
	}
	out := make(map[string]int64, len(vec))
	for _, s := range vec {
		pod := string(s.Metric["pod"])
		if pod == "" {
			continue
		}
		out[pod] = max(out[pod], int64(s.Value))
	}
	return out, nil
}

type metrics struct {
	value   *prometheus.GaugeVec
	samples *prometheus.GaugeVec
	errors  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		value: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_promql_value",
			Help: "Latest value of a configured PromQL query (the largest sample of a vector); absent when it matched nothing.",
		}, []string{"query"}),
		samples: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_promql_samples",
			Help: "Samples the configured query returned at its last evaluation.",
		}, []string{"query"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_promql_query_errors_total",
			Help: "Evaluations of a configured query that failed.",
		}, []string{"query"}),
	}
}
