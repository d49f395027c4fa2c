package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// browserEnv is the dashboard served over a real loopback socket from real stores,
// and a headless Chromium pointed at it.
type browserEnv struct {
	b       *bundle
	base    string
	ctx     context.Context
	out     string
	mu      sync.Mutex
	jsError []string
}

func newBrowserEnv(t *testing.T) *browserEnv {
	t.Helper()
	chromium := testenv.Binary(t, "chromium")
	now := time.Now().UTC().Truncate(time.Second)
	b := newBundle(t, func(o *APIOptions) {
		o.Now = time.Now
		loops := o.Loops
		// The fixture's loop health, moved to the wall clock the browser reads.
		o.Loops = func() []loop.Health {
			hs := loops()
			shift := time.Since(fixtureNow)
			for i := range hs {
				hs[i].LastSuccess = hs[i].LastSuccess.Add(shift)
				hs[i].LastAttempt = hs[i].LastSuccess
			}
			return hs
		}
	})
	b.engine.now = time.Now
	// The fixture's data, relative to the wall clock the browser reads.
	b.snaps.SetTeams(b.snaps.Teams())
	fillStores(b.snaps, b.series, now)
	b.findings.mu.Lock()
	for i := range b.findings.active {
		b.findings.active[i].ActiveAt = now.Add(-3 * time.Hour)
		b.findings.active[i].FiredAt = now.Add(-170 * time.Minute)
	}
	b.findings.mu.Unlock()
	for team, hist := range b.engine.history {
		for i := range hist {
			hist[i].StartedAt = now.Add(-2 * time.Hour)
			hist[i].FinishedAt = now.Add(-2*time.Hour + 95*time.Second)
		}
		b.engine.history[team] = hist
	}

	srv := NewServer(Options{Listen: "127.0.0.1:0", ReadHeaderTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)}, b.router)
	require.NoError(t, srv.Start(context.Background()))
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)

	env := &browserEnv{b: b, base: "http://" + srv.Addr(), ctx: ctx, out: testenv.OutputDir(t)}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			env.mu.Lock()
			d := e.ExceptionDetails
			msg := fmt.Sprintf("%s at %s:%d:%d", d.Text, d.URL, d.LineNumber+1, d.ColumnNumber+1)
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			env.jsError = append(env.jsError, msg)
			env.mu.Unlock()
		}
	}))
	t.Cleanup(func() {
		env.mu.Lock()
		defer env.mu.Unlock()
		if len(env.jsError) > 0 {
			t.Errorf("the dashboard threw: %s", strings.Join(env.jsError, "; "))
		}
	})
	return env
}

// login stores token in the browser the way a user pasting it does.
func (e *browserEnv) login(t *testing.T, token string) {
	t.Helper()
	require.NoError(t, chromedp.Do(e.ctx,
		chromedp.Navigate(e.base+"/"),
		// Without a token the page opens the token form itself and says why.
		chromedp.WaitVisible(chromedp.CSS(`#app[data-state="error"]`)),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), token),
		chromedp.Click(chromedp.CSS(`#auth-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#app[data-state="ready"]`)),
	))
	require.Contains(t, e.text(t, "#toast"), "Using token")
	stored := evalJS[string](t, e, `localStorage.getItem("flagwarden.token")`)
	require.Equal(t, token, stored, "the token lives in the browser's localStorage")
}

// open navigates to path and waits for the page to have rendered its data.
func (e *browserEnv) open(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, chromedp.Do(e.ctx,
		chromedp.Navigate(e.base+path),
		chromedp.WaitVisible(chromedp.CSS(`#app[data-state="ready"]`)),
	))
}

func (e *browserEnv) screenshot(t *testing.T, name string) {
	t.Helper()
	png, err := chromedp.Run(e.ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	p := filepath.Join(e.out, name+".png")
	require.NoError(t, os.WriteFile(p, png, 0o644))
	t.Logf("screenshot %s", p)
}

// value reads the raw number a page shows in the element sel.
func (e *browserEnv) value(t *testing.T, sel string) float64 {
	t.Helper()
	attr, err := chromedp.Run(e.ctx, chromedp.AttributeValue(chromedp.CSS(sel), "data-value"))
	require.NoError(t, err)
	require.True(t, attr.Exists, "%s has no data-value", sel)
	v, err := strconv.ParseFloat(attr.Value, 64)
	require.NoError(t, err)
	return v
}

func evalJS[T any](t *testing.T, e *browserEnv, expr string) T {
	t.Helper()
	v, err := chromedp.Run(e.ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, "evaluate %s", expr)
	return v
}

func (e *browserEnv) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(e.ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(t, err)
	return s
}

// apiGet reads the API the way a script would, to compare with what the page shows.
func (e *browserEnv) apiGet(t *testing.T, path string, into any) {
	t.Helper()
	req, err := http.NewRequest("GET", e.base+"/api/v1"+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(into))
}

func TestDashboardInBrowser(t *testing.T) {
	e := newBrowserEnv(t)

	// Without a token the page says what to do rather than showing nothing.
	e.login(t, operateToken)

	t.Run("overview", func(t *testing.T) {
		e.open(t, "/?queue=feature_flags")
		var findings struct {
			Active []json.RawMessage `json:"active"`
		}
		e.apiGet(t, "/findings", &findings)
		require.Equal(t, float64(len(findings.Active)), e.value(t, "#card-findings .value [data-value]"))
		var queues struct {
			Queues []struct {
				Name               string   `json:"name"`
				Depth              int64    `json:"depth"`
				Unacked            int64    `json:"unacked"`
				DetectorETASeconds *float64 `json:"detector_eta_seconds"`
				Trend              *Trend   `json:"trend"`
				Growth             *struct {
					Verdict string `json:"verdict"`
				} `json:"growth"`
			} `json:"queues"`
		}
		e.apiGet(t, "/queues", &queues)
		for _, q := range queues.Queues {
			sel := fmt.Sprintf(`[data-queue=%q] [data-field="depth"]`, q.Name)
			require.Equal(t, float64(q.Depth), e.value(t, sel), "depth of %s", q.Name)
			require.Equal(t, float64(q.Unacked), e.value(t, fmt.Sprintf(`[data-queue=%q] [data-field="unacked"]`, q.Name)))
			// The verdict and ETA shown are the backlog detector's, as the API returns them.
			require.NotNil(t, q.Growth, q.Name)
			verdict := evalJS[string](t, e, fmt.Sprintf(`document.querySelector('[data-queue=%q] [data-field="verdict"]').dataset.value`, q.Name))
			require.Equal(t, q.Growth.Verdict, verdict, q.Name)
			eta := evalJS[string](t, e, fmt.Sprintf(`(document.querySelector('[data-queue=%q] [data-field="detector-eta"]') || {dataset: {eta: ""}}).dataset.eta`, q.Name))
			if q.DetectorETASeconds == nil {
				require.Empty(t, eta, "%s: no detector ETA, none shown", q.Name)
				continue
			}
			require.Equal(t, strconv.FormatFloat(*q.DetectorETASeconds, 'f', -1, 64), eta, q.Name)
			if q.Trend != nil && q.Trend.ETAToLimitSeconds != nil {
				require.NotEqual(t, strconv.FormatFloat(*q.Trend.ETAToLimitSeconds, 'f', -1, 64), eta, "%s: the chart's line is not what the page judges by", q.Name)
			}
		}
		require.Equal(t, "16.2k", e.text(t, `[data-queue="feature_flags"] [data-field="depth"]`), "numbers are formatted for people")
		require.Contains(t, e.text(t, `[data-queue="feature_flags"]`), "reaches 100k in", "the ETA is shown")
		require.Equal(t, "2.9 d", e.text(t, `[data-queue="feature_flags"] [data-field="detector-eta"]`), "the detector's 70 h, not the fitted line's")
		require.Contains(t, e.text(t, `[data-queue="feature_flags"]`), "growing")
		// Only the detector's judgment colours a queue: a steep fitted line without one is
		// not an alarm, a detector ETA under two days is.
		for expr, want := range map[string]string{
			`{trend: {eta_to_limit_seconds: 60}}`:                                 "none",
			`{growth: {verdict: "growing"}, detector_eta_seconds: 3600}`:          "alarm",
			`{growth: {verdict: "not_growing"}, detector_eta_seconds: 5 * 86400}`: "rising",
			`{growth: {verdict: "not_growing"}, detector_eta_seconds: null}`:      "steady",
		} {
			require.Equal(t, want, importJS[string](t, e, "/ui/js/widgets.js", `m.queueState(`+expr+`)`), expr)
		}
		selected := evalJS[bool](t, e, `document.querySelector('[data-queue="feature_flags"]').classList.contains("selected")`)
		require.True(t, selected, "?queue= from an alert link highlights the queue")
		require.Contains(t, e.text(t, "#findings"), "Robust z", "evidence keys read as words")
		require.Contains(t, e.text(t, "#findings"), "412.5")
		require.NotContains(t, e.text(t, "#findings"), "robust_z")
		require.Contains(t, e.text(t, "#workers"), "2 CrashLoopBackOff")
		workersCard := evalJS[string](t, e, `document.getElementById("card-workers").className`)
		require.Contains(t, workersCard, "crit", "crash-looping pods make the Workers card critical")
		require.Contains(t, e.text(t, "#card-workers"), "OOM kills in the last 1 h", "the card says the workers are being OOM-killed")
		// The card's colour follows OOM kills and worker findings, not only readiness: a
		// fleet that is all ready between kills has not recovered.
		for expr, want := range map[string]string{
			`{ooms: 2, ready: 4, total: 4}`:    "warn",
			`{ooms: 3, ready: 4, total: 4}`:    "crit",
			`{ooms: 7, ready: 4, total: 4}`:    "crit",
			`{lastOOM: 1, ready: 4, total: 4}`: "warn",
			`{ready: 4, total: 4}`:             "ok",
			`{ready: 3, total: 4}`:             "warn",
			`{active: [{kind: "worker_oom_kills", state: "firing", severity: "critical"}], ready: 4, total: 4}`:  "crit",
			`{active: [{kind: "worker_oom_kills", state: "firing", severity: "warning"}], ready: 4, total: 4}`:   "warn",
			`{active: [{kind: "worker_oom_kills", state: "pending", severity: "critical"}], ready: 4, total: 4}`: "ok",
			`{active: [{kind: "backlog_growth", state: "firing", severity: "critical"}], ready: 4, total: 4}`:    "ok",
		} {
			require.Equal(t, want, importJS[string](t, e, "/ui/js/widgets.js", `m.workersCardClass(`+expr+`)`), expr)
		}
		queueCard := evalJS[string](t, e, `document.getElementById("card-queue").className`)
		require.Contains(t, queueCard, "warn", "the firing backlog_growth warning colours the queue card")
		require.Equal(t, "crit", importJS[string](t, e, "/ui/js/widgets.js",
			`m.findingsClass([{kind: "fleet_cache_stale", state: "firing", severity: "critical"}], m.CACHE_KINDS)`))
		require.Contains(t, e.text(t, `[data-collector="celery"]`), "down")
		require.Contains(t, e.text(t, "#card-budget"), "300 MiB")
		require.Contains(t, e.text(t, "#card-caches"), "1 stale · 1 missing")

		// Every queue chart draws its trend; only a backlog heading for the limit is red.
		trends := evalJS[map[string]string](t, e, `Object.fromEntries([...document.querySelectorAll("#queues [data-queue]")].map(q => {
			const u = q.querySelector("figure.tchart").__uplot;
			const s = u.series.find(s => s.label && s.label.startsWith("trend"));
			return [q.dataset.queue, s ? s.label + " " + s._stroke : "none"];
		}))`)
		require.Contains(t, trends["celery"], "trend line (steady)")
		require.Contains(t, trends["celery"], "#8a99ab", "a steady queue's trend is grey, not red")
		require.Contains(t, trends["feature_flags"], "trend line (detector: rising)")
		require.NotContains(t, trends["feature_flags"], "#8a99ab")
		e.checkCharts(t, "#queues", "Messages (count)")
		e.checkCharts(t, "#workers", "Pods, events (count)")
		e.checkCharts(t, "#cache-staleness", "Lag behind data")
		workerSeries := evalJS[[]string](t, e, `document.querySelector("#workers figure.tchart").__uplot.series.slice(1).map(s => s.label)`)
		require.Equal(t, []string{"ready", "pods", "crash-looping", "OOM kills", "restarts"}, workerSeries)
		var pods struct {
			Namespaces []struct {
				OOM []json.RawMessage `json:"oom_kill_history"`
			} `json:"namespaces"`
		}
		e.apiGet(t, "/pods", &pods)
		oomPoints := evalJS[int](t, e, `document.querySelector("#workers figure.tchart").__uplot.data[4].filter(v => v != null).length`)
		require.NotZero(t, oomPoints)
		require.InDelta(t, len(pods.Namespaces[0].OOM), oomPoints, 1, "the OOM kill series is drawn from the API's history")
		// The lanes chart starts from the samples this page took.
		require.NoError(t, chromedp.Do(e.ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#lanes figure.tchart`))))
		e.checkCharts(t, "#lanes", "Builds (count)")
		e.screenshot(t, "overview")
	})

	t.Run("OOM kills between ready looks turn the Workers card red", func(t *testing.T) {
		// Every pod ready at this look, none crash-looping, no worker finding yet: only
		// the kills in the last hour say the fleet is sick, as early in an incident.
		before := e.b.snaps.Pods()
		t.Cleanup(func() { e.b.snaps.SetPods(before) })
		calm := before
		calm.At = time.Now()
		calm.Pods = nil
		for _, name := range []string{"celery-worker-a", "celery-worker-b", "celery-worker-c"} {
			calm.Pods = append(calm.Pods, snapshot.Pod{Namespace: "posthog", Name: name, Phase: "Running", Ready: true, Restarts: 3, MemoryLimit: 8 << 30})
		}
		e.b.snaps.SetPods(calm)
		e.b.findings.mu.Lock()
		findings := e.b.findings.active
		e.b.findings.active = slices.DeleteFunc(slices.Clone(findings), func(f detectors.Finding) bool { return strings.HasPrefix(f.Kind, "worker") })
		e.b.findings.mu.Unlock()
		t.Cleanup(func() { e.b.findings.mu.Lock(); e.b.findings.active = findings; e.b.findings.mu.Unlock() })

		e.open(t, "/")
		require.Equal(t, "3", e.text(t, "#card-workers .value [data-value]"), "all pods ready")
		require.Contains(t, evalJS[string](t, e, `document.getElementById("card-workers").className`), "crit")
		require.Positive(t, e.value(t, `#card-workers [data-field="oom-kills"]`))
		require.Contains(t, e.text(t, "#card-workers"), "OOM kills in the last 1 h")
		e.screenshot(t, "overview-oom-between-ready-looks")
	})

	t.Run("teams", func(t *testing.T) {
		e.open(t, "/teams")
		var dist struct {
			Teams    int   `json:"teams"`
			MaxBytes int64 `json:"max_bytes"`
		}
		e.apiGet(t, "/teams/distribution", &dist)
		require.Equal(t, float64(dist.Teams), e.value(t, "#card-teams [data-value]"))
		require.Equal(t, float64(dist.MaxBytes), e.value(t, "#card-largest [data-value]"))
		require.Equal(t, "1.96 GiB", e.text(t, "#card-largest .value"))
		var page struct {
			Teams []teamView `json:"teams"`
		}
		e.apiGet(t, "/teams?limit=25", &page)
		rows := evalJS[[]string](t, e, `[...document.querySelectorAll("#top-teams tbody tr")].map(r => r.dataset.team)`)
		require.Len(t, rows, len(page.Teams))
		for i, tv := range page.Teams {
			require.Equal(t, strconv.FormatInt(tv.TeamID, 10), rows[i], "row %d", i)
		}
		require.Equal(t, float64(page.Teams[0].PayloadBytes), e.value(t, `#top-teams tbody tr:first-child td:nth-child(2) [data-value]`))
		require.Contains(t, e.text(t, `#top-teams tbody tr:first-child`), "outlier")
		redBars := evalJS[int](t, e, `document.querySelectorAll("#distribution rect.outlier").length`)
		require.Equal(t, 1, redBars, "the outlier's bin is marked")
		e.screenshot(t, "teams")

		// Sorting by flags asks the API again without reloading the page.
		evalJS[any](t, e, `window.__marker = 1`)
		require.NoError(t, chromedp.Do(e.ctx,
			chromedp.Click(chromedp.CSS(`a.sort[data-sort="team_id"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#top-teams tbody tr[data-team="1"]:first-child`)),
		))
		marker := evalJS[int](t, e, `window.__marker`)
		require.Equal(t, 1, marker, "no page reload")
	})

	t.Run("team", func(t *testing.T) {
		e.open(t, "/teams/2")
		var d struct {
			Team teamView `json:"team"`
		}
		e.apiGet(t, "/teams/2", &d)
		require.Equal(t, float64(d.Team.PayloadBytes), e.value(t, "#card-payload [data-value]"))
		require.Equal(t, float64(d.Team.Flags), e.value(t, "#card-flags [data-value]"))
		require.Equal(t, "48k", e.text(t, "#card-flags .value"))
		require.Contains(t, e.text(t, "#caches"), "stale")
		require.Contains(t, e.text(t, "#caches"), "missing")
		require.Contains(t, e.text(t, "#team-rebuilds"), "MEMORY BOUND")
		require.Equal(t, "96 MiB", e.text(t, `#team-rebuilds [data-field="memory-bound"]`), "the build's own bound, not the process heap")
		require.Equal(t, "211 MiB", e.text(t, `#team-rebuilds [data-field="heap"]`))
		require.Equal(t, "live 120 MiB, the rest garbage not yet collected",
			evalJS[string](t, e, `document.querySelector('#team-rebuilds [data-field="heap"]').title`))
		took := evalJS[string](t, e, `document.querySelector('#team-rebuilds [data-field="took"]').title`)
		require.Contains(t, took, "first pass 2.5")
		require.Contains(t, took, "changed since the previous build (another replica's or process's, from the shared store)")
		require.Contains(t, took, "2 streaming passes")
		require.Contains(t, e.text(t, "#team-rebuilds"), "PROCESS HEAP PEAK", "the heap is labelled as the process's")
		e.checkCharts(t, "#size-history", "Payload, both caches")
		// Byte ticks are evenly spaced at a round binary step (2^k B, KiB, MiB, GiB), and
		// each reads as a whole number of its unit: 0, 1, 2, 3 GiB, never 191, 381, 572 MiB.
		ticks := evalJS[struct {
			Splits []float64
			Values []string
		}](t, e, `(() => { const a = document.querySelector("#size-history figure.tchart").__uplot.axes[1]; return {Splits: a._splits, Values: a._values}; })()`)
		require.GreaterOrEqual(t, len(ticks.Splits), 3)
		step := ticks.Splits[1] - ticks.Splits[0]
		require.Truef(t, isRoundBinary(step), "tick step %v is a round binary size", step)
		for i, v := range ticks.Splits {
			require.InDelta(t, ticks.Splits[0]+float64(i)*step, v, 1, "evenly spaced: %v", ticks.Splits)
			require.Regexp(t, `^\d+ (B|KiB|MiB|GiB|TiB)$`, ticks.Values[i], "whole numbers of a binary unit: %v", ticks.Values)
		}
		require.Contains(t, e.text(t, "#team-rebuilds"), "2 h ago")
		e.screenshot(t, "team")
	})

	t.Run("teams size filter in MiB", func(t *testing.T) {
		e.open(t, "/teams")
		opts := evalJS[[]string](t, e, `[...document.querySelectorAll("#min-bytes option")].map(o => o.textContent)`)
		require.Equal(t, []string{"any size", "1 MiB", "10 MiB", "100 MiB", "1 GiB"}, opts)
		require.Equal(t, "1048576", evalJS[string](t, e, `document.querySelectorAll("#min-bytes option")[1].value`))
		axes := evalJS[string](t, e, `document.querySelector("#distribution svg").textContent`)
		require.Contains(t, axes, "Teams (log scale)")
		require.Contains(t, axes, "Payload size, both caches")
	})

	t.Run("evidence labels", func(t *testing.T) {
		for key, want := range map[string][2]string{
			"tail_limit_bytes":       {"Tail limit", "64 MiB"},
			"threshold_z":            {"Threshold (z)", "3.5"},
			"lag_seconds":            {"Lag", "2 h"},
			"oom_kills":              {"OOM kills", "7"},
			"memory_ratio":           {"Memory", "93%"},
			"growth_ratio":           {"Growth", "2.5×"},
			"slope_per_hour":         {"Slope", "1.2k/h"},
			"estimated_memory_bytes": {"Estimated memory", "8 GiB"},
		} {
			v := map[string]float64{"tail_limit_bytes": 64 << 20, "threshold_z": 3.5, "lag_seconds": 7200, "oom_kills": 7,
				"memory_ratio": 0.93, "growth_ratio": 2.5, "slope_per_hour": 1200, "estimated_memory_bytes": 8 << 30}[key]
			got := importJS[[]string](t, e, "/ui/js/widgets.js", fmt.Sprintf(`[m.evidenceLabel(%q), m.evidenceValue(%q, %v)]`, key, key, v))
			require.Equal(t, []string{want[0], want[1]}, got, key)
		}
	})

	t.Run("operator quarantines a team", func(t *testing.T) {
		e.open(t, "/teams/7")
		require.NoError(t, chromedp.Do(e.ctx,
			chromedp.SendKeys(chromedp.ID("reason"), "one team must not starve the rest"),
			chromedp.Click(chromedp.ID("btn-quarantine")),
			chromedp.WaitVisible(chromedp.ID("btn-release")),
		))
		require.Contains(t, e.text(t, "h1"), "quarantined")
		require.Contains(t, e.text(t, "#operate"), "one team must not starve the rest")

		var d struct {
			Quarantine *struct {
				Reason string `json:"reason"`
			} `json:"quarantine"`
		}
		e.apiGet(t, "/teams/7", &d)
		require.NotNil(t, d.Quarantine, "the click took effect in the engine")
		require.Equal(t, "one team must not starve the rest", d.Quarantine.Reason)
		e.screenshot(t, "team-quarantined")

		// Rebuild: the toast says which job.
		evalJS[any](t, e, `document.getElementById("toast").hidden = true`)
		require.NoError(t, chromedp.Do(e.ctx,
			chromedp.Click(chromedp.ID("btn-rebuild")),
			chromedp.WaitVisible(chromedp.ID("toast")),
		))
		require.Contains(t, e.text(t, "#toast"), "queued as job")
	})

	t.Run("rebuilds", func(t *testing.T) {
		e.open(t, "/rebuilds")
		var st struct {
			Quarantined []json.RawMessage `json:"quarantined"`
			BudgetInUse int64             `json:"budget_in_use_bytes"`
		}
		e.apiGet(t, "/rebuilds", &st)
		require.Equal(t, float64(len(st.Quarantined)), e.value(t, "#card-quarantined [data-value]"))
		require.Equal(t, float64(st.BudgetInUse), e.value(t, "#card-budget [data-value]"))
		require.Contains(t, e.text(t, "#quarantined"), "team 7")
		require.Equal(t, "8", e.text(t, `#lanes [data-lane="small"] [data-field="running"]`), "busy workers of this replica, never more than its 8")
		require.Contains(t, e.text(t, `#lanes [data-lane="small"]`), "8 of 8 workers busy")
		require.Contains(t, e.text(t, `#lanes [data-lane="small"]`), "24 in the job table")
		fullLane := evalJS[string](t, e, `document.querySelector('#lanes [data-lane="small"] .meter').className`)
		require.NotContains(t, fullLane, "crit", "a full lane is not an alarm")
		require.Equal(t, "9/11", e.text(t, "#card-running .value"))
		e.screenshot(t, "rebuilds")
	})

	t.Run("a quarantined team without a cache is a warning", func(t *testing.T) {
		require.NoError(t, e.b.engine.Quarantine(context.Background(), 5, "held for the test"))
		t.Cleanup(func() { _ = e.b.engine.Release(context.Background(), 5, "test over") })
		e.open(t, "/teams/5")
		cls := evalJS[string](t, e, `document.querySelector('#caches [data-state="quarantined-no-cache"]').className`)
		require.Contains(t, cls, "warn")
		require.Contains(t, e.text(t, "#caches"), "quarantined")
		e.open(t, "/teams/6")
		require.Contains(t, e.text(t, "#caches .empty"), "No cache seen", "not quarantined: nothing to warn of")
	})

	t.Run("no element overflows the viewport", func(t *testing.T) {
		for _, width := range []int64{1280, 1400, 1920} {
			require.NoError(t, chromedp.Do(e.ctx, chromedp.EmulateViewport(width, 1000)))
			for _, path := range []string{"/", "/teams", "/teams/2", "/teams/7", "/rebuilds"} {
				e.open(t, path)
				// Charts follow their panel's width on resize; let them settle.
				_, err := chromedp.Run(e.ctx, chromedp.Poll[bool](`[...document.querySelectorAll("figure.tchart")].every(f => f.__uplot && f.__uplot.width <= f.clientWidth + 1)`))
				require.NoError(t, err)
				over := evalJS[[]string](t, e, overflowJS)
				require.Empty(t, over, "at %d px, %s: elements past the viewport", width, path)
				if path == "/" {
					e.screenshot(t, fmt.Sprintf("overview-%d", width))
				}
			}
		}
		require.NoError(t, chromedp.Do(e.ctx, chromedp.EmulateViewport(1440, 1000)))
	})

	t.Run("auto-refresh shows new data without a reload", func(t *testing.T) {
		e.open(t, "/rebuilds")
		evalJS[any](t, e, `window.__marker = 2`)
		loaded := evalJS[string](t, e, `document.getElementById("app").dataset.loadedAt`)
		require.NoError(t, e.b.engine.Release(context.Background(), 7, "test"))
		require.NoError(t, chromedp.Do(e.ctx,
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#app:not([data-loaded-at="%s"])`, loaded))),
		))
		require.Equal(t, 0.0, e.value(t, "#card-quarantined [data-value]"))
		marker := evalJS[int](t, e, `window.__marker`)
		require.Equal(t, 2, marker)
	})

	t.Run("a read token sees no operator buttons", func(t *testing.T) {
		evalJS[any](t, e, `localStorage.setItem("flagwarden.token", "`+readToken+`")`)
		e.open(t, "/teams/2")
		n := evalJS[int](t, e, `document.querySelectorAll("#operate, #btn-quarantine").length`)
		require.Zero(t, n)
		require.Contains(t, e.text(t, "#auth-button"), "viewer · read")
	})
}

// overflowJS lists the elements whose box reaches past the viewport's width (a cut-off
// column, a chart wider than its panel), and whether the page scrolls sideways at all.
// Content inside a sideways-scrolling container that itself fits is not cut off.
const overflowJS = `(() => {
  const vw = document.documentElement.clientWidth;
  const out = [];
  if (document.documentElement.scrollWidth > vw) out.push("the page scrolls sideways: " + document.documentElement.scrollWidth + " > " + vw);
  const scrolls = (el) => { for (let p = el.parentElement; p; p = p.parentElement) {
    const o = getComputedStyle(p).overflowX;
    if (o === "auto" || o === "scroll" || o === "hidden") { const r = p.getBoundingClientRect(); return r.right <= vw + 1 && r.left >= -1; }
  } return false; };
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest("[hidden]")) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if ((r.right > vw + 1 || r.left < -1) && !scrolls(el)) {
      out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + "." + [...el.classList].join(".") + " " + Math.round(r.left) + "–" + Math.round(r.right));
      if (out.length > 10) break;
    }
  }
  for (const w of document.querySelectorAll(".table-wrap")) {
    if (w.scrollWidth > w.clientWidth + 1) out.push("table cut off in " + (w.closest("[id]") || {}).id + ": " + w.scrollWidth + " > " + w.clientWidth);
  }
  return out;
})()`

// importJS evaluates expr with m bound to the dashboard's module at path, as the page
// loaded it.
func importJS[T any](t *testing.T, e *browserEnv, path, expr string) T {
	t.Helper()
	v, err := chromedp.Run(e.ctx, chromedp.Evaluate[T](`import(`+strconv.Quote(path)+`).then((m) => `+expr+`)`, chromedp.EvalAwaitPromise))
	require.NoError(t, err, "evaluate %s in %s", expr, path)
	return v
}

// checkCharts asserts what a person reads off every time chart in sel: a time axis
// titled in UTC with 24-hour ticks, a y axis titled with its unit (one of them yLabel),
// and a hover readout that shows the values under the cursor with the UTC time.
func (e *browserEnv) checkCharts(t *testing.T, sel, yLabel string) {
	t.Helper()
	type axes struct {
		X, Y   string
		XTicks []string
	}
	got := evalJS[[]axes](t, e, `[...document.querySelectorAll(`+strconv.Quote(sel+" figure.tchart")+`)].map(f => ({
		X: f.__uplot.axes[0].label, Y: f.__uplot.axes[1].label, XTicks: f.__uplot.axes[0]._values || [] }))`)
	require.NotEmpty(t, got, "%s has time charts", sel)
	ys := []string{}
	for _, a := range got {
		require.Equal(t, "Time (UTC)", a.X)
		require.NotEmpty(t, a.Y, "every y axis has a title")
		ys = append(ys, a.Y)
		require.NotEmpty(t, a.XTicks)
		for _, tick := range a.XTicks {
			require.Regexp(t, `^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$|^\d{1,2} [A-Z][a-z]{2}$`, tick, "24-hour UTC ticks: %v", a.XTicks)
		}
	}
	require.Contains(t, ys, yLabel)

	// Hover the middle of the first chart the way a mouse does.
	first := sel + " figure.tchart .u-over"
	require.NoError(t, chromedp.Do(e.ctx, chromedp.ScrollIntoView(chromedp.CSS(first))))
	box := evalJS[[]float64](t, e, `(() => { const r = document.querySelector(`+strconv.Quote(first)+`).getBoundingClientRect(); return [r.left + r.width * 0.6, r.top + r.height / 2]; })()`)
	require.NoError(t, chromedp.Do(e.ctx, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, box[0], box[1])))
	readout := evalJS[[]string](t, e, `[...document.querySelector(`+strconv.Quote(sel+" figure.tchart")+`).querySelectorAll(".u-legend .u-series .u-value")].map(v => v.textContent)`)
	require.GreaterOrEqual(t, len(readout), 2)
	require.Regexp(t, `^\d{4}-\d\d-\d\d ([01]\d|2[0-3]):[0-5]\d UTC$`, readout[0], "the readout's time is UTC, 24-hour, with the zone")
	shown := 0
	for _, v := range readout[1:] {
		if v != "–" && v != "" {
			shown++
		}
	}
	require.Positive(t, shown, "hovering shows the values under the cursor: %v", readout)
}

// isRoundBinary reports whether v is 1, 2, 4 … 512 times a power of 1,024.
func isRoundBinary(v float64) bool {
	for unit := 1.0; unit <= 1<<40; unit *= 1024 {
		for m := 1.0; m <= 512; m *= 2 {
			if v == m*unit {
				return true
			}
		}
	}
	return false
}
