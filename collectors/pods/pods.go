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

	"github.com/flagwarden/flagwarden/internal/clock"
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
	// Clock is what the pods' restarts and kills are judged against: the wall clock
	// (nil), or the clock the cluster reports by.
	Clock clock.Clock
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
	opts.Clock = clock.Or(opts.Clock)
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
	now := c.opts.Clock.Now()
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

// Fleet counts one look at the fleet (snapshot.SummarizePods).
type Fleet = snapshot.PodFleet

// Summarize counts a look at the fleet.
func Summarize(p snapshot.Pods) Fleet { return snapshot.SummarizePods(p.Pods) }

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
	c.metrics.set(c.opts.Subject, p)
}

// metrics are the flagwarden_pods_* series. Fleet counts carry the worker namespace;
// per-pod series carry namespace and pod, the labels kube-state-metrics uses, so they
// join with kube_pod_*. Their cardinality is bounded by the worker pods that match the
// selector now: a pod that goes away takes its series with it.
type metrics struct {
	pods, ready, crashLooping *prometheus.GaugeVec
	oomKills, restarts        *prometheus.CounterVec
	memoryRatio               *prometheus.GaugeVec
	memoryErrors              prometheus.Counter
	// exported are the namespace/pod pairs that have per-pod series, and namespaces
	// that have fleet counts, so that vanished ones are deleted.
	exported   map[[2]string]bool
	namespaces map[string]bool
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		pods: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_pods", Help: "Worker pods matching the selector.",
		}, []string{"namespace"}),
		ready: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_pods_ready", Help: "Worker pods whose Ready condition is true.",
		}, []string{"namespace"}),
		crashLooping: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_pods_crashlooping", Help: "Worker pods with a container waiting in CrashLoopBackOff.",
		}, []string{"namespace"}),
		oomKills: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_pods_oom_kills_total", Help: "Container OOM kills of the worker pod, each counted once (de-duplicated on its termination time).",
		}, []string{"namespace", "pod"}),
		restarts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_pods_restarts_total", Help: "Container restarts of the worker pod seen by flagwarden.",
		}, []string{"namespace", "pod"}),
		memoryRatio: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_pods_memory_working_set_ratio", Help: "Memory working set / limit of the worker pod; absent while usage or limit is unknown.",
		}, []string{"namespace", "pod"}),
		memoryErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_pods_memory_read_errors_total", Help: "Passes whose pod memory usage could not be read.",
		}),
		exported: map[[2]string]bool{}, namespaces: map[string]bool{},
	}
}

// set exports one look. The watched namespace always has fleet counts, so an empty
// fleet reads 0 rather than nothing. A pod's counters appear on its first look; as
// with any counter, Prometheus cannot see an increment in the scrape that creates it.
func (m *metrics) set(watched string, p snapshot.Pods) {
	type fleet struct{ pods, ready, crash int }
	byNS := map[string]*fleet{}
	if watched != series.Fleet {
		byNS[watched] = &fleet{}
	}
	live := make(map[[2]string]bool, len(p.Pods))
	for _, x := range p.Pods {
		f := byNS[x.Namespace]
		if f == nil {
			f = &fleet{}
			byNS[x.Namespace] = f
		}
		f.pods++
		if x.Ready {
			f.ready++
		}
		if x.Waiting == ReasonCrashLoop {
			f.crash++
		}
		k := [2]string{x.Namespace, x.Name}
		live[k] = true
		kills, restarts := m.oomKills.WithLabelValues(k[0], k[1]), m.restarts.WithLabelValues(k[0], k[1])
		if x.NewOOMKill {
			kills.Inc()
		}
		restarts.Add(float64(max(0, x.RestartDelta)))
		if x.MemoryLimit > 0 && x.MemoryUsage > 0 {
			m.memoryRatio.WithLabelValues(k[0], k[1]).Set(float64(x.MemoryUsage) / float64(x.MemoryLimit))
		} else {
			m.memoryRatio.DeleteLabelValues(k[0], k[1])
		}
	}
	for k := range m.exported {
		if !live[k] {
			m.oomKills.DeleteLabelValues(k[0], k[1])
			m.restarts.DeleteLabelValues(k[0], k[1])
			m.memoryRatio.DeleteLabelValues(k[0], k[1])
		}
	}
	m.exported = live
	for ns := range m.namespaces {
		if byNS[ns] == nil {
			m.pods.DeleteLabelValues(ns)
			m.ready.DeleteLabelValues(ns)
			m.crashLooping.DeleteLabelValues(ns)
		}
	}
	m.namespaces = make(map[string]bool, len(byNS))
	for ns, f := range byNS {
		m.namespaces[ns] = true
		m.pods.WithLabelValues(ns).Set(float64(f.pods))
		m.ready.WithLabelValues(ns).Set(float64(f.ready))
		m.crashLooping.WithLabelValues(ns).Set(float64(f.crash))
	}
}
