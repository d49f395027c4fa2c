package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/flagwarden/flagwarden/dashboards/mixin"
	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/alertname"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

const rulesPath = "prometheus/rules.yml"

// dashboardUIDs are what provisioning, links and alerts' dashboard_url key on, by file;
// they must never change.
var dashboardUIDs = map[string]string{
	"grafana/flagwarden.json":       "flagwarden-overview",
	"grafana/flagwarden-teams.json": "flagwarden-teams",
}

// The parts of Grafana's classic dashboard JSON model the tests look at.
type dashboard struct {
	file          string
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
	Links  []struct {
		Title       string `json:"title"`
		Type        string `json:"type"`
		URL         string `json:"url"`
		IncludeVars bool   `json:"includeVars"`
		KeepTime    bool   `json:"keepTime"`
	} `json:"links"`
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

func loadDashboard(t *testing.T, path string) dashboard {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(data))
	d := dashboard{file: path}
	require.NoError(t, dec.Decode(&d), path)
	return d
}

// loadDashboards returns every dashboard, in file order.
func loadDashboards(t *testing.T) []dashboard {
	t.Helper()
	var out []dashboard
	for _, path := range slices.Sorted(maps.Keys(dashboardUIDs)) {
		out = append(out, loadDashboard(t, path))
	}
	return out
}

// usedMetrics are the metrics some panel of some dashboard reads.
func usedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	for _, d := range loadDashboards(t) {
		for _, p := range d.graphPanels() {
			for _, tg := range p.Targets {
				for _, m := range referencedMetrics(tg.Expr) {
					used[m] = true
				}
			}
		}
	}
	return used
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

func TestDashboardsAreProvisionable(t *testing.T) {
	t.Parallel()
	for _, d := range loadDashboards(t) {
		t.Run(d.file, func(t *testing.T) { checkProvisionable(t, d) })
	}
}

func checkProvisionable(t *testing.T, d dashboard) {
	raw, err := os.ReadFile(d.file)
	require.NoError(t, err)
	require.Equal(t, dashboardUIDs[d.file], d.UID, "a stable uid: provisioning updates the dashboard in place by it")
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

	vars := map[string]bool{}
	for _, v := range d.queryVariables() {
		vars[v.Name] = true
		require.NotNil(t, v.Datasource, "variable %s has no datasource", v.Name)
		require.Equal(t, dsUID, v.Datasource.UID, "variable %s must query the selected datasource", v.Name)
		require.True(t, v.IncludeAll, "variable %s: an All option", v.Name)
	}
	require.True(t, vars["cluster"] && vars["job"], "every dashboard selects by cluster and job: %v", vars)

	// Each dashboard links to the others, keeping the time range and the variables.
	linked := map[string]bool{}
	for _, l := range d.Links {
		if uid, ok := strings.CutPrefix(l.URL, "/d/"); ok {
			require.Contains(t, slices.Collect(maps.Values(dashboardUIDs)), uid, "link %q to a dashboard that does not exist", l.Title)
			require.True(t, l.IncludeVars && l.KeepTime, "link %q keeps the time range and variables", l.Title)
			linked[uid] = true
		}
	}
	for _, uid := range dashboardUIDs {
		if uid != d.UID {
			require.True(t, linked[uid], "no link to %s", uid)
		}
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
	used := usedMetrics(t)
	overview := loadDashboard(t, "grafana/flagwarden.json")
	var names []string
	for _, v := range overview.Templating.List {
		names = append(names, v.Name)
	}
	require.Subset(t, names, []string{"datasource", "cluster", "job", "namespace", "queue"})
	for topic, metric := range coverage {
		require.True(t, used[metric], "no panel shows %s (%s)", topic, metric)
	}
}

// TestRulesReferToExportedMetricsOnly is the static half of the live check: every alert
// and recording rule reads a metric that some panel also reads, and so is checked
// against a live flagwarden by TestPanelsAgainstPrometheus.
func TestRulesReferToExportedMetricsOnly(t *testing.T) {
	t.Parallel()
	used := usedMetrics(t)
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

// promOnly are the alerts that mirror no detector: flagwarden's own death, and the
// notifier's own failure, which the detectors cannot page about.
var promOnly = []string{"flagwarden_down", "notifier_dropping_alerts"}

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

	var kinds []string
	uids := slices.Collect(maps.Values(dashboardUIDs))
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			require.Regexp(t, `^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$`, r.Record, "recording rules are named level:metric:operation")
			continue
		}
		kind := r.Labels["kind"]
		kinds = append(kinds, kind)
		require.Regexp(t, `^Flagwarden[A-Z][A-Za-z]+$`, r.Alert, "alert names are prefixed CamelCase")
		require.Equal(t, alertname.For(kind), r.Alert, "the alertname flagwarden's own notifier uses for %s", kind)
		require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], "alert %s severity", r.Alert)
		for _, a := range []string{"summary", "description", "runbook_url", "dashboard_url"} {
			require.NotEmpty(t, strings.TrimSpace(r.Annotations[a]), "alert %s has no %s", r.Alert, a)
		}
		require.True(t, strings.HasSuffix(r.Annotations["runbook_url"], "docs/runbook.md#"+kind),
			"alert %s: runbook_url must point at its own section, got %s", r.Alert, r.Annotations["runbook_url"])
		m := regexp.MustCompile(`/d/([a-z-]+)(\?|$)`).FindStringSubmatch(r.Annotations["dashboard_url"])
		require.NotNil(t, m, "alert %s: dashboard_url %s opens no dashboard", r.Alert, r.Annotations["dashboard_url"])
		require.Contains(t, uids, m[1], "alert %s: dashboard_url names a dashboard that does not exist", r.Alert)
		require.True(t, fires[r.Alert], "rules_test.yml never shows %s firing", r.Alert)
		require.True(t, quiet[r.Alert], "rules_test.yml never shows %s staying quiet", r.Alert)
	}
	slices.Sort(kinds)
	kinds = slices.Compact(kinds)
	// Every alert is a detector kind (or one only Prometheus can raise), and every kind
	// that PromQL can express has its alert.
	want := append(slices.DeleteFunc(slices.Clone(detectors.Kinds), func(k string) bool { return slices.Contains(unmirrored, k) }), promOnly...)
	slices.Sort(want)
	require.Equal(t, want, kinds, "alerts in rules.yml against the detectors' kinds")

	// Each runbook_url anchor is a section of the runbook.
	runbook, err := os.ReadFile("../docs/runbook.md")
	require.NoError(t, err)
	for _, k := range kinds {
		section := regexp.MustCompile(`(?m)^#+ ` + regexp.QuoteMeta(k) + `\s*$`)
		require.True(t, section.Match(runbook), "docs/runbook.md has no section for %s", k)
	}
}

// TestGeneratedFilesAreCurrent fails when a generated file differs from what the mixin
// generates now: run go generate ./dashboards/ and commit the result.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	t.Parallel()
	files, err := mixin.Default().Files()
	require.NoError(t, err)
	require.Len(t, files, len(dashboardUIDs)+2, "the dashboards, the rule file and the PrometheusRule")
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(p)))
		require.NoError(t, err, "%s is generated: run go generate ./dashboards/", p)
		require.Equal(t, string(want), string(got), "%s is stale: run go generate ./dashboards/ and commit the result", p)
	}
}

// TestMixinThresholdsFollowTheConfiguration changes a threshold in a configuration and
// sees it in the rules and the dashboards, so that the two cannot drift from the config.
func TestMixinThresholdsFollowTheConfiguration(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse(strings.NewReader("flag_database: {url: postgres://h/db}\nbroker: {url: redis://h}\ncache: {url: redis://h}\n"+
		"detectors:\n  backlog_floor: 2500\n  memory_near_limit: 0.8\n  stale_after: 20m\n"), nil)
	require.NoError(t, err)
	files, err := mixin.FromConfig(cfg).Files()
	require.NoError(t, err)
	rules := string(files[mixin.RulesPath])
	require.Contains(t, rules, "queue:flagwarden_celery_queue_depth:max > 2500")
	require.Contains(t, rules, "namespace:flagwarden_pods_memory_working_set_ratio:max >= 0.8")
	require.Contains(t, rules, "source:flagwarden_cache_lag_seconds:p99 > 1200")
	require.NotContains(t, rules, "> 100\n", "the default floor is gone")
	overview := string(files[mixin.GrafanaDir+"/flagwarden.json"])
	require.Contains(t, overview, `"value": 0.8`, "the memory panel's threshold line")
	teams := string(files[mixin.GrafanaDir+"/flagwarden-teams.json"])
	require.Contains(t, teams, `"value": 1200`, "the staleness panel's threshold line")
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
	dashboards := loadDashboards(t)
	var queries []panelQuery
	for _, d := range dashboards {
		for _, p := range d.graphPanels() {
			for _, tg := range p.Targets {
				expr, err := d.concrete(tg.Expr)
				require.NoError(t, err)
				queries = append(queries, panelQuery{d.UID + ": " + p.Title, tg.RefID, expr})
			}
		}
	}

	fw := startFlagwarden(t, ctx)
	prom := startPrometheus(t, fw.addr, rulesPath)

	// A serve's /metrics, with every component running against real services, follows
	// Prometheus' conventions: promtool check metrics prints nothing.
	waitFor(t, 30*time.Second, "every loop has passed once", func() error {
		resp, err := http.Get("http://" + fw.addr + "/metrics")
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		for _, m := range []string{"flagwarden_build_info{", "flagwarden_pods_oom_kills_total{", "flagwarden_teams_payload_bytes_bucket{", "flagwarden_cache_lag_seconds_bucket{"} {
			if !strings.Contains(string(body), m) {
				return fmt.Errorf("no %s series yet", m)
			}
		}
		if report := testenv.PromtoolCheckMetrics(t, body); report != "" {
			t.Errorf("promtool check metrics on a serve's /metrics:\n%s", report)
		}
		return nil
	})

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
		if why, ok := conditional[conditionalMetric(q.expr)]; ok && (noData || len(absent) > 0) {
			t.Logf("panel %q query %s has no data here: %s", q.panel, q.refID, why)
			continue
		}
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
	for _, d := range dashboards {
		for _, v := range d.queryVariables() {
			q, ok := v.Query.(map[string]any)
			var expr string
			if ok {
				expr, _ = q["query"].(string)
			} else {
				expr, _ = v.Query.(string)
			}
			m := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`).FindStringSubmatch(expr)
			require.NotNil(t, m, "variable %s: want label_values(selector, label), got %q", v.Name, expr)
			sel, err := d.concrete(m[1])
			require.NoError(t, err)
			r, err := prom.query(ctx, fmt.Sprintf("count by (%s) (%s)", m[2], sel))
			require.NoError(t, err)
			require.Empty(t, r.err)
			if len(r.samples) == 0 {
				t.Errorf("%s: variable %s lists no values: %s", d.UID, v.Name, expr)
			}
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

// conditional are metrics that have no series by design in the test's state, each with
// the unit test that shows them exported: a panel that reads only one of them may show
// nothing here (its query must still run).
var conditional = map[string]string{
	"flagwarden_backlog_eta_seconds":           "absent while no queue grows (no -1 sentinel); see detectors TestBacklogETAHasNoSentinel",
	"flagwarden_pods_memory_working_set_ratio": "absent without a PromQL source for pod memory; see collectors/pods TestCollectorFleetSeriesAndHealth",
}

// conditionalMetric is the one metric expr reads, if it reads exactly one.
func conditionalMetric(expr string) string {
	if ms := referencedMetrics(expr); len(ms) == 1 {
		return ms[0]
	}
	return ""
}

// coverage maps each view the dashboard must have to the metric that draws it.
var coverage = map[string]string{
	"queue depth by queue and priority": "flagwarden_celery_queue_depth",
	"unacked messages":                  "flagwarden_celery_unacked_messages",
	"overdue messages":                  "flagwarden_celery_overdue_messages",
	"backlog distinct teams":            "flagwarden_celery_backlog_distinct_teams",
	"backlog duplicate ratio":           "flagwarden_celery_backlog_duplicate_ratio",
	"worker restarts":                   "flagwarden_pods_restarts_total",
	"OOM kills":                         "flagwarden_pods_oom_kills_total",
	"crash-looping pods":                "flagwarden_pods_crashlooping",
	"memory against limit":              "flagwarden_pods_memory_working_set_ratio",
	"team size distribution":            "flagwarden_teams_payload_bytes_bucket",
	"build information":                 "flagwarden_build_info",
	"largest teams":                     "flagwarden_teams_largest_payload_bytes",
	"outlier scores":                    "flagwarden_outlier_max_score",
	"cache staleness p99":               "flagwarden_cache_lag_seconds_bucket",
	"rebuild lanes running":             "flagwarden_rebuild_lane_running",
	"rebuild lanes waiting":             "flagwarden_rebuild_lane_waiting",
	"build duration":                    "flagwarden_rebuild_build_duration_seconds_bucket",
	"build peak memory":                 "flagwarden_rebuild_build_peak_heap_bytes",
	"notifier sent":                     "flagwarden_notifier_alerts_sent_total",
	"notifier failed":                   "flagwarden_notifier_errors_total",
	"notifier dropped":                  "flagwarden_notifier_dropped_total",
	"collector health":                  "flagwarden_collector_up",
}
