package mixin

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// The panels. Every replica measures the same broker, pods and caches, so replicas are
// combined with max; per-process numbers (builds running, memory) are summed or shown
// per instance.

func (c Config) overview() *dashboard.DashboardBuilder { //nolint:staticcheck // classicModel
	v := vars{c}
	t := c.Thresholds
	ns := `namespace=~"$namespace"`
	qu := `queue=~"$queue"`
	rows := []row{
		{"Broker backlog", []panel{
			{title: "Queue depth by queue and priority", unit: "short", w: 12,
				desc:    "Messages waiting in each Celery queue, per kombu priority list (0 is the highest priority). A backlog that only grows means rebuilds arrive faster than workers finish them.",
				queries: []q{{fmt.Sprintf("max by (queue, priority) (%s)", v.s("flagwarden_celery_queue_depth", qu)), "{{queue}} priority {{priority}}", false}}},
			{title: "Unacked and overdue messages", unit: "short", w: 12,
				desc: "Unacked: delivered to a worker and not yet acknowledged (prefetched or running). Overdue: unacked for longer than the visibility timeout, so due for redelivery: lost to a killed worker or stuck. Overdue messages that keep coming back are the signature of OOM-killed tasks. __unattributed__ holds what could not be traced to a queue.",
				queries: []q{
					{fmt.Sprintf("max by (queue) (%s)", v.s("flagwarden_celery_unacked_messages", `queue=~"$queue|__unattributed__"`)), "{{queue}} unacked", false},
					{fmt.Sprintf("max by (queue) (%s)", v.s("flagwarden_celery_overdue_messages", `queue=~"$queue|__unattributed__"`)), "{{queue}} overdue", false},
				}},
			{title: "Backlog: distinct teams", unit: "short", w: 8,
				desc:    "How many different teams the sampled backlog of each queue is for. A deep queue with few distinct teams is one team's rebuilds repeated over and over.",
				queries: []q{{fmt.Sprintf("max by (queue) (%s)", v.s("flagwarden_celery_backlog_distinct_teams", qu)), "{{queue}}", false}}},
			{title: "Backlog: duplicate ratio", unit: "percentunit", w: 8,
				desc:    "Share of the sampled backlog that per-team deduplication would remove (1 - distinct teams / messages with a team). Near 100% means the queue is mostly repeats of the same teams' rebuilds.",
				queries: []q{{fmt.Sprintf("max by (queue) (%s)", v.s("flagwarden_celery_backlog_duplicate_ratio", qu)), "{{queue}}", false}}},
			{title: "Oldest waiting message", unit: "s", w: 8,
				desc:    "How long the oldest waiting message of each queue has been seen (a lower bound). How far behind the workers are, in time.",
				queries: []q{{fmt.Sprintf("max by (queue) (%s)", v.s("flagwarden_celery_queue_oldest_age_seconds", qu)), "{{queue}}", false}}},
			{title: "Time until the backlog limit", unit: "s", w: 24, h: 6,
				desc:    fmt.Sprintf("flagwarden's backlog detector: time until each queue reaches detectors.backlog_limit (%d) at its current growth. A queue that is not growing has no line. Reported by the leader replica.", t.BacklogLimit),
				queries: []q{{fmt.Sprintf("max by (queue) (%s)", v.s("flagwarden_backlog_eta_seconds", qu)), "{{queue}}", false}}},
		}},
		{"Workers", []panel{
			{title: "Worker pods", unit: "short", w: 12,
				desc: "Celery worker pods matching kubernetes.label_selector, those Ready, and those waiting in CrashLoopBackOff. Pods in back-off run nothing and cannot be OOM-killed: falling OOM kills while pods sit here is not a recovery.",
				queries: []q{
					{fmt.Sprintf("max by (namespace) (%s)", v.s("flagwarden_pods", ns)), "{{namespace}} pods", false},
					{fmt.Sprintf("max by (namespace) (%s)", v.s("flagwarden_pods_ready", ns)), "{{namespace}} ready", false},
					{fmt.Sprintf("max by (namespace) (%s)", v.s("flagwarden_pods_crashlooping", ns)), "{{namespace}} crash-looping", false},
				}},
			{title: "Worker memory against limit", unit: "percentunit", w: 12, thresholds: []float64{t.MemoryNearLimit},
				desc:    fmt.Sprintf("Memory working set of each worker pod as a share of its limit (from the optional PromQL source; no line while usage is unknown). Above %g%% (detectors.memory_near_limit) the next large rebuild will be OOM-killed.", t.MemoryNearLimit*100),
				queries: []q{{fmt.Sprintf("max by (namespace, pod) (%s)", v.s("flagwarden_pods_memory_working_set_ratio", ns)), "{{pod}}", false}}},
			{title: "Worker restarts", unit: "short", w: 12,
				desc:    "Container restarts of each worker pod seen by the pod collector. Restarts that come in waves are crash loops; compare with OOM kills.",
				queries: []q{{fmt.Sprintf("max by (namespace, pod) (increase(%s[$__rate_interval]))", v.s("flagwarden_pods_restarts_total", ns)), "{{pod}}", false}}},
			{title: "OOM kills", unit: "short", w: 12, thresholds: []float64{1, float64(t.OOMCritical)},
				desc:    "Worker containers killed for exceeding their memory limit (last state OOMKilled, exit 137), per pod, each counted once. A few kills a day look small; each one loses the task in flight and its retry will likely die the same way.",
				queries: []q{{fmt.Sprintf("max by (namespace, pod) (increase(%s[$__rate_interval]))", v.s("flagwarden_pods_oom_kills_total", ns)), "{{pod}}", false}}},
		}},
		{"Teams", []panel{
			{title: "Largest team", unit: "bytes", w: 12, thresholds: []float64{float64(t.OutlierMinBytes)},
				desc:    "Estimated cache payload of the largest team, from the flag database. Below detectors.outlier_min_bytes no team is an outlier. The teams dashboard has the whole distribution; the team's id is on flagwarden's own dashboard, never in a label.",
				queries: []q{{fmt.Sprintf("max(%s)", v.s("flagwarden_teams_largest_payload_bytes")), "largest", false}}},
			{title: "Outlier score", unit: "none", w: 12, thresholds: []float64{t.OutlierMinZ},
				desc:    fmt.Sprintf("The largest robust z-score of any team's log payload size in the last detector pass (median and MAD over all teams). Above %g a team is an outlier; flagwarden's outlier_team findings name it.", t.OutlierMinZ),
				queries: []q{{fmt.Sprintf("max(%s)", v.s("flagwarden_outlier_max_score")), "max robust z", false}}},
		}},
		{"Rebuild engine", []panel{
			{title: "Rebuild lanes", unit: "short", w: 8,
				desc: "Builds running in each lane (small, large, quarantine), summed over replicas, and builds waiting deployment-wide. Waiting builds with nothing running mean the memory budget or a lane's workers are the bottleneck.",
				queries: []q{
					{fmt.Sprintf("sum by (lane) (%s)", v.s("flagwarden_rebuild_lane_running")), "{{lane}} running", false},
					{fmt.Sprintf("max by (lane) (%s)", v.s("flagwarden_rebuild_lane_waiting")), "{{lane}} waiting", false},
				}},
			{title: "Builds by result", unit: "ops", w: 8,
				desc:    "Builds finished per second, by lane and result: ok, unchanged (payload identical, nothing published), failed, rerouted (sent to another lane after sizing).",
				queries: []q{{fmt.Sprintf("sum by (lane, result) (rate(%s[$__rate_interval]))", v.s("flagwarden_rebuild_builds_total")), "{{lane}} {{result}}", false}}},
			{title: "Rebuild requests", unit: "reqps", w: 8,
				desc:    "Rebuild requests per second by intake (API, Celery tasks, NOTIFY, sweep) and outcome: inserted as a new job, joined to one already waiting for the same team (deduplicated), unknown team, error.",
				queries: []q{{fmt.Sprintf("sum by (source, outcome) (rate(%s[$__rate_interval]))", v.s("flagwarden_rebuild_requests_total")), "{{source}} {{outcome}}", false}}},
			{title: "Build duration", unit: "s", w: 8,
				desc: "Median and 99th percentile time of one build, by lane, and the median of its first pass (the flag database extracting references; the rest is encoding and publishing).",
				queries: []q{
					{fmt.Sprintf("histogram_quantile(0.5, sum by (le, lane) (rate(%s[$__rate_interval])))", v.s("flagwarden_rebuild_first_pass_duration_seconds_bucket")), "{{lane}} first pass p50", false},
					{fmt.Sprintf("histogram_quantile(0.5, sum by (le, lane) (rate(%s[$__rate_interval])))", v.s("flagwarden_rebuild_build_duration_seconds_bucket")), "{{lane}} p50", false},
					{fmt.Sprintf("histogram_quantile(0.99, sum by (le, lane) (rate(%s[$__rate_interval])))", v.s("flagwarden_rebuild_build_duration_seconds_bucket")), "{{lane}} p99", false},
				}},
			{title: "Build predictions", unit: "ops", w: 8,
				desc: "Builds per second by where their first attempt's prediction came from (references: the first pass extracted every flag's; previous_build: only the flags changed since the team's last build on that replica; shared: since its last build on any replica, from the shared store in Redis) and whether it held (one streaming pass) or missed (a second pass); and what builds did with the shared store (load: loaded, absent, invalid, error; save: saved, kept, too_large, error). Misses mean edits that remove references; they cost a pass, never a wrong payload.",
				queries: []q{
					{fmt.Sprintf("sum by (source, result) (rate(%s[$__rate_interval]))", v.s("flagwarden_rebuild_predictions_total")), "{{source}} {{result}}", false},
					{fmt.Sprintf("sum by (op, result) (rate(%s[$__rate_interval]))", v.s("flagwarden_rebuild_shared_predictions_total")), "shared {{op}} {{result}}", false},
				}},
			{title: "Build peak memory against the budget", unit: "bytes", w: 8,
				desc: "Per replica: the peak Go heap during the last build (garbage included) and its peak live heap (what the builds held), the estimated bytes the running builds hold, and the memory budget they share (rebuild.memory_budget). The peaks staying flat as teams grow is the streaming build working.",
				queries: []q{
					{fmt.Sprintf("max by (instance) (%s)", v.s("flagwarden_rebuild_build_peak_heap_bytes")), "{{instance}} peak heap", false},
					{fmt.Sprintf("max by (instance) (%s)", v.s("flagwarden_rebuild_build_peak_live_heap_bytes")), "{{instance}} peak live heap", false},
					{fmt.Sprintf("max by (instance) (%s)", v.s("flagwarden_rebuild_budget_in_use_bytes")), "{{instance}} budget in use", false},
					{fmt.Sprintf("max by (instance) (%s)", v.s("flagwarden_rebuild_budget_bytes")), "{{instance}} budget", false},
				}},
		}},
		{"Findings and paging", []panel{
			{title: "Active findings", unit: "short", w: 8,
				desc:    "Pending and firing findings by kind and severity, from the leader's detectors. Each kind pages as the Flagwarden… alert of the same meaning (docs/runbook.md).",
				queries: []q{{fmt.Sprintf("sum by (kind, severity) (%s)", v.s("flagwarden_findings_active")), "{{kind}} {{severity}}", false}}},
			{title: "Alerts sent, failed and dropped", unit: "cps", w: 8,
				desc: "Alerts per second accepted by Alertmanager, POSTs that failed, and alerts dropped because the send queue was full or Alertmanager rejected them. Any drop is a lost page.",
				queries: []q{
					{fmt.Sprintf("sum(rate(%s[$__rate_interval]))", v.s("flagwarden_notifier_alerts_sent_total")), "sent", false},
					{fmt.Sprintf("sum(rate(%s[$__rate_interval]))", v.s("flagwarden_notifier_errors_total")), "failed", false},
					{fmt.Sprintf("sum(rate(%s[$__rate_interval]))", v.s("flagwarden_notifier_dropped_total")), "dropped", false},
				}},
			{title: "Notifier queue", unit: "short", w: 8,
				desc:    "Alerts waiting to be sent, over every Alertmanager's queue. A queue that grows while errors rise means Alertmanager is unreachable; at alertmanager.queue_capacity alerts start being dropped.",
				queries: []q{{fmt.Sprintf("sum(%s)", v.s("flagwarden_notifier_queue_length")), "queued", false}}},
		}},
		{"flagwarden", []panel{
			{title: "Collector health", unit: "short", w: 8,
				desc:    "1 when a loop's last pass succeeded, per loop and replica. A loop at 0 means its source's panels show stale numbers: quiet is not all clear.",
				queries: []q{{fmt.Sprintf("min by (collector, instance) (%s)", v.s("flagwarden_collector_up")), "{{collector}} {{instance}}", false}}},
			{title: "Time since last successful pass", unit: "s", w: 8, thresholds: []float64{t.CollectorDownAfter.Seconds()},
				desc:    "Seconds since each loop last succeeded. It should stay near the loop's interval; FlagwardenCollectorDown fires after detectors.collector_down_after.",
				queries: []q{{fmt.Sprintf("time() - max by (collector) (%s)", v.s("flagwarden_collector_last_success_timestamp_seconds")), "{{collector}}", false}}},
			{title: "Failed passes and missed iterations", unit: "ops", w: 8,
				desc: "Passes per second that failed or timed out, and ticks skipped because the previous pass was still running (the loop is slower than its interval).",
				queries: []q{
					{fmt.Sprintf("sum by (collector) (rate(%s[$__rate_interval]))", v.s("flagwarden_collector_failures_total")), "{{collector}} failed", false},
					{fmt.Sprintf("sum by (collector) (rate(%s[$__rate_interval]))", v.s("flagwarden_collector_missed_iterations_total")), "{{collector}} missed", false},
				}},
			{title: "Loop pass duration", unit: "s", w: 12,
				desc:    "99th percentile time of one pass of each collector and of the detector loop. A pass near its interval starts missing ticks; near its timeout it starts failing.",
				queries: []q{{fmt.Sprintf("histogram_quantile(0.99, sum by (le, collector) (rate(%s[$__rate_interval])))", v.s("flagwarden_collector_pass_duration_seconds_bucket")), "{{collector}} p99", false}}},
			{title: "Unreadable input", unit: "cps", w: 12,
				desc: "Input flagwarden could not read and skipped, per second: broker messages that are not Celery JSON, queue keys of the wrong Redis type, malformed kombu bindings, unparsable cache metadata. Bad input is counted and never stops a collector.",
				queries: []q{
					{fmt.Sprintf("sum(rate(%s[$__rate_interval]))", v.s("flagwarden_celery_undecodable_messages_total")), "undecodable messages", false},
					{fmt.Sprintf("sum(rate(%s[$__rate_interval]))", v.s("flagwarden_celery_key_errors_total")), "queue key errors", false},
					{fmt.Sprintf("sum(rate(%s[$__rate_interval]))", v.s("flagwarden_celery_malformed_bindings_total")), "malformed bindings", false},
					{fmt.Sprintf("sum(rate(%s[$__rate_interval]))", v.s("flagwarden_cache_unreadable_entries_total")), "unreadable cache entries", false},
				}},
			{title: "API requests", unit: "reqps", w: 12,
				desc: "REST API requests per second by route template and status code, over all replicas; 503s from the concurrency limit are counted separately.",
				queries: []q{
					{fmt.Sprintf("sum by (route, code) (rate(%s[$__rate_interval]))", v.s("flagwarden_http_requests_total")), "{{route}} {{code}}", false},
					{fmt.Sprintf("sum(rate(%s[$__rate_interval]))", v.s("flagwarden_http_concurrency_limit_exceeded_total")), "over the concurrency limit", false},
				}},
			{title: "API latency", unit: "s", w: 12,
				desc:    "99th percentile API response time by route template.",
				queries: []q{{fmt.Sprintf("histogram_quantile(0.99, sum by (le, route) (rate(%s[$__rate_interval])))", v.s("flagwarden_http_request_duration_seconds_bucket")), "{{route}} p99", false}}},
			{title: "In-memory series", unit: "bytes", w: 8,
				desc:    "Bytes in each replica's in-memory history (bounded by collectors.series.*); part of the memory that rebuild.go_memory_limit must leave room for.",
				queries: []q{{fmt.Sprintf("max by (instance) (%s)", v.s("flagwarden_series_memory_bytes")), "{{instance}} bytes", false}}},
			{kind: "stat", title: "Leader", unit: "short", w: 4, thresholds: []float64{1, 2},
				desc:    "Replicas that currently hold the leader lock and run the detectors and paging. Exactly one is healthy; zero means nobody pages, two a split that the lock should make impossible.",
				queries: []q{{fmt.Sprintf("sum(%s)", v.s("flagwarden_leader_is_leader")), "leaders", false}}},
			{title: "Process memory", unit: "bytes", w: 12,
				desc: "Resident memory and Go heap in use per replica, with the version each runs, to compare with the container limit and rebuild.go_memory_limit (docs/deploy.md).",
				queries: []q{
					{fmt.Sprintf("max by (instance) (%s)", v.s("process_resident_memory_bytes")), "{{instance}} resident", false},
					{fmt.Sprintf("max by (instance) (%s)", v.s("go_memstats_heap_inuse_bytes")), "{{instance}} heap in use", false},
				}},
			{kind: "stat", title: "Versions", unit: "short", w: 24, h: 4,
				desc:    "Replicas by the version and revision they run (flagwarden_build_info); two lines during a rollout, one otherwise.",
				queries: []q{{fmt.Sprintf("count by (version, revision) (%s)", v.s("flagwarden_build_info")), "{{version}} ({{revision}})", false}}},
		}},
	}
	return c.dashboard(OverviewUID, "flagwarden",
		"Celery flag-cache backlog, worker health, the rebuild engine, paging and flagwarden itself, as flagwarden measures them. Team sizes and cache staleness are on the flagwarden teams dashboard.",
		[]string{"flagwarden", "celery", "feature-flags"}, c.variables(true, true), rows)
}

func (c Config) teams() *dashboard.DashboardBuilder { //nolint:staticcheck // classicModel
	v := vars{c}
	t := c.Thresholds
	payload := v.s("flagwarden_teams_payload_bytes_bucket")
	lag := v.s("flagwarden_cache_lag_seconds_bucket")
	rows := []row{
		{"Team sizes", []panel{
			{kind: "heatmap", title: "Team size distribution", unit: "bytes", w: 24, h: 9,
				desc:    "How many teams have an estimated cache payload in each size band (bands span a factor of 4 from 1 KiB), over time, from the flag database. One team alone in a band far above the rest is the outlier whose rebuild needs more memory than a worker has.",
				queries: []q{{fmt.Sprintf("max by (le) (%s)", payload), "{{le}}", true}}},
			{title: "Team size quantiles", unit: "bytes", w: 12, thresholds: []float64{float64(t.OutlierMinBytes)},
				desc: "Median and 99th percentile over teams (interpolated within the size bands) and the largest team exactly. Below detectors.outlier_min_bytes no team is an outlier.",
				queries: []q{
					{fmt.Sprintf("histogram_quantile(0.5, max by (le) (%s))", payload), "p50", false},
					{fmt.Sprintf("histogram_quantile(0.99, max by (le) (%s))", payload), "p99", false},
					{fmt.Sprintf("max(%s)", v.s("flagwarden_teams_largest_payload_bytes")), "largest", false},
				}},
			{title: "Team outlier score", unit: "none", w: 6, thresholds: []float64{t.OutlierMinZ},
				desc:    fmt.Sprintf("The largest robust z-score of any team's log payload size (median and MAD over all teams). Above %g, and at least detectors.outlier_min_bytes, a team is an outlier: FlagwardenOutlierTeam. The team's id is on flagwarden's per-team pages (link above).", t.OutlierMinZ),
				queries: []q{{fmt.Sprintf("max(%s)", v.s("flagwarden_outlier_max_score")), "max robust z", false}}},
			{kind: "stat", title: "Teams measured", unit: "short", w: 6,
				desc: "Teams with flag data in the latest measurement, and teams with rows flagwarden could not read (malformed filters, cohort cycles).",
				queries: []q{
					{fmt.Sprintf("max(%s)", v.s("flagwarden_teams")), "teams", false},
					{fmt.Sprintf("max(%s)", v.s("flagwarden_teams_with_bad_rows")), "with bad rows", false},
				}},
		}},
		{"Caches", []panel{
			{title: "Cache staleness", unit: "s", w: 16, thresholds: []float64{t.StaleAfter.Seconds()},
				desc: fmt.Sprintf("How far teams' flag caches are behind their flag data (newest change minus build time), over teams: median and 99th percentile (interpolated within the histogram's buckets) and the worst exactly, per cache source. Above detectors.stale_after (%s) users get old flag values.", promDuration(t.StaleAfter)),
				queries: []q{
					{fmt.Sprintf("histogram_quantile(0.99, max by (source, le) (%s))", lag), "{{source}} p99", false},
					{fmt.Sprintf("histogram_quantile(0.5, max by (source, le) (%s))", lag), "{{source}} p50", false},
					{fmt.Sprintf("max by (source) (%s)", v.s("flagwarden_cache_lag_max_seconds")), "{{source}} worst", false},
				}},
			{title: "Stale and missing caches", unit: "short", w: 8,
				desc: "Teams whose cache lags its data by more than detectors.stale_after, and teams with flag data but no cache at all, per cache source.",
				queries: []q{
					{fmt.Sprintf("max by (source) (%s)", v.s("flagwarden_cache_stale_teams")), "{{source}} stale", false},
					{fmt.Sprintf("max by (source) (%s)", v.s("flagwarden_cache_missing")), "{{source}} missing", false},
				}},
			{title: "Caches failing verification", unit: "short", w: 24,
				desc: "Teams whose published caches the leader's verification (verify.enabled) last found missing, undecodable, stale, different from a fresh build, or with a wrong :etag; and how long ago its last pass ended.",
				queries: []q{
					{fmt.Sprintf("max(%s)", v.s("flagwarden_verify_teams_wrong")), "teams wrong", false},
					{fmt.Sprintf("time() - max(%s)", v.s("flagwarden_verify_last_pass_timestamp_seconds")), "seconds since the last pass", false},
				}},
		}},
		{"Quarantine", []panel{
			{kind: "stat", title: "Quarantined teams", unit: "short", w: 6, thresholds: []float64{1},
				desc:    "Teams held out of normal rebuilds because they are too large or failed repeatedly. Each needs a decision: fix its data, raise the limits, or release it, on flagwarden's per-team page.",
				queries: []q{{fmt.Sprintf("max(%s)", v.s("flagwarden_rebuild_quarantined_teams")), "quarantined", false}}},
			{title: "Quarantine lane", unit: "short", w: 18,
				desc: "Builds of quarantined teams running and waiting in their own lane, so that they never delay other teams.",
				queries: []q{
					{fmt.Sprintf("sum(%s)", v.s("flagwarden_rebuild_lane_running", `lane="quarantine"`)), "running", false},
					{fmt.Sprintf("max(%s)", v.s("flagwarden_rebuild_lane_waiting", `lane="quarantine"`)), "waiting", false},
				}},
		}},
	}
	return c.dashboard(TeamsUID, "flagwarden / teams",
		"Team sizes, outliers, cache staleness and quarantine, as flagwarden measures them. Team ids are never label values: each team's own page is on flagwarden's dashboard.",
		[]string{"flagwarden", "feature-flags"}, c.variables(false, false), rows)
}
