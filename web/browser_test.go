package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/loop"
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
				Name    string `json:"name"`
				Depth   int64  `json:"depth"`
				Unacked int64  `json:"unacked"`
			} `json:"queues"`
		}
		e.apiGet(t, "/queues", &queues)
		for _, q := range queues.Queues {
			sel := fmt.Sprintf(`[data-queue=%q] [data-field="depth"]`, q.Name)
			require.Equal(t, float64(q.Depth), e.value(t, sel), "depth of %s", q.Name)
			require.Equal(t, float64(q.Unacked), e.value(t, fmt.Sprintf(`[data-queue=%q] [data-field="unacked"]`, q.Name)))
		}
		require.Equal(t, "16.2k", e.text(t, `[data-queue="feature_flags"] [data-field="depth"]`), "numbers are formatted for people")
		require.Contains(t, e.text(t, `[data-queue="feature_flags"]`), "reaches 100k in", "the ETA is shown")
		selected := evalJS[bool](t, e, `document.querySelector('[data-queue="feature_flags"]').classList.contains("selected")`)
		require.True(t, selected, "?queue= from an alert link highlights the queue")
		require.Contains(t, e.text(t, "#findings"), "robust z")
		require.Contains(t, e.text(t, "#findings"), "412.5")
		require.Contains(t, e.text(t, "#workers"), "2 CrashLoopBackOff")
		workersCard := evalJS[string](t, e, `document.getElementById("card-workers").className`)
		require.Contains(t, workersCard, "crit", "crash-looping pods make the Workers card critical")
		// OOM kills in the window alone make it a warning, and a firing worker finding
		// sets its colour even while every pod is ready between kills.
		for expr, want := range map[string]string{
			`workersCardClass([], 0, 2, 4, 4)`: "warn",
			`workersCardClass([], 0, 0, 4, 4)`: "ok",
			`workersCardClass([{kind: "worker_oom_kills", state: "firing", severity: "critical"}], 0, 0, 4, 4)`:  "crit",
			`workersCardClass([{kind: "worker_oom_kills", state: "firing", severity: "warning"}], 0, 0, 4, 4)`:   "warn",
			`workersCardClass([{kind: "worker_oom_kills", state: "pending", severity: "critical"}], 0, 0, 4, 4)`: "ok",
			`workersCardClass([{kind: "backlog_growth", state: "firing", severity: "critical"}], 0, 0, 4, 4)`:    "ok",
		} {
			require.Equal(t, want, evalJS[string](t, e, expr), expr)
		}
		require.Contains(t, e.text(t, `[data-collector="celery"]`), "down")
		require.Contains(t, e.text(t, "#card-budget"), "300 MiB")
		nLines := evalJS[int](t, e, `document.querySelectorAll("#queues svg .trend").length`)
		require.Equal(t, 2, nLines, "every queue chart has its trend line")
		e.screenshot(t, "overview")
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
		require.Contains(t, e.text(t, "#team-rebuilds"), "96 MiB")
		require.Contains(t, e.text(t, "#team-rebuilds"), "2 h ago")
		e.screenshot(t, "team")
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
		require.Contains(t, e.text(t, `[data-lane="small"]`), "running")
		e.screenshot(t, "rebuilds")
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
