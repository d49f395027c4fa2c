package rebuild

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/kombu"
)

// metrics are the engine's flagwarden_rebuild_* series. Labels are bounded: lanes,
// results, intake sources and outcomes; never team ids.
type metrics struct {
	builds      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	peakHeap    prometheus.Gauge
	peakLive    prometheus.Gauge
	firstPass   *prometheus.HistogramVec
	predictions *prometheus.CounterVec
	shared      *prometheus.CounterVec
	running     *prometheus.GaugeVec
	waiting     *prometheus.GaugeVec
	budget      prometheus.Gauge
	inUse       prometheus.Gauge
	quarantined prometheus.Gauge
	requests    *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	dbRetries   prometheus.Counter
	rescued     prometheus.Counter
}

// buildBuckets span a build and its first pass: 10 ms to about 3 minutes.
var buildBuckets = prometheus.ExponentialBuckets(0.01, 3, 10)

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		builds: f.NewCounterVec(prometheus.CounterOpts{Name: "flagwarden_rebuild_builds_total",
			Help: "Builds finished, by lane and result (ok, unchanged, failed, rerouted)."}, []string{"lane", "result"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{Name: "flagwarden_rebuild_build_duration_seconds",
			Help: "Duration of one build.", Buckets: buildBuckets}, []string{"lane"}),
		peakHeap: f.NewGauge(prometheus.GaugeOpts{Name: "flagwarden_rebuild_build_peak_heap_bytes",
			Help: "Peak Go heap of the process during the last build: live objects and garbage not yet collected."}),
		peakLive: f.NewGauge(prometheus.GaugeOpts{Name: "flagwarden_rebuild_build_peak_live_heap_bytes",
			Help: "Peak live heap of the process during the last build: what the garbage collector found reachable."}),
		firstPass: f.NewHistogramVec(prometheus.HistogramOpts{Name: "flagwarden_rebuild_first_pass_duration_seconds",
			Help: "Duration of a build's first pass, the flag database extracting each flag's references.", Buckets: buildBuckets}, []string{"lane"}),
		predictions: f.NewCounterVec(prometheus.CounterOpts{Name: "flagwarden_rebuild_predictions_total",
			Help: "Builds by where their prediction came from (references: extracted by the first pass; previous_build: this process's last build of the team; shared: any replica's, from the shared store) and whether it held (one streaming pass) or missed."}, []string{"source", "result"}),
		shared: f.NewCounterVec(prometheus.CounterOpts{Name: "flagwarden_rebuild_shared_predictions_total",
			Help: "Builds' operations on the shared prediction store: load (loaded, absent, invalid, error) and save (saved, kept, too_large, error)."}, []string{"op", "result"}),
		running: f.NewGaugeVec(prometheus.GaugeOpts{Name: "flagwarden_rebuild_lane_running",
			Help: "Builds running in this process, by lane."}, []string{"lane"}),
		waiting: f.NewGaugeVec(prometheus.GaugeOpts{Name: "flagwarden_rebuild_lane_waiting",
			Help: "Builds waiting across the deployment, by lane (as of the last status read)."}, []string{"lane"}),
		budget: f.NewGauge(prometheus.GaugeOpts{Name: "flagwarden_rebuild_budget_bytes",
			Help: "Memory budget shared by this process's builds."}),
		inUse: f.NewGauge(prometheus.GaugeOpts{Name: "flagwarden_rebuild_budget_in_use_bytes",
			Help: "Estimated bytes held by this process's running builds."}),
		quarantined: f.NewGauge(prometheus.GaugeOpts{Name: "flagwarden_rebuild_quarantined_teams",
			Help: "Teams in quarantine."}),
		requests: f.NewCounterVec(prometheus.CounterOpts{Name: "flagwarden_rebuild_requests_total",
			Help: "Rebuild requests by intake source and outcome (inserted, joined, unknown_team, error)."}, []string{"source", "outcome"}),
		dbRetries: f.NewCounter(prometheus.CounterOpts{Name: "flagwarden_rebuild_db_retries_total",
			Help: "State-database operations repeated because their connection was dead (terminated backend, failover)."}),
		rescued: f.NewCounter(prometheus.CounterOpts{Name: "flagwarden_rebuild_rescued_builds_total",
			Help: "Running builds of processes that stopped heartbeating, made available again by this process."}),
		skipped: f.NewCounterVec(prometheus.CounterOpts{Name: "flagwarden_rebuild_skipped_flags_total",
			Help: "Flags left out of published payloads because PostHog's Rust reader would refuse the team's payload with them, by reason."}, []string{"reason"}),
	}
	for _, r := range SkipReasons() {
		m.skipped.WithLabelValues(r)
	}
	for _, l := range []Lane{LaneSmall, LaneLarge, LaneQuarantine} {
		m.running.WithLabelValues(string(l))
		m.waiting.WithLabelValues(string(l))
		for _, r := range []string{"ok", "unchanged", "failed"} {
			m.builds.WithLabelValues(string(l), r)
		}
	}
	return m
}

// celeryMetrics are the Celery consumer's flagwarden_rebuild_celery_* series; labels
// are the fixed outcome and refusal reason sets.
type celeryMetrics struct {
	messages      *prometheus.CounterVec
	dead          *prometheus.CounterVec
	restored      prometheus.Counter
	readBytes     prometheus.Counter
	deadLetterLen prometheus.Gauge
	pending       prometheus.Gauge
	batch         prometheus.Gauge
}

func newCeleryMetrics(reg prometheus.Registerer) *celeryMetrics {
	f := promauto.With(reg)
	m := &celeryMetrics{
		messages: f.NewCounterVec(prometheus.CounterOpts{Name: "flagwarden_rebuild_celery_messages_total",
			Help: "Celery messages settled by the consumer, by outcome (requested: acked after its rebuild request was durable; unknown_team: acked, the team is not in the flag database; dead_lettered)."},
			[]string{"outcome"}),
		dead: f.NewCounterVec(prometheus.CounterOpts{Name: "flagwarden_rebuild_celery_dead_letters_total",
			Help: "Celery messages moved to the dead-letter list, by reason (not_celery, bad_encoding, team_id, unknown_task, oversized)."},
			[]string{"reason"}),
		restored: f.NewCounter(prometheus.CounterOpts{Name: "flagwarden_rebuild_celery_restored_messages_total",
			Help: "Unacked deliveries of a stopped consumer put back on the queue after the visibility timeout."}),
		readBytes: f.NewCounter(prometheus.CounterOpts{Name: "flagwarden_rebuild_celery_read_bytes_total",
			Help: "Message bytes the consumer read from the broker (oversized messages are never read)."}),
		deadLetterLen: f.NewGauge(prometheus.GaugeOpts{Name: "flagwarden_rebuild_celery_dead_letter_messages",
			Help: "Length of the consumer's dead-letter list."}),
		pending: f.NewGauge(prometheus.GaugeOpts{Name: "flagwarden_rebuild_celery_pending_messages",
			Help: "Valid messages taken and waiting for their rebuild request before the ack."}),
		batch: f.NewGauge(prometheus.GaugeOpts{Name: "flagwarden_rebuild_celery_batch_messages",
			Help: "Messages the consumer takes per pass, scaled to the drain rate."}),
	}
	for _, o := range []string{"requested", "unknown_team", "dead_lettered"} {
		m.messages.WithLabelValues(o)
	}
	for _, r := range kombu.Reasons() {
		m.dead.WithLabelValues(string(r))
	}
	return m
}
