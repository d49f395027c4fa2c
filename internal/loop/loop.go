// Package loop runs a collector's or detector's pass on a ticker: one pass at a time,
// each bounded by a timeout, spread by jitter, with its health (up, last success, last
// error, missed iterations) exported so that a broken loop never looks like all clear.
package loop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/service"
)

// Health is a loop's state as the API and the collector-down detector see it.
type Health struct {
	Name        string    `json:"name"`
	Up          bool      `json:"up"`
	Passes      int64     `json:"passes"`
	Failures    int64     `json:"failures"`
	Missed      int64     `json:"missed_iterations"`
	LastSuccess time.Time `json:"last_success"`
	LastAttempt time.Time `json:"last_attempt"`
	LastError   string    `json:"last_error,omitempty"`
	LastPass    float64   `json:"last_pass_seconds"`
}

// Metrics are shared by every loop in a process; the loop name is the only label, so
// cardinality is the number of loops.
type Metrics struct {
	up          *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	passes      *prometheus.CounterVec
	failures    *prometheus.CounterVec
	missed      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
}

// NewMetrics registers loop metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		up: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_collector_up",
			Help: "1 if the loop's last pass succeeded, 0 if it failed or has not run yet.",
		}, []string{"collector"}),
		lastSuccess: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_collector_last_success_timestamp_seconds",
			Help: "Unix time of the loop's last successful pass.",
		}, []string{"collector"}),
		passes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_collector_passes_total",
			Help: "Passes run by the loop.",
		}, []string{"collector"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_collector_failures_total",
			Help: "Passes that failed or timed out.",
		}, []string{"collector"}),
		missed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_collector_missed_iterations_total",
			Help: "Ticks skipped because the previous pass was still running.",
		}, []string{"collector"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flagwarden_collector_pass_duration_seconds",
			Help:    "Time one pass took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"collector"}),
	}
}

// Timing is when a loop runs its pass.
type Timing struct {
	// Interval between passes.
	Interval time.Duration
	// Timeout bounds one pass; it should not exceed the interval.
	Timeout time.Duration
	// Jitter spreads passes by up to this fraction of the interval (0..0.5).
	Jitter float64
}

// Loop runs pass every interval. It implements service.Service.
type Loop struct {
	name    string
	timing  Timing
	pass    func(ctx context.Context) error
	logger  *slog.Logger
	metrics *Metrics
	now     func() time.Time

	mu     sync.Mutex
	health Health
	// svc owns the goroutine's start and stop.
	svc *service.Func
}

// New returns a loop named name (a bounded, fixed string such as "celery") that runs
// pass on timing. timing must already be validated: a zero interval panics here rather
// than reaching a ticker.
func New(name string, timing Timing, pass func(ctx context.Context) error, logger *slog.Logger, m *Metrics) *Loop {
	if timing.Interval <= 0 || timing.Timeout <= 0 {
		panic(fmt.Sprintf("loop %s: interval and timeout must be positive", name))
	}
	m.up.WithLabelValues(name).Set(0)
	// The counters exist at 0 from the start, so that rate() over them, and panels and
	// alerts built on it, have data before the first failure or missed tick.
	m.passes.WithLabelValues(name)
	m.failures.WithLabelValues(name)
	m.missed.WithLabelValues(name)
	l := &Loop{
		name: name, timing: timing, pass: pass, metrics: m, now: time.Now,
		logger: logger.With("component", name),
		health: Health{Name: name},
	}
	l.svc = service.NewFunc(name, logger, l.run)
	return l
}

// Name implements service.Service.
func (l *Loop) Name() string { return l.name }

// Health returns a copy of the loop's current health.
func (l *Loop) Health() Health {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.health
}

// RunOnce runs one pass now, bounded by the timeout, and records its health. Tests and
// CLI commands call it directly.
func (l *Loop) RunOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.timing.Timeout)
	defer cancel()
	start := l.now()
	err := safePass(ctx, l.pass)
	elapsed := l.now().Sub(start)

	l.metrics.passes.WithLabelValues(l.name).Inc()
	l.metrics.duration.WithLabelValues(l.name).Observe(elapsed.Seconds())
	l.mu.Lock()
	defer l.mu.Unlock()
	l.health.Passes++
	l.health.LastAttempt = start
	l.health.LastPass = elapsed.Seconds()
	if err != nil {
		l.health.Up = false
		l.health.Failures++
		l.health.LastError = err.Error()
		l.metrics.up.WithLabelValues(l.name).Set(0)
		l.metrics.failures.WithLabelValues(l.name).Inc()
		return err
	}
	l.health.Up = true
	l.health.LastError = ""
	l.health.LastSuccess = start
	l.metrics.up.WithLabelValues(l.name).Set(1)
	l.metrics.lastSuccess.WithLabelValues(l.name).Set(float64(start.UnixNano()) / 1e9)
	return nil
}

// safePass turns a panic in a pass into an error so one bad input cannot kill the process.
func safePass(ctx context.Context, pass func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pass panicked: %v", r)
		}
	}()
	return pass(ctx)
}

// Start implements service.Service: the first pass runs at once, then on the ticker.
func (l *Loop) Start(ctx context.Context) error { return l.svc.Start(ctx) }

func (l *Loop) run(ctx context.Context) error {
	ticker := time.NewTicker(l.timing.Interval)
	defer ticker.Stop()
	for {
		if err := l.RunOnce(ctx); err != nil && !errors.Is(ctx.Err(), context.Canceled) {
			l.logger.Warn("pass failed", "err", err)
		}
		// A pass that overran its interval skipped ticks; count them.
		for drained := false; !drained; {
			select {
			case <-ticker.C:
				l.metrics.missed.WithLabelValues(l.name).Inc()
				l.mu.Lock()
				l.health.Missed++
				l.mu.Unlock()
			default:
				drained = true
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if j := l.jitter(); j > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(j):
			}
		}
	}
}

func (l *Loop) jitter() time.Duration {
	if l.timing.Jitter <= 0 {
		return 0
	}
	return time.Duration(rand.Float64() * l.timing.Jitter * float64(l.timing.Interval))
}

// Stop implements service.Service.
func (l *Loop) Stop(ctx context.Context) error { return l.svc.Stop(ctx) }
