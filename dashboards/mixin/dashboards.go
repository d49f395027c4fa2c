package mixin

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Dashboards returns the generated dashboards as provisionable JSON, by file name.
func (c Config) Dashboards() (map[string][]byte, error) {
	out := map[string][]byte{}
	for name, b := range map[string]*dashboard.DashboardBuilder{ //nolint:staticcheck // the classic model: see classicModel
		"flagwarden.json":       c.overview(),
		"flagwarden-teams.json": c.teams(),
	} {
		d, err := b.Build()
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", name, err)
		}
		data, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", name, err)
		}
		out[name] = append(data, '\n')
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }

// ds is the datasource template variable every panel and query uses, so that a
// provisioned dashboard works with whatever Prometheus data source is picked.
var ds = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}

// q is a panel query; heatmap queries return bucket series as Grafana's heatmap wants.
type q struct {
	expr, legend string
	heatmap      bool
}

// panel describes one panel; build turns it into a Foundation SDK builder.
type panel struct {
	kind              string // timeseries (default), stat, heatmap
	title, desc, unit string
	w, h              uint32
	queries           []q
	// thresholds draw dashed lines (timeseries) or colour the value (stat) from
	// these values on; the first step is green, later ones orange then red.
	thresholds []float64
	min        *float64
}

func (p panel) steps() *dashboard.ThresholdsConfigBuilder {
	steps := []dashboard.Threshold{{Color: "green"}}
	colours := []string{"red", "red"}
	if len(p.thresholds) > 1 {
		colours = []string{"orange", "red"}
	}
	for i, v := range p.thresholds {
		steps = append(steps, dashboard.Threshold{Value: ptr(v), Color: colours[min(i, 1)]})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)
}

func (p panel) targets() []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(p.queries))
	for i, x := range p.queries {
		b := prometheus.NewDataqueryBuilder().Datasource(ds).RefId(string(rune('A' + i))).
			Expr(x.expr).LegendFormat(x.legend).Range()
		if x.heatmap {
			b = b.Format(prometheus.PromQueryFormatHeatmap)
		}
		out = append(out, b)
	}
	return out
}

func (p panel) build(id uint32) cog.Builder[dashboard.Panel] {
	w, h := p.w, p.h
	if h == 0 {
		h = 8
	}
	switch p.kind {
	case "stat":
		return stat.NewPanelBuilder().Id(id).Title(p.title).Description(p.desc).Datasource(ds).Unit(p.unit).
			Span(w).Height(h).Targets(p.targets()).Thresholds(p.steps()).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			ColorMode(common.BigValueColorModeValue).GraphMode(common.BigValueGraphModeArea).
			TextMode(common.BigValueTextModeValueAndName)
	case "heatmap":
		return heatmap.NewPanelBuilder().Id(id).Title(p.title).Description(p.desc).Datasource(ds).Unit(p.unit).
			Span(w).Height(h).Targets(p.targets()).Calculate(false).
			YAxis(heatmap.NewYAxisConfigBuilder().Unit(p.unit)).
			CellValues(heatmap.NewCellValuesBuilder().Unit("short")).
			Color(heatmap.NewHeatmapColorOptionsBuilder().Mode(heatmap.HeatmapColorModeScheme).Scheme("Oranges").Steps(64))
	default:
		b := timeseries.NewPanelBuilder().Id(id).Title(p.title).Description(p.desc).Datasource(ds).Unit(p.unit).
			Span(w).Height(h).Targets(p.targets()).
			LineWidth(1).FillOpacity(10).ShowPoints(common.VisibilityModeNever).
			Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeList).
				Placement(common.LegendPlacementBottom).ShowLegend(true)).
			Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
		if p.min != nil {
			b = b.Min(*p.min)
		}
		if len(p.thresholds) > 0 {
			b = b.Thresholds(p.steps()).
				ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))
		}
		return b
	}
}

// row is a dashboard row and the panels under it.
type row struct {
	title  string
	panels []panel
}

// vars are the dashboard-side selectors: every query filters on cluster and job; the
// worker and queue panels also on namespace and queue.
type vars struct{ c Config }

func (v vars) base(extra ...string) string {
	m := []string{}
	if v.c.ClusterLabel != "" {
		m = append(m, v.c.ClusterLabel+`=~"$cluster"`)
	}
	m = append(m, `job=~"$job"`)
	return strings.Join(append(m, extra...), ", ")
}

// s is metric selected by the dashboard's variables.
func (v vars) s(metric string, extra ...string) string { return metric + "{" + v.base(extra...) + "}" }

func (c Config) variables(withNamespace, withQueue bool) []cog.Builder[dashboard.VariableModel] {
	v := vars{c}
	query := func(name, label, expr string) *dashboard.QueryVariableBuilder {
		sm := dashboard.NewStringOrMap()
		sm.Map = map[string]any{"query": expr, "refId": name}
		return dashboard.NewQueryVariableBuilder(name).Label(label).Datasource(ds).
			Query(*sm).Definition(expr).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).AllValue(".*")
	}
	out := []cog.Builder[dashboard.VariableModel]{
		dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus"),
	}
	if c.ClusterLabel != "" {
		out = append(out, query("cluster", "Cluster", fmt.Sprintf("label_values(flagwarden_build_info, %s)", c.ClusterLabel)))
	}
	sel := ""
	if c.ClusterLabel != "" {
		sel = "{" + c.ClusterLabel + `=~"$cluster"}`
	}
	out = append(out, query("job", "Job", "label_values(flagwarden_build_info"+sel+", job)"))
	if withNamespace {
		out = append(out, query("namespace", "Worker namespace", "label_values("+v.s("flagwarden_pods")+", namespace)"))
	}
	if withQueue {
		out = append(out, query("queue", "Queue", "label_values("+v.s("flagwarden_celery_queue_depth")+", queue)"))
	}
	return out
}

// links join the dashboards both ways (keeping the time range and variables) and lead
// to flagwarden's own dashboard, which has a page per team.
func (c Config) links() []cog.Builder[dashboard.DashboardLink] {
	return []cog.Builder[dashboard.DashboardLink]{
		dashboard.NewDashboardLinkBuilder("flagwarden overview").Type(dashboard.DashboardLinkTypeLink).
			Url("/d/" + OverviewUID).Icon("dashboard").IncludeVars(true).KeepTime(true).
			Tooltip("Broker backlog, workers, rebuilds, paging and flagwarden itself"),
		dashboard.NewDashboardLinkBuilder("flagwarden teams").Type(dashboard.DashboardLinkTypeLink).
			Url("/d/" + TeamsUID).Icon("dashboard").IncludeVars(true).KeepTime(true).
			Tooltip("Team sizes, outliers, cache staleness and quarantine"),
		dashboard.NewDashboardLinkBuilder("Per-team pages (flagwarden)").Type(dashboard.DashboardLinkTypeLink).
			Url(c.FlagwardenURL + "/teams").Icon("external link").TargetBlank(true).
			Tooltip("flagwarden's own dashboard: every team's size, caches, findings and rebuilds (team ids are never label values)"),
	}
}

// classicModel: the SDK prefers its v2 (resource) dashboards, but those need Grafana 12
// with the v2 API enabled, while the classic JSON model provisions from files on every
// Grafana in use. The generated files use the classic model on purpose.
func (c Config) dashboard(uid, title, desc string, tags []string, vs []cog.Builder[dashboard.VariableModel], rows []row) *dashboard.DashboardBuilder { //nolint:staticcheck // classicModel
	b := dashboard.NewDashboardBuilder(title) //nolint:staticcheck // classicModel
	b = b.Uid(uid).Description(desc).Tags(tags).
		Editable().Tooltip(dashboard.DashboardCursorSyncCrosshair).Refresh("30s").
		Time("now-6h", "now").Timezone("utc").Variables(vs).Links(c.links())
	id := uint32(1)
	for _, r := range rows {
		b = b.WithRow(dashboard.NewRowBuilder(r.title).Id(id))
		id++
		for _, p := range r.panels {
			b = b.WithPanel(p.build(id))
			id++
		}
	}
	return b
}
