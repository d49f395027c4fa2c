// Package pods watches the Celery worker pods: a client-go informer on a namespace and
// label selector keeps them in memory, and each pass classifies every pod (ready,
// restarts and their delta, CrashLoopBackOff, last termination and OOM kills
// de-duplicated on the termination time, memory limit) and keeps fleet series: ready
// pods, crash-looping pods, OOM kills and restarts per interval, the highest memory
// usage against limit where a PromQL source reports usage.
package pods

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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Lister is where pods come from: the informer, or the demo's simulated fleet.
type Lister interface {
	// Pods returns the current worker pods. The pods are read-only.
	Pods(ctx context.Context) ([]*corev1.Pod, error)
	// Source names the lister in the snapshot: "kubernetes" or "simulated".
	Source() string
}

// MemoryReader reports each pod's memory working set in bytes, keyed by pod name. The
// PromQL collector implements it.
type MemoryReader interface {
	PodMemory(ctx context.Context) (map[string]int64, error)
}

// Options configure the collector.
type Options struct {
	// Subject is the series subject of the fleet values, normally the namespace.
	Subject string
	// Recent is how old an OOM kill on a pod seen for the first time may be and still
	// count as new. Default 1m; set it to about twice the pass interval.
	Recent time.Duration
	// Memory, when set, supplies working-set usage per pod.
	Memory MemoryReader
	// Now is the clock; tests set it.
	Now func() time.Time
}

// Collector classifies the worker pods each pass.
type Collector struct {
	lister  Lister
	opts    Options
	snaps   *snapshot.Store
	series  *series.Store
	metrics *metrics
	logger  *slog.Logger

	mu   sync.Mutex
	seen map[types.UID]Seen
}

// New returns a collector reading lister.
func New(lister Lister, opts Options, snaps *snapshot.Store, ss *series.Store, reg prometheus.Registerer, logger *slog.Logger) (*Collector, error) {
	if lister == nil {
		return nil, errors.New("pods collector: a Lister is required")
	}
	opts.Subject = cmp.Or(opts.Subject, series.Fleet)
	opts.Recent = cmp.Or(opts.Recent, time.Minute)
	if opts.Recent < 0 {
		return nil, fmt.Errorf("pods collector: Recent must not be negative, got %s", opts.Recent)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Collector{
		lister: lister, opts: opts, snaps: snaps, series: ss, metrics: newMetrics(reg),
		logger: logger.With("component", "pods"), seen: map[types.UID]Seen{},
	}, nil
}

// RunOnce is the loop's pass.
func (c *Collector) RunOnce(ctx context.Context) error {
	p, err := c.Collect(ctx)
	if err != nil {
		return err
	}
	c.publish(p)
	return nil
}

// Collect classifies the pods once, without publishing.
func (c *Collector) Collect(ctx context.Context) (snapshot.Pods, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	list, err := c.lister.Pods(ctx)
	if err != nil {
		return snapshot.Pods{}, fmt.Errorf("list pods: %w", err)
	}
	now := c.opts.Now()
	var usage map[string]int64
	if c.opts.Memory != nil {
		// Usage is a bonus: without it the pod API still tells restarts and OOM kills.
		if usage, err = c.opts.Memory.PodMemory(ctx); err != nil {
			c.metrics.memoryErrors.Inc()
			c.logger.Warn("reading pod memory failed", "err", err)
		}
	}
	out := snapshot.Pods{At: now, Source: c.lister.Source(), Pods: make([]snapshot.Pod, 0, len(list))}
	live := make(map[types.UID]bool, len(list))
	for _, p := range list {
		sp, next := Classify(p, c.seen[p.UID], now, c.opts.Recent)
		sp.MemoryUsage = usage[p.Name]
		c.seen[p.UID] = next
		live[p.UID] = true
		out.Pods = append(out.Pods, sp)
	}
	for uid := range c.seen {
		if !live[uid] {
			delete(c.seen, uid)
		}
	}
	slices.SortFunc(out.Pods, func(a, b snapshot.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// Fleet is the per-look summary kept as series.
type Fleet struct {
	Total, Ready, CrashLooping int
	// OOMKills and Restarts are new since the previous look.
	OOMKills, Restarts int
	// MemoryRatioMax is the highest usage/limit among pods with both known; 0 when none.
	MemoryRatioMax float64
}

// Summarize counts a look at the fleet.
func Summarize(p snapshot.Pods) Fleet {
	var f Fleet
	for _, x := range p.Pods {
		f.Total++
		if x.Ready {
			f.Ready++
		}
		if x.Waiting == ReasonCrashLoop {
			f.CrashLooping++
		}
		if x.NewOOMKill {
			f.OOMKills++
		}
		f.Restarts += int(x.RestartDelta)
		if x.MemoryLimit > 0 && x.MemoryUsage > 0 {
			f.MemoryRatioMax = max(f.MemoryRatioMax, float64(x.MemoryUsage)/float64(x.MemoryLimit))
		}
	}
	return f
}

func (c *Collector) publish(p snapshot.Pods) {
	if c.snaps != nil {
		c.snaps.SetPods(p)
	}
	f := Summarize(p)
	if c.series != nil {
		s := c.opts.Subject
		c.series.Append(series.Key(series.PodsTotal, s), p.At, float64(f.Total))
		c.series.Append(series.Key(series.PodsReady, s), p.At, float64(f.Ready))
		c.series.Append(series.Key(series.PodsCrashLooping, s), p.At, float64(f.CrashLooping))
		c.series.Append(series.Key(series.OOMKills, s), p.At, float64(f.OOMKills))
		c.series.Append(series.Key(series.Restarts, s), p.At, float64(f.Restarts))
		c.series.Append(series.Key(series.MemoryRatioMax, s), p.At, f.MemoryRatioMax)
	}
	c.metrics.total.Set(float64(f.Total))
	c.metrics.ready.Set(float64(f.Ready))
	c.metrics.crashLooping.Set(float64(f.CrashLooping))
	c.metrics.oomKills.Add(float64(f.OOMKills))
	c.metrics.restarts.Add(float64(f.Restarts))
	c.metrics.memoryRatio.Set(f.MemoryRatioMax)
}

type metrics struct {
	total, ready, crashLooping prometheus.Gauge
	oomKills, restarts         prometheus.Counter
	memoryRatio                prometheus.Gauge
	memoryErrors               prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		total: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_pods_total", Help: "Worker pods matching the selector.",
		}),
		ready: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_pods_ready", Help: "Worker pods whose Ready condition is true.",
		}),
		crashLooping: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_pods_crashlooping", Help: "Worker pods with a container waiting in CrashLoopBackOff.",
		}),
		oomKills: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_pods_oom_kills_total", Help: "Container OOM kills seen, each counted once (de-duplicated on its termination time).",
		}),
		restarts: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_pods_restarts_total", Help: "Container restarts seen across the worker pods.",
		}),
		memoryRatio: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_pods_memory_ratio_max", Help: "Highest memory working set / limit among the worker pods (0 when usage is unknown).",
		}),
		memoryErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_pods_memory_read_errors_total", Help: "Passes whose pod memory usage could not be read.",
		}),
	}
}
