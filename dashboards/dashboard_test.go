package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/flagwarden/flagwarden/detectors"
)

const (
	dashboardPath = "grafana/flagwarden.json"
	rulesPath     = "prometheus/rules.yml"
	// dashboardUID is what provisioning and links key on; it must never change.
	dashboardUID = "flagwarden-overview"
)

// The parts of Grafana's classic dashboard JSON model the tests look at.
type dashboard struct {
	UID           string          `json:"uid"`
	ID            any             `json:"id"`
	Title         string          `json:"title"`
	SchemaVersion int             `json:"schemaVersion"`
	Inputs        json.RawMessage `json:"__inputs"`
	Requires      json.RawMessage `json:"__requires"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Query      any            `json:"query"`
	Datasource *datasourceRef `json:"datasource"`
	IncludeAll bool           `json:"includeAll"`
	AllValue   string         `json:"allValue"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []target `json:"targets"`
	// Panels are a collapsed row's children.
	Panels []panel `json:"panels"`
}

type target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *datasourceRef `json:"datasource"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(data))
	var d dashboard
	require.NoError(t, dec.Decode(&d), dashboardPath)
	return d
}

// graphPanels flattens rows: every panel that draws something.
func (d dashboard) graphPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// queryVariables are the template variables whose values come from Prometheus.
func (d dashboard) queryVariables() []variable {
	var out []variable
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			out = append(out, v)
		}
	}
	return out
}

// concrete replaces Grafana's variables in expr with values Prometheus accepts: the
// built-in intervals with durations several scrapes long, and template variables
// (always used as regex matchers) with a regex that matches every value.
func (d dashboard) concrete(expr string) (string, error) {
	repl := []string{
		"$__rate_interval", "15s", "${__rate_interval}", "15s",
		"$__interval", "5s", "${__interval}", "5s",
		"$__range", "1m", "${__range}", "1m",
	}
	for _, v := range d.queryVariables() {
		repl = append(repl, "${"+v.Name+"}", ".*", "$"+v.Name, ".*")
	}
	out := strings.NewReplacer(repl...).Replace(expr)
	if i := strings.Index(out, "$"); i >= 0 {
		return "", fmt.Errorf("unknown variable at %q", out[i:])
	}
	return out, nil
}

// metricRe finds flagwarden's (and the Go client's) metric names in an expression;
// recording rule names (level:metric:operation) start with their level and are skipped.
var metricRe = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

func referencedMetrics(expr string) []string {
	seen := map[string]bool{}
	// Label values and strings are not metric names.
	expr = regexp.MustCompile(`"[^"]*"`).ReplaceAllString(expr, `""`)
	for _, tok := range metricRe.FindAllString(expr, -1) {
		if strings.Contains(tok, ":") {
			continue
		}
		for _, prefix := range []string{"flagwarden_", "process_", "go_"} {
			if strings.HasPrefix(tok, prefix) {
				seen[tok] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

func TestDashboardIsProvisionable(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	d := loadDashboard(t)

	require.Equal(t, dashboardUID, d.UID, "a stable uid: provisioning updates the dashboard in place by it")
	require.NotEmpty(t, d.Title)
	require.Nil(t, d.ID, "id is assigned by Grafana; a fixed one collides across installations")
	require.GreaterOrEqual(t, d.SchemaVersion, 36)
	require.Nil(t, d.Inputs, "__inputs are for manual import; a provisioned file cannot fill them")
	require.Nil(t, d.Requires)
	require.NotContains(t, string(raw), "${DS_", "datasource placeholders only resolve on manual import")

	var dsVar *variable
	for i, v := range d.Templating.List {
		if v.Type == "datasource" {
			dsVar = &d.Templating.List[i]
		}
	}
	require.NotNil(t, dsVar, "a datasource template variable")
	require.Equal(t, "prometheus", dsVar.Query)
	dsUID := "${" + dsVar.Name + "}"

	for _, v := range d.queryVariables() {
		require.NotNil(t, v.Datasource, "variable %s has no datasource", v.Name)
		require.Equal(t, dsUID, v.Datasource.UID, "variable %s must query the selected datasource", v.Name)
		require.True(t, v.IncludeAll, "variable %s: an All option", v.Name)
	}

	// No two panels (or rows) overlap on the grid.
	cells := map[[2]int]string{}
	for _, p := range d.Panels {
		for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
			for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
				other, taken := cells[[2]int{x, y}]
				require.False(t, taken, "panels %q and %q overlap at x=%d y=%d", other, p.Title, x, y)
				cells[[2]int{x, y}] = p.Title
			}
		}
	}

	panels := d.graphPanels()
	require.NotEmpty(t, panels)
	ids := map[int]string{}
	titles := map[string]bool{}
	for _, p := range panels {
		require.NotEmpty(t, p.Title, "panel %d has no title", p.ID)
		require.NotContains(t, ids, p.ID, "panel id %d is used by %q and %q", p.ID, ids[p.ID], p.Title)
		ids[p.ID] = p.Title
		require.False(t, titles[p.Title], "two panels titled %q", p.Title)
		titles[p.Title] = true
		require.NotEmpty(t, strings.TrimSpace(p.Description), "panel %q has no description", p.Title)
		require.NotEmpty(t, p.FieldConfig.Defaults.Unit, "panel %q has no unit", p.Title)
		require.NotNil(t, p.Datasource, "panel %q has no datasource", p.Title)
		require.Equal(t, dsUID, p.Datasource.UID, "panel %q must use the datasource variable", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no queries", p.Title)
		require.True(t, p.GridPos.W > 0 && p.GridPos.X+p.GridPos.W <= 24 && p.GridPos.H > 0, "panel %q lies outside the 24-column grid", p.Title)
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			require.NotEmpty(t, strings.TrimSpace(tg.Expr), "panel %q has an empty query", p.Title)
			require.NotEmpty(t, tg.RefID)
			require.False(t, refs[tg.RefID], "panel %q repeats refId %s", p.Title, tg.RefID)
			refs[tg.RefID] = true
			require.NotNil(t, tg.Datasource, "panel %q query %s has no datasource", p.Title, tg.RefID)
			require.Equal(t, dsUID, tg.Datasource.UID)
			_, err := d.concrete(tg.Expr)
			require.NoError(t, err, "panel %q", p.Title)
			require.NotContains(t, tg.Expr, "[1m]", "panel %q: use $__rate_interval, not a fixed window", p.Title)
		}
	}
}

// TestDashboardCoversTheIssue checks that the views operators asked for are there: each
// topic must be drawn from its metric by at least one panel.
func TestDashboardCoversTheIssue(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	used := map[string]bool{}
	for _, p := range d.graphPanels() {
		for _, tg := range p.Targets {
			for _, m := range referencedMetrics(tg.Expr) {
				used[m] = true
			}
		}
	}
	for topic, metric := range coverage {
		require.True(t, used[metric], "no panel shows %s (%s)", topic, metric)
	}
}

// TestRulesReferToExportedMetricsOnly is the static half of the live check: every alert
// and recording rule reads a metric that some panel also reads, and so is checked
// against a live flagwarden by TestPanelsAgainstPrometheus.
func TestRulesReferToExportedMetricsOnly(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	used := map[string]bool{}
	for _, p := range d.graphPanels() {
		for _, tg := range p.Targets {
			for _, m := range referencedMetrics(tg.Expr) {
				used[m] = true
			}
		}
	}
	for _, r := range loadRules(t) {
		for _, m := range referencedMetrics(r.Expr) {
			require.True(t, used[m], "rule %s reads %s, which no dashboard panel shows (and so is never checked against a live flagwarden)", r.name(), m)
		}
	}
}

// rule is one recording or alerting rule of rules.yml.
type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func (r rule) name() string { return r.Record + r.Alert }

func loadRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(rulesPath)
	require.NoError(t, err)
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &f))
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	require.NotEmpty(t, out)
	return out
}

// notifierAlert is the one alert that mirrors no detector: the notifier's own failure,
// which the detectors cannot page about.
const notifierAlert = "notifier_dropping_alerts"

// unmirrored are detector kinds PromQL cannot express: team_growth judges each team's
// own size history, and team ids are never label values.
var unmirrored = []string{"team_growth"}

func TestAlertsAreDocumentedAndTested(t *testing.T) {
	t.Parallel()
	testsData, err := os.ReadFile("prometheus/rules_test.yml")
	require.NoError(t, err)
	var unit struct {
		Tests []struct {
			Name       string `yaml:"name"`
			AlertTests []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	require.NoError(t, yaml.Unmarshal(testsData, &unit))
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range unit.Tests {
		for _, at := range tc.AlertTests {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				quiet[at.Alertname] = true
			}
		}
	}

	var names []string
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			require.Regexp(t, `^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$`, r.Record, "recording rules are named level:metric:operation")
			continue
		}
		names = append(names, r.Alert)
		require.Regexp(t, `^[a-z][a-z_]*$`, r.Alert, "alert names are the detectors' snake_case kinds")
		require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], "alert %s severity", r.Alert)
		for _, a := range []string{"summary", "description", "runbook_url"} {
			require.NotEmpty(t, strings.TrimSpace(r.Annotations[a]), "alert %s has no %s", r.Alert, a)
		}
		require.True(t, strings.HasSuffix(r.Annotations["runbook_url"], "docs/runbook.md#"+r.Alert),
			"alert %s: runbook_url must point at its own section, got %s", r.Alert, r.Annotations["runbook_url"])
		require.True(t, fires[r.Alert], "rules_test.yml never shows %s firing", r.Alert)
		require.True(t, quiet[r.Alert], "rules_test.yml never shows %s staying quiet", r.Alert)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	// Every alert is a detector kind (or the notifier's), and every kind that PromQL can
	// express has its alert.
	want := append(slices.DeleteFunc(slices.Clone(detectors.Kinds), func(k string) bool { return slices.Contains(unmirrored, k) }), notifierAlert)
	slices.Sort(want)
	require.Equal(t, want, names, "alerts in rules.yml against the detectors' kinds")

	// Each runbook_url anchor is a section of the runbook.
	runbook, err := os.ReadFile("../docs/runbook.md")
	require.NoError(t, err)
	for _, n := range names {
		section := regexp.MustCompile(`(?m)^#+ ` + regexp.QuoteMeta(n) + `\s*$`)
		require.True(t, section.Match(runbook), "docs/runbook.md has no section for %s", n)
	}
}

func TestConcreteRejectsUnknownVariables(t *testing.T) {
	t.Parallel()
	d := dashboard{}
	d.Templating.List = []variable{{Name: "queue", Type: "query"}}
	got, err := d.concrete(`rate(x{queue=~"$queue"}[$__rate_interval])`)
	require.NoError(t, err)
	require.Equal(t, `rate(x{queue=~".*"}[15s])`, got)
	_, err = d.concrete(`x{pod=~"$pod"}`)
	require.ErrorContains(t, err, "$pod")
	require.Equal(t, []string{"flagwarden_a_total", "go_goroutines"},
		referencedMetrics(`sum(rate(flagwarden_a_total{job="flagwarden_b"}[5m])) / go_goroutines + queue:flagwarden_c:max`))
}

// panelQuery is one query of one panel, made concrete.
type panelQuery struct {
	panel, refID, expr string
}

// TestPanelsAgainstPrometheus runs every panel's query through a real Prometheus that
// scrapes a real flagwarden: each must parse, and each must return data. A query that
// returns nothing names the metrics flagwarden does not export.
func TestPanelsAgainstPrometheus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d := loadDashboard(t)
	var queries []panelQuery
	for _, p := range d.graphPanels() {
		for _, tg := range p.Targets {
			expr, err := d.concrete(tg.Expr)
			require.NoError(t, err)
			queries = append(queries, panelQuery{p.Title, tg.RefID, expr})
		}
	}

	fw := startFlagwarden(t, ctx)
	prom := startPrometheus(t, fw.addr, rulesPath)

	// Several scrapes, so that rate() and increase() have two samples in their window.
	waitFor(t, 60*time.Second, "three successful scrapes of flagwarden", func() error {
		r, err := prom.query(ctx, `sum_over_time(up{job="flagwarden"}[1m])`)
		if err != nil {
			return err
		}
		if len(r.samples) == 0 {
			return fmt.Errorf("no scrape yet")
		}
		v, _ := r.samples[0].Value[1].(string)
		if n, err := strconv.ParseFloat(v, 64); err != nil || n < 3 {
			return fmt.Errorf("%s successful scrapes", v)
		}
		return nil
	})

	// Every query parses at once; data may need the loops to run a few passes, so
	// poll until every query has some or the deadline passes.
	pending := map[panelQuery]queryResult{}
	for _, q := range queries {
		r, err := prom.query(ctx, q.expr)
		require.NoError(t, err)
		if r.err != "" {
			t.Errorf("panel %q query %s does not run: %s: %s\n    %s", q.panel, q.refID, r.errType, r.err, q.expr)
			continue
		}
		if len(r.samples) == 0 {
			pending[q] = r
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for len(pending) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		for q := range pending {
			r, err := prom.query(ctx, q.expr)
			require.NoError(t, err)
			if len(r.samples) > 0 {
				delete(pending, q)
			}
		}
	}

	// Every metric a query names must exist, even in a query that returned data (an
	// "or" could hide a missing one).
	names, err := prom.metricNames(ctx)
	require.NoError(t, err)
	var problems []string
	for _, q := range queries {
		var absent []string
		for _, m := range referencedMetrics(q.expr) {
			if !names[m] {
				absent = append(absent, m)
			}
		}
		_, noData := pending[q]
		switch {
		case len(absent) > 0:
			problems = append(problems, fmt.Sprintf("panel %q query %s: flagwarden does not export %s\n    %s",
				q.panel, q.refID, strings.Join(absent, ", "), q.expr))
		case noData:
			problems = append(problems, fmt.Sprintf("panel %q query %s: no data, though its metrics exist (the query selects no series)\n    %s",
				q.panel, q.refID, q.expr))
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Errorf("%d of %d panel queries fail against a live flagwarden:\n  %s", len(problems), len(queries), strings.Join(problems, "\n  "))
	}

	// Template variables list values from a live flagwarden.
	for _, v := range d.queryVariables() {
		q, ok := v.Query.(map[string]any)
		var expr string
		if ok {
			expr, _ = q["query"].(string)
		} else {
			expr, _ = v.Query.(string)
		}
		m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(expr)
		require.NotNil(t, m, "variable %s: want label_values(metric, label), got %q", v.Name, expr)
		r, err := prom.query(ctx, fmt.Sprintf("count by (%s) (%s)", m[2], m[1]))
		require.NoError(t, err)
		require.Empty(t, r.err)
		if len(r.samples) == 0 {
			t.Errorf("variable %s lists no values: %s", v.Name, expr)
		}
	}

	// The rules load into a real Prometheus and evaluate without error against real data.
	waitFor(t, 30*time.Second, "every rule evaluated", func() error {
		rules, err := prom.rules(ctx)
		if err != nil {
			return err
		}
		if len(rules) != len(loadRules(t)) {
			return fmt.Errorf("Prometheus loaded %d rules, rules.yml has %d", len(rules), len(loadRules(t)))
		}
		for _, r := range rules {
			if r.Health != "ok" {
				return fmt.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
			}
		}
		return nil
	})
}

// coverage maps each view the dashboard must have to the metric that draws it.
var coverage = map[string]string{
	"queue depth by queue and priority": "flagwarden_celery_queue_depth",
	"unacked messages":                  "flagwarden_celery_queue_unacked",
	"overdue messages":                  "flagwarden_celery_queue_overdue",
	"backlog distinct teams":            "flagwarden_celery_backlog_distinct_teams",
	"backlog duplicate ratio":           "flagwarden_celery_backlog_duplicate_ratio",
	"worker restarts":                   "flagwarden_pods_restarts_total",
	"OOM kills":                         "flagwarden_pods_oom_kills_total",
	"crash-looping pods":                "flagwarden_pods_crashlooping",
	"memory against limit":              "flagwarden_pods_memory_ratio_max",
	"largest teams":                     "flagwarden_teams_largest_payload_bytes",
	"outlier scores":                    "flagwarden_outlier_max_score",
	"cache staleness p99":               "flagwarden_cache_lag_seconds",
	"rebuild lanes running":             "flagwarden_rebuild_lane_running",
	"rebuild lanes waiting":             "flagwarden_rebuild_lane_waiting",
	"build duration":                    "flagwarden_rebuild_build_duration_seconds_bucket",
	"build peak memory":                 "flagwarden_rebuild_build_peak_heap_bytes",
	"notifier sent":                     "flagwarden_notifier_alerts_sent_total",
	"notifier failed":                   "flagwarden_notifier_errors_total",
	"notifier dropped":                  "flagwarden_notifier_dropped_total",
	"collector health":                  "flagwarden_collector_up",
}
