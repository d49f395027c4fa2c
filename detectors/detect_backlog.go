package detectors

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/series"
)

var backlogKinds = []string{"backlog_growth", "backlog_stalled"}

// backlogDetector judges every queue for growth and stalls. A queue that has held
// messages keeps a bucket history here, fed with the samples since the last pass.
type backlogDetector struct {
	opts         BacklogOptions
	maxMetrics   int
	maxHistories int
	eta          *prometheus.GaugeVec

	etaQueues map[string]bool
	queues    map[string]*queueState
}

func newBacklogDetector(o *EngineOptions, f promauto.Factory) Detector {
	return &backlogDetector{
		opts: o.Backlog, maxMetrics: o.MaxQueueMetrics, maxHistories: o.MaxQueueHistories,
		eta: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_backlog_eta_seconds",
			Help: "Time until the queue reaches detectors.backlog_limit at its current growth; absent while the queue is not growing.",
		}, []string{"queue"}),
		etaQueues: map[string]bool{},
		queues:    map[string]*queueState{},
	}
}

// BacklogDetector is the backlog detector's name in its DetectorStatus, whose Queues
// the API shows as each queue's verdict and ETA.
const BacklogDetector = "backlog"

func (d *backlogDetector) Name() string { return BacklogDetector }

func (d *backlogDetector) Detect(_ context.Context, p *Pass) ([]Observation, DetectorStatus, error) {
	st := DetectorStatus{Detector: d.Name(), At: p.Now}
	var out []Observation
	names := queueNames(p)
	for q := range d.queues {
		if _, ok := slices.BinarySearch(names, q); !ok {
			delete(d.queues, q) // the queue is gone
		}
	}
	for _, q := range names {
		active := func(kind string) bool { return p.Firing(kind, map[string]string{"queue": q}) }
		o, qs := d.evaluateQueue(p, q, active)
		out = append(out, o...)
		st.Evaluated++
		if qs.Insufficient {
			st.Insufficient++
		}
		if qs.Growing || qs.Stalled {
			p.NotDraining = append(p.NotDraining, q)
		}
		if len(st.Queues) < 200 {
			st.Queues = append(st.Queues, qs)
		}
		if d.etaQueues[q] || len(d.etaQueues) < d.maxMetrics {
			d.etaQueues[q] = true
			// No sentinel: a queue that is not growing has no ETA series at all.
			if qs.ETASeconds >= 0 {
				d.eta.WithLabelValues(q).Set(qs.ETASeconds)
			} else {
				d.eta.DeleteLabelValues(q)
			}
		}
	}
	return out, st, nil
}

// queueNames is every queue in the last snapshot or with a depth series.
func queueNames(p *Pass) []string {
	names := map[string]bool{}
	for _, q := range p.Snapshots.Queues().Queues {
		names[q.Name] = true
	}
	prefix := series.Key(series.QueueDepth, "")
	for _, k := range p.Series.Keys(prefix) {
		names[strings.TrimPrefix(k, prefix)] = true
	}
	return slices.Sorted(maps.Keys(names))
}

// evaluateQueue judges one queue. Weeks of comparable days are at hand for a queue
// with a history here even though the series store keeps days of raw samples; the
// others are judged on the store's recent samples alone (nearly empty queues cannot
// grow past the floor without first coming near it, and then their history is taken
// from the store).
func (d *backlogDetector) evaluateQueue(p *Pass, q string, active func(string) bool) ([]Observation, BacklogStatus) {
	bo, now := d.opts, p.Now
	key := series.Key(series.QueueDepth, q)
	ageKey := series.Key(series.QueueOldestAge, q)
	qs := d.queues[q]
	if qs == nil {
		last, ok := p.Series.Last(key)
		hot := ok && last.V >= bo.Floor/2
		if !hot || len(d.queues) >= d.maxHistories {
			// Nearly empty: the recent samples are enough to judge it. Beyond the bound:
			// what the store holds of the last day.
			back := 2 * bo.ShortWindow
			if hot {
				back = bo.LongWindow + bo.Season
			}
			recent := p.Series.Range(key, now.Add(-back), now)
			ages := p.Series.Range(ageKey, now.Add(-back), now)
			return EvaluateBacklogAge(q, recent, ages, now, active, bo)
		}
		all := p.Series.Range(key, now.Add(-bo.History()), now)
		qs = newQueueState(bo, backlogWidth(all, bo))
		for _, pt := range all {
			qs.add(pt)
		}
		for _, pt := range p.Series.Range(ageKey, now.Add(-2*bo.StallAfter-time.Hour), now) {
			qs.addAge(pt)
		}
		d.queues[q] = qs
		return qs.evaluate(q, now, active)
	}
	var lastT, lastAge time.Time
	if n := len(qs.raw); n > 0 {
		lastT = qs.raw[n-1].T
	}
	if n := len(qs.ages); n > 0 {
		lastAge = qs.ages[n-1].T
	}
	for _, pt := range p.Series.Range(key, lastT.Add(time.Nanosecond), now) {
		qs.add(pt)
	}
	for _, pt := range p.Series.Range(ageKey, lastAge.Add(time.Nanosecond), now) {
		qs.addAge(pt)
	}
	return qs.evaluate(q, now, active)
}
