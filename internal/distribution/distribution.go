// Package distribution exports the spread of a current population (team payload sizes,
// cache lags over teams) as a Prometheus histogram. Unlike an event histogram it is
// replaced whole on every measurement: its buckets count the members as they are now,
// so it is read as is (histogram_quantile over the buckets, a Grafana heatmap), never
// through rate().
package distribution

import (
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Histogram is a prometheus.Collector holding one distribution per label value set.
type Histogram struct {
	desc    *prometheus.Desc
	buckets []float64

	mu   sync.Mutex
	sets map[string]population
}

type population struct {
	labels []string
	counts map[float64]uint64
	count  uint64
	sum    float64
}

// New returns a Histogram with the given upper bucket bounds (sorted, +Inf implied) and
// variable label names. Register it on a registry.
func New(name, help string, buckets []float64, labels ...string) *Histogram {
	b := slices.Clone(buckets)
	slices.Sort(b)
	return &Histogram{
		desc:    prometheus.NewDesc(name, help, labels, nil),
		buckets: slices.Compact(b),
		sets:    map[string]population{},
	}
}

// Set replaces the distribution for labelValues with values.
func (h *Histogram) Set(values []float64, labelValues ...string) {
	p := population{labels: slices.Clone(labelValues), counts: make(map[float64]uint64, len(h.buckets))}
	for _, ub := range h.buckets {
		p.counts[ub] = 0 // every bucket is exported, empty or not
	}
	for _, v := range values {
		p.count++
		p.sum += v
		// Buckets are cumulative: a value counts in every bucket whose bound it is under.
		i, _ := slices.BinarySearch(h.buckets, v)
		for _, ub := range h.buckets[i:] {
			p.counts[ub]++
		}
	}
	h.mu.Lock()
	h.sets[strings.Join(labelValues, "\xff")] = p
	h.mu.Unlock()
}

// Delete drops the distribution for labelValues.
func (h *Histogram) Delete(labelValues ...string) {
	h.mu.Lock()
	delete(h.sets, strings.Join(labelValues, "\xff"))
	h.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (h *Histogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector.
func (h *Histogram) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.sets {
		ch <- prometheus.MustNewConstHistogram(h.desc, p.count, p.sum, p.counts, p.labels...)
	}
}
