package celery

import (
	"context"
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// OtherQueues is the queue label value under which queues beyond max_labelled_queues
// are summed (or, for ages and ratios, maxed).
const OtherQueues = "__other__"

// Unattributed is the queue label value of unacked messages that could not be traced to
// a queue (beyond the scan limit, undecodable, or routed to no known queue), so that the
// sum over queues is the broker's whole count.
const Unattributed = "__unattributed__"

type metrics struct {
	depth         *prometheus.GaugeVec
	unacked       *prometheus.GaugeVec
	overdue       *prometheus.GaugeVec
	oldestAge     *prometheus.GaugeVec
	distinctTeams *prometheus.GaugeVec
	dupRatio      *prometheus.GaugeVec
	queues        prometheus.Gauge
	undecodable   prometheus.Counter
	oversized     prometheus.Counter
	readBytes     prometheus.Counter
	badBindings   prometheus.Counter
	serverErrors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, steps []int) *metrics {
	f := promauto.With(reg)
	return &metrics{
		depth: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_celery_queue_depth",
			Help: "Messages waiting in a queue's priority list (kombu priority step).",
		}, []string{"queue", "priority"}),
		// One series per queue plus Unattributed: the sum over queue is HLEN unacked.
		unacked: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_celery_unacked_messages",
			Help: "Messages delivered to a worker and not yet acknowledged, by queue (from a bounded scan; the rest under queue=\"" + Unattributed + "\"); the sum is the broker's HLEN unacked.",
		}, []string{"queue"}),
		overdue: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_celery_overdue_messages",
			Help: "Unacked messages older than the visibility timeout (due for redelivery), by queue as for flagwarden_celery_unacked_messages.",
		}, []string{"queue"}),
		oldestAge: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_celery_queue_oldest_age_seconds",
			Help: "How long the oldest waiting message has been seen (a lower bound).",
		}, []string{"queue"}),
		distinctTeams: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_celery_backlog_distinct_teams",
			Help: "Distinct team ids in the sampled backlog of the queue.",
		}, []string{"queue"}),
		dupRatio: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flagwarden_celery_backlog_duplicate_ratio",
			Help: "Share of the sampled backlog a per-team dedup would remove (1 - distinct teams / messages with a team).",
		}, []string{"queue"}),
		queues: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_celery_queues",
			Help: "Queues measured: configured plus discovered from bindings.",
		}),
		undecodable: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_celery_undecodable_messages_total",
			Help: "Sampled or unacked messages that were not readable Celery JSON messages (counted each time one is read).",
		}),
		oversized: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_celery_oversized_messages_total",
			Help: "Sampled messages larger than the per-message limit (or the pass's sample budget), counted and skipped without leaving Redis.",
		}),
		readBytes: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_celery_read_bytes_total",
			Help: "Message bytes the collector read from the broker (samples, queue ends, unacked entry tails).",
		}),
		badBindings: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_celery_malformed_bindings_total",
			Help: "Binding set members that did not split into three fields with the configured sep.",
		}),
		serverErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_celery_key_errors_total",
			Help: "Queue keys Redis refused to read as lists (for example WRONGTYPE); counted as empty.",
		}),
	}
}

// set exports q with queue labels limited to labelled; every other queue is folded into
// OtherQueues. Label values exported last time but not now are deleted, so a queue that
// drops out of the labelled set does not leave a frozen series behind. It returns the
// label values now exported.
func (m *metrics) set(q snapshot.Queues, labelled, prev map[string]bool, steps []int) map[string]bool {
	type agg struct {
		byPri                   map[int]int64
		unacked, overdue, teams int64
		age, ratio              float64
		sampled                 bool
	}
	out := map[string]*agg{}
	get := func(name string) *agg {
		a := out[name]
		if a == nil {
			a = &agg{byPri: map[int]int64{}}
			out[name] = a
		}
		return a
	}
	for n := range labelled {
		get(n)
	}
	for _, x := range q.Queues {
		name := x.Name
		if !labelled[name] {
			name = OtherQueues
		}
		a := get(name)
		for s, v := range x.ByPriority {
			a.byPri[s] += v
		}
		a.unacked += x.Unacked
		a.overdue += x.Overdue
		a.age = max(a.age, x.OldestAge.Seconds())
		if x.Composition.Sampled > 0 {
			a.sampled = true
			a.teams = max(a.teams, int64(x.Composition.DistinctTeams))
			a.ratio = max(a.ratio, x.Composition.DuplicateRatio)
		}
	}
	var unacked, overdue int64
	for _, a := range out {
		unacked += a.unacked
		overdue += a.overdue
	}
	m.unacked.WithLabelValues(Unattributed).Set(float64(max(0, q.Unacked-unacked)))
	m.overdue.WithLabelValues(Unattributed).Set(float64(max(0, q.Overdue-overdue)))
	now := make(map[string]bool, len(out))
	for name, a := range out {
		now[name] = true
		for _, s := range steps {
			m.depth.WithLabelValues(name, strconv.Itoa(s)).Set(float64(a.byPri[s]))
		}
		m.unacked.WithLabelValues(name).Set(float64(a.unacked))
		m.overdue.WithLabelValues(name).Set(float64(a.overdue))
		m.oldestAge.WithLabelValues(name).Set(a.age)
		if a.sampled {
			m.distinctTeams.WithLabelValues(name).Set(float64(a.teams))
			m.dupRatio.WithLabelValues(name).Set(a.ratio)
		} else {
			m.distinctTeams.DeleteLabelValues(name)
			m.dupRatio.DeleteLabelValues(name)
		}
	}
	for name := range prev {
		if now[name] {
			continue
		}
		for _, s := range steps {
			m.depth.DeleteLabelValues(name, strconv.Itoa(s))
		}
		for _, v := range []*prometheus.GaugeVec{m.unacked, m.overdue, m.oldestAge, m.distinctTeams, m.dupRatio} {
			v.DeleteLabelValues(name)
		}
	}
	m.queues.Set(float64(len(q.Queues)))
	return now
}

// execTolerant runs a pipeline and fails only when the connection fails: a command that
// Redis answered with an error (a nil reply, a key of the wrong type) is left on the
// command for the caller to look at.
func execTolerant(ctx context.Context, pipe redis.Pipeliner) error {
	_, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return nil
	}
	return err
}
