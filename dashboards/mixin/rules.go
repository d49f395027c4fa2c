package mixin

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/flagwarden/flagwarden/internal/alertname"
)

// RuleGroup is one Prometheus rule group, as in a rule file or a PrometheusRule spec.
type RuleGroup struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is a recording or an alerting rule.
type Rule struct {
	// Comment is written above the rule; it is not part of the rule.
	Comment     string            `yaml:"-"`
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Dashboard uids: provisioning updates dashboards in place by them, and links and
// alerts' dashboard_url point at them, so they never change.
const (
	OverviewUID = "flagwarden-overview"
	TeamsUID    = "flagwarden-teams"
)

// alert is one alerting rule before the common labels and links are added.
type alert struct {
	kind, severity, comment, expr, forDur string
	summary, description                  string
	// dashboard is the uid the alert's dashboard_url opens; vars are its variables,
	// as templates on the alert's labels.
	dashboard string
	vars      []string
}

// RuleGroups returns flagwarden's recording and alerting rules: one group, recording
// rules first, since rules in a group run in order and each alert then reads the
// series recorded in the same evaluation.
//
// Every replica measures the same broker, pods and caches, so measurements are
// combined across replicas (instance) with max, never sum.
func (c Config) RuleGroups() []RuleGroup {
	t := c.Thresholds
	qDepth := "queue:flagwarden_celery_queue_depth:max"
	qDeriv := "queue:flagwarden_celery_queue_depth:deriv15m"
	crash := "namespace:flagwarden_pods_crashlooping:max"
	ooms := "namespace:flagwarden_pods_oom_kills:increase" + promDuration(t.OOMWindow)
	mem := "namespace:flagwarden_pods_memory_working_set_ratio:max"
	lagP99 := "source:flagwarden_cache_lag_seconds:p99"
	stale := "source:flagwarden_cache_stale_teams:max"
	quar := "job:flagwarden_rebuild_quarantined_teams:max"
	wrong := "job:flagwarden_verify_teams_wrong:max"
	oomWin := promDuration(t.OOMWindow)
	calmLook := promDuration(7 * t.OOMWindow) // the time before the window, 105m by default

	records := []Rule{
		{Comment: "Depth of each queue over all its priority lists, the same on every replica.",
			Record: qDepth, Expr: fmt.Sprintf("max %s (sum %s (%s))", c.by("job", "queue"), c.by("job", "instance", "queue"), c.sel("flagwarden_celery_queue_depth"))},
		{Comment: "Slope of the depth, messages per second, by least squares over 15 minutes.",
			Record: qDeriv, Expr: fmt.Sprintf("deriv(%s[15m])", qDepth)},
		{Comment: "Unacked messages older than the visibility timeout, per queue.",
			Record: "queue:flagwarden_celery_overdue_messages:max", Expr: fmt.Sprintf("max %s (%s)", c.by("job", "queue"), c.sel("flagwarden_celery_overdue_messages"))},
		{Comment: "Worker pods waiting in CrashLoopBackOff, per worker namespace.",
			Record: crash, Expr: fmt.Sprintf("max %s (%s)", c.by("job", "namespace"), c.sel("flagwarden_pods_crashlooping"))},
		{Comment: "OOM kills of the worker pods over the detector's window (detectors.oom_window).",
			Record: ooms, Expr: fmt.Sprintf("max %s (sum %s (increase(%s[%s])))", c.by("job", "namespace"), c.by("job", "instance", "namespace"), c.sel("flagwarden_pods_oom_kills_total"), oomWin)},
		{Comment: "Memory working set of the busiest worker pod against its limit.",
			Record: mem, Expr: fmt.Sprintf("max %s (%s)", c.by("job", "namespace"), c.sel("flagwarden_pods_memory_working_set_ratio"))},
		{Comment: "99th percentile over teams of how far flag caches are behind their data, per cache source.",
			Record: lagP99, Expr: fmt.Sprintf("histogram_quantile(0.99, max %s (%s))", c.by("job", "source", "le"), c.sel("flagwarden_cache_lag_seconds_bucket"))},
		{Comment: "Teams whose cache lags its data by more than detectors.stale_after.",
			Record: stale, Expr: fmt.Sprintf("max %s (%s)", c.by("job", "source"), c.sel("flagwarden_cache_stale_teams"))},
		{Comment: "Teams held out of normal rebuilds.",
			Record: quar, Expr: fmt.Sprintf("max %s (%s)", c.by("job"), c.sel("flagwarden_rebuild_quarantined_teams"))},
		{Comment: "Teams whose published caches the leader's verification found wrong.",
			Record: wrong, Expr: fmt.Sprintf("max %s (%s)", c.by("job"), c.sel("flagwarden_verify_teams_wrong"))},
	}

	stallWin := promDuration(t.StallAfter)
	alerts := []alert{
		{kind: "flagwarden_down", severity: "critical", forDur: promDuration(t.DownFor),
			comment: "No replica scraped successfully, or none scraped at all: without this alert flagwarden's death silences every other one.",
			expr:    fmt.Sprintf("absent(up{%s} == 1)", c.Selector),
			summary: "flagwarden is down or not scraped",
			description: "No flagwarden replica matching " + c.Selector + " has been scraped successfully for " + promDuration(t.DownFor) +
				". Nothing watches the Celery backlog, the workers or the caches, and flagwarden's own pages have stopped too.",
			dashboard: OverviewUID},
		{kind: "outlier_team", severity: "warning", forDur: "15m",
			comment: "One team's data is far above the rest (robust z of the log size over teams) and large enough to matter (detectors.outlier_min_bytes).",
			expr: fmt.Sprintf("max %s (%s) > %g\nand\nmax %s (%s) >= %d\n",
				c.by("job"), c.sel("flagwarden_outlier_max_score"), t.OutlierMinZ,
				c.by("job"), c.sel("flagwarden_teams_largest_payload_bytes"), t.OutlierMinBytes),
			summary: `One team's flag data is an outlier among the teams {{ $labels.job }} watches (robust z {{ $value | printf "%.1f" }})`,
			description: "The largest team's estimated cache payload is far above every other team's. Its rebuilds are the ones that " +
				"outgrow the workers' memory; flagwarden's outlier_team finding names the team and its size against the worker limit.",
			dashboard: TeamsUID, vars: []string{"job"}},
		{kind: "backlog_growth", severity: "warning", forDur: promDuration(t.BacklogFor),
			comment: "Above the level floor (detectors.backlog_floor) and rising, for long enough that a burst of changes that is worked off does not page.",
			expr:    fmt.Sprintf("%s > %d\nand\n%s > 0\n", qDepth, t.BacklogFloor, qDeriv),
			summary: "Celery queue {{ $labels.queue }} has been growing for " + promDuration(t.BacklogFor) + " ({{ $value | humanize }} messages)",
			description: fmt.Sprintf("Queue {{ $labels.queue }} holds more than %d messages and its depth has risen steadily for %s: "+
				"cache rebuilds are arriving faster than the workers finish them. Check the worker pods (restarts, OOM kills, crash loops) "+
				"and the backlog's composition in flagwarden.", t.BacklogFloor, promDuration(t.BacklogFor)),
			dashboard: OverviewUID, vars: []string{"job", "queue"}},
		{kind: "backlog_growth", severity: "critical", forDur: promDuration(t.BacklogFor),
			comment: "The same growth, on course to reach the backlog limit (detectors.backlog_limit).",
			expr: fmt.Sprintf("%s > %d\nand\n%s > 0\nand\npredict_linear(%s[1h], %d) > %d\n",
				qDepth, t.BacklogFloor, qDeriv, qDepth, int64(t.BacklogAhead.Seconds()), t.BacklogLimit),
			summary: fmt.Sprintf("Celery queue {{ $labels.queue }} will exceed %d messages within %s", t.BacklogLimit, promDuration(t.BacklogAhead)),
			description: fmt.Sprintf("Queue {{ $labels.queue }} holds {{ $value | humanize }} messages and, at the rate of the last hour, "+
				"reaches the backlog limit of %d within %s. Every team's flag cache changes wait behind it.", t.BacklogLimit, promDuration(t.BacklogAhead)),
			dashboard: OverviewUID, vars: []string{"job", "queue"}},
		{kind: "backlog_stalled", severity: "critical", forDur: "5m",
			comment: "Non-empty for the whole window (including its start, so a new series does not count) and never went down once: nothing consumes it. resets() counts every decrease between consecutive samples.",
			expr:    fmt.Sprintf("min_over_time(%[1]s[%[2]s]) > 0\nand\nresets(%[1]s[%[2]s]) == 0\nand\n%[1]s offset %[2]s > 0\n", qDepth, stallWin),
			summary: "Celery queue {{ $labels.queue }} has not drained a single message in " + promDuration(t.StallAfter+5*time.Minute),
			description: "Queue {{ $labels.queue }} has held messages and its depth never decreased: no worker is taking tasks from it. " +
				"Workers in CrashLoopBackOff, a consumer bound to the wrong queue, or every worker stuck on one task are the usual causes.",
			dashboard: OverviewUID, vars: []string{"job", "queue"}},
		{kind: "collector_down", severity: "critical", forDur: promDuration(t.CollectorDownAfter),
			comment: "A failed pass now and then is normal; detectors.collector_down_after without a success is not, and then every measurement behind it is stale.",
			expr: fmt.Sprintf("%s == 0\nor\ntime() - %s > %d\n", c.sel("flagwarden_collector_up"),
				c.sel("flagwarden_collector_last_success_timestamp_seconds"), int64(t.CollectorDownAfter.Seconds())),
			summary: "flagwarden's {{ $labels.collector }} collector on {{ $labels.instance }} has not succeeded for " + promDuration(t.CollectorDownAfter),
			description: "The {{ $labels.collector }} loop on {{ $labels.instance }} has failed every pass. Its measurements are stale, " +
				"so quiet dashboards and missing alerts for that source mean nothing. flagwarden's log names the error.",
			dashboard: OverviewUID, vars: []string{"job"}},
		{kind: "workers_crashlooping", severity: "warning", forDur: promDuration(t.WorkersFor),
			comment: "max_over_time bridges the moments between back-off waits when a pod runs.",
			expr:    fmt.Sprintf("max_over_time(%s[5m]) >= 1", crash),
			summary: "{{ $value }} worker pods in namespace {{ $labels.namespace }} are in CrashLoopBackOff",
			description: "Worker pods in {{ $labels.namespace }} have been waiting in CrashLoopBackOff for " + promDuration(t.WorkersFor) +
				". They run no tasks and cannot be OOM-killed either, so falling OOM kills are not a recovery. Look at their last termination reason.",
			dashboard: OverviewUID, vars: []string{"job", "namespace"}},
		{kind: "worker_oom_kills", severity: "warning",
			expr:    ooms + " >= 1",
			summary: "Worker pods in namespace {{ $labels.namespace }} were OOM-killed {{ $value | humanize }} times in " + oomWin,
			description: "Each kill loses the task in flight, and its retry will likely be killed again. " +
				"Find the team being rebuilt (flagwarden's outlier_team findings) and quarantine it.",
			dashboard: OverviewUID, vars: []string{"job", "namespace"}},
		{kind: "worker_oom_kills", severity: "critical",
			expr:    fmt.Sprintf("%s >= %d", ooms, t.OOMCritical),
			summary: "Worker pods in namespace {{ $labels.namespace }} were OOM-killed {{ $value | humanize }} times in " + oomWin,
			description: "Repeated OOM kills: a rebuild needs more memory than the worker limit and is retried into the same wall. " +
				"Quarantine the team before the backlog builds up.",
			dashboard: OverviewUID, vars: []string{"job", "namespace"}},
		{kind: "workers_false_calm", severity: "critical", forDur: "5m",
			comment: "OOM kills have slowed down compared with the time before, which looks like recovery, while pods sit in CrashLoopBackOff: they are not killed only because they are not running.",
			expr: fmt.Sprintf("max %[1]s (sum %[2]s (increase(%[3]s[%[4]s] offset %[5]s))) > 0\nand\n"+
				"max %[1]s (sum %[2]s (increase(%[3]s[%[5]s]))) / %[6]d\n  < max %[1]s (sum %[2]s (increase(%[3]s[%[4]s] offset %[5]s))) / %[7]d\nand\n%[8]s >= 1\n",
				c.by("job", "namespace"), c.by("job", "instance", "namespace"), c.sel("flagwarden_pods_oom_kills_total"),
				calmLook, oomWin, int64(t.OOMWindow.Minutes()), int64(7*t.OOMWindow.Minutes()), crash),
			summary: "OOM kills of the workers in namespace {{ $labels.namespace }} are falling, but pods are still in CrashLoopBackOff",
			description: "Fewer OOM kills looks like recovery, but worker pods are waiting in CrashLoopBackOff: pods in back-off are not running, " +
				"so they are not being killed either, and the backlog is still not being worked. Do not stand down: find and quarantine the team whose rebuild kills the workers.",
			dashboard: OverviewUID, vars: []string{"job", "namespace"}},
		{kind: "worker_memory_near_limit", severity: "warning", forDur: promDuration(t.WorkersFor),
			expr:    fmt.Sprintf("%s >= %g", mem, t.MemoryNearLimit),
			summary: "A worker pod in namespace {{ $labels.namespace }} uses {{ $value | humanizePercentage }} of its memory limit",
			description: fmt.Sprintf("The busiest worker pod has used at least %g%% of its memory limit for %s. The next large rebuild will be OOM-killed; "+
				"a Celery prefork child killed inside the container does not even restart the pod. Find the team being rebuilt.", t.MemoryNearLimit*100, promDuration(t.WorkersFor)),
			dashboard: OverviewUID, vars: []string{"job", "namespace"}},
		{kind: "cache_stale", severity: "warning", forDur: promDuration(t.For),
			comment: "Per team in flagwarden; here a count, since team ids are never label values.",
			expr:    stale + " > 0",
			summary: "{{ $value }} teams' {{ $labels.source }} flag caches are stale",
			description: "These teams changed their flags more than " + promDuration(t.StaleAfter) + " ago (detectors.stale_after) and their caches have not been rebuilt since: " +
				"their users still get the old flag values. flagwarden's dashboard and API list the teams; check the rebuild queue and whether they are quarantined.",
			dashboard: TeamsUID, vars: []string{"job"}},
		{kind: "fleet_cache_stale", severity: "warning", forDur: promDuration(t.WorkersFor),
			expr:    fmt.Sprintf("%s > %d", lagP99, int64(t.StaleAfter.Seconds())),
			summary: "1% of {{ $labels.source }} flag caches are more than {{ $value | humanizeDuration }} behind their data",
			description: "The 99th percentile of cache lag has been above " + promDuration(t.StaleAfter) + " (detectors.stale_after) for " + promDuration(t.WorkersFor) +
				": rebuilds are not keeping up with flag changes, and users get old flag values. Look at the backlog and worker alerts.",
			dashboard: TeamsUID, vars: []string{"job"}},
		{kind: "team_quarantined", severity: "warning", forDur: promDuration(t.QuarantineFor),
			comment: "A quarantine that is released within minutes (a false alarm fixed by hand) does not page.",
			expr:    quar + " > 0",
			summary: "{{ $value }} teams are quarantined from cache rebuilds",
			description: "Quarantined teams' caches are not rebuilt normally, so their flag changes do not reach users. " +
				"flagwarden's dashboard lists each team with its reason; someone must fix its data, raise the limits, or release it.",
			dashboard: TeamsUID, vars: []string{"job"}},
		{kind: "cache_mismatch", severity: "warning",
			comment: "Per team in flagwarden; here a count. Verification runs every verify.interval, so a wrong cache is already old when it is found.",
			expr:    wrong + " > 0",
			summary: "{{ $value }} teams' published flag caches do not match their flag data",
			description: "flagwarden's verification compared these teams' caches in Redis (and S3) with a fresh build and found them missing, undecodable, stale or different, " +
				"or with a wrong :etag. PostHog's readers serve what is stored. flagwarden's dashboard lists each team and what was wrong; `flagwarden verify --team N` checks one again.",
			dashboard: TeamsUID, vars: []string{"job"}},
		{kind: "notifier_dropping_alerts", severity: "critical",
			comment: "A full send queue drops the oldest alerts: pages are being lost.",
			expr:    fmt.Sprintf("increase(%s[10m]) > 0", c.sel("flagwarden_notifier_dropped_total")),
			summary: "flagwarden on {{ $labels.instance }} dropped {{ $value | humanize }} alerts in 10 minutes",
			description: "The notifier's queue overflowed and alerts were discarded before reaching Alertmanager, usually because every " +
				"Alertmanager has been unreachable for a long time. Check flagwarden_notifier_errors_total and the Alertmanager URLs.",
			dashboard: OverviewUID, vars: []string{"job"}},
	}

	rules := records
	for _, a := range alerts {
		rules = append(rules, c.alertRule(a))
	}
	return []RuleGroup{{Name: "flagwarden", Rules: rules}}
}

func (c Config) alertRule(a alert) Rule {
	q := []string{}
	if c.ClusterLabel != "" {
		q = append(q, "var-cluster={{ $labels."+c.ClusterLabel+" }}")
	}
	for _, v := range a.vars {
		q = append(q, "var-"+v+"={{ $labels."+v+" }}")
	}
	dash := strings.TrimSuffix(c.GrafanaURL, "/") + "/d/" + a.dashboard
	if len(q) > 0 {
		dash += "?" + strings.Join(q, "&")
	}
	return Rule{
		Comment: a.comment,
		Alert:   alertname.For(a.kind),
		Expr:    a.expr,
		For:     a.forDur,
		Labels:  map[string]string{"severity": a.severity, "kind": a.kind},
		Annotations: map[string]string{
			"summary":       a.summary,
			"description":   a.description,
			"runbook_url":   c.RunbookURL + "#" + a.kind,
			"dashboard_url": dash,
		},
	}
}

// RuleFileHeader opens the generated rule file.
const RuleFileHeader = `# Prometheus recording and alerting rules for flagwarden's metrics.
#
# GENERATED by dashboards/gen from dashboards/mixin: do not edit; change the mixin and
# run go generate ./dashboards/. Thresholds come from flagwarden's configuration
# defaults (flagwarden.example.yaml); for other values, generate from your own
# configuration: go run ./dashboards/gen -config flagwarden.yaml -root DIR.
#
# The alerts mirror flagwarden's detectors for teams that alert from Prometheus, with
# the same alertnames flagwarden's own notifier uses, plus FlagwardenDown, which only
# Prometheus can raise. Checked by promtool check rules and unit-tested in
# rules_test.yml.
`

// MarshalRules encodes groups as YAML under key "groups", with each rule's comment
// above it and multi-line expressions as literal blocks.
func MarshalRules(header string, groups []RuleGroup, indent int) ([]byte, error) {
	var root yaml.Node
	if err := root.Encode(map[string][]RuleGroup{"groups": groups}); err != nil {
		return nil, err
	}
	// root is a mapping: groups -> sequence of group mappings -> rules sequence.
	seq := root.Content[1]
	for gi, g := range seq.Content {
		for i := 0; i+1 < len(g.Content); i += 2 {
			if g.Content[i].Value != "rules" {
				continue
			}
			for ri, r := range g.Content[i+1].Content {
				r.HeadComment = wrapComment(groups[gi].Rules[ri].Comment)
			}
		}
	}
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(indent)
	if err := enc.Encode(&root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// wrapComment breaks a comment into lines of about 80 characters.
func wrapComment(s string) string {
	var lines []string
	var line string
	for _, w := range strings.Fields(s) {
		if line != "" && len(line)+1+len(w) > 80 {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}
