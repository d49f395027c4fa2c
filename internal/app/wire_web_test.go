package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/collectors/teams"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

const (
	webReadToken    = "web-read-token-0123456789"
	webOperateToken = "web-operate-token-0123456789"
)

// TestDashboardOnRealApp runs the whole app in-process against a seeded flag database,
// a real Redis and the real rebuild engine and findings store, measures the teams the
// way the teams collector does, and drives the dashboard in Chromium: the numbers shown
// are the API's, and an operator's quarantine click lands in the engine.
func TestDashboardOnRealApp(t *testing.T) {
	chromium := testenv.Binary(t, "chromium")
	ctx := context.Background()
	pgURL := testenv.Postgres(t)
	redisURL := testenv.Redis(t)

	pool, err := pgxpool.New(ctx, pgURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, posthog.ApplySchema(ctx, pool))
	seeded, err := seed.Fleet(ctx, pool, seed.Options{Teams: 40, Seed: 5, GiantFlags: 3000})
	require.NoError(t, err)

	cfg := testConfig(t, pgURL, redisURL)
	cfg.Auth.Tokens = []config.Token{
		{Name: "viewer", Token: webReadToken, Role: config.RoleRead},
		{Name: "oncall", Token: webOperateToken, Role: config.RoleOperate},
	}
	a := startApp(t, cfg, "web")
	require.NotNil(t, a.engine, "rebuild is enabled by default")
	base := "http://" + a.Addr()

	// One pass of the teams collector fills the app's stores, as its loop would.
	tc, err := teams.New(teams.NewPostgres(a.flagPool, 30*time.Second), teams.Options{}, a.snapshots, a.series,
		prometheus.NewRegistry(), quiet)
	require.NoError(t, err)
	require.NoError(t, tc.RunOnce(ctx))
	require.NotZero(t, len(a.snapshots.Teams().Teams))

	api := func(method, path, token, body string, into any) int {
		t.Helper()
		req, err := http.NewRequest(method, base+"/api/v1"+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		if into != nil {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(into))
		}
		return resp.StatusCode
	}

	// A real build through the API, so the rebuild pages have a result to show.
	small := seeded.FirstTeamID
	var accepted struct {
		JobID  int64 `json:"job_id"`
		Joined bool  `json:"joined"`
	}
	require.Equal(t, http.StatusAccepted, api("POST", fmt.Sprintf("/teams/%d/rebuild", small), webOperateToken, `{"reason":"web test"}`, &accepted))
	require.NotZero(t, accepted.JobID)
	require.Equal(t, http.StatusNotFound, api("POST", "/teams/987654321/rebuild", webOperateToken, "", nil))
	deadline := time.Now().Add(90 * time.Second)
	for {
		var d struct {
			Rebuilds []json.RawMessage `json:"rebuilds"`
		}
		require.Equal(t, 200, api("GET", fmt.Sprintf("/teams/%d", small), webReadToken, "", &d))
		if len(d.Rebuilds) > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the engine never finished the requested build")
		time.Sleep(200 * time.Millisecond)
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1000))
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	bctx, cancelT := context.WithTimeout(bctx, 2*time.Minute)
	t.Cleanup(cancelT)
	out := testenv.OutputDir(t)

	ready := chromedp.WaitVisible(chromedp.CSS(`#app[data-state="ready"]`))
	open := func(path string) {
		t.Helper()
		require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(base+path), ready))
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(out, name+".png"), png, 0o644))
	}
	value := func(sel string) float64 {
		t.Helper()
		attr, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(sel), "data-value"))
		require.NoError(t, err)
		require.True(t, attr.Exists, "%s has no data-value", sel)
		v, err := strconv.ParseFloat(attr.Value, 64)
		require.NoError(t, err)
		return v
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err)
		return s
	}

	// The user pastes an operate token into the form the page opens for want of one.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), webOperateToken),
		chromedp.Click(chromedp.CSS(`#auth-form button[type="submit"]`)),
		ready,
	))
	shot("overview")

	open("/teams")
	var dist struct {
		Teams    int   `json:"teams"`
		MaxBytes int64 `json:"max_bytes"`
	}
	require.Equal(t, 200, api("GET", "/teams/distribution", webReadToken, "", &dist))
	require.Equal(t, float64(dist.Teams), value("#card-teams [data-value]"))
	require.Equal(t, float64(dist.MaxBytes), value("#card-largest [data-value]"))
	var page struct {
		Teams []struct {
			TeamID       int64 `json:"team_id"`
			PayloadBytes int64 `json:"payload_bytes"`
		} `json:"teams"`
	}
	require.Equal(t, 200, api("GET", "/teams?limit=25", webReadToken, "", &page))
	require.Equal(t, seeded.GiantTeamID, page.Teams[0].TeamID, "the giant team is the biggest")
	require.Equal(t, strconv.FormatInt(page.Teams[0].TeamID, 10), text(`#top-teams tbody tr:first-child td:first-child`)[len("team "):])
	require.Equal(t, float64(page.Teams[0].PayloadBytes), value(`#top-teams tbody tr:first-child td:nth-child(2) [data-value]`))
	shot("teams")

	giant := seeded.GiantTeamID
	open(fmt.Sprintf("/teams/%d", giant))
	var team struct {
		Team struct {
			Flags        int64 `json:"flags"`
			PayloadBytes int64 `json:"payload_bytes"`
		} `json:"team"`
	}
	require.Equal(t, 200, api("GET", fmt.Sprintf("/teams/%d", giant), webReadToken, "", &team))
	require.EqualValues(t, 3000, team.Team.Flags)
	require.Equal(t, float64(team.Team.Flags), value("#card-flags [data-value]"))
	require.Equal(t, float64(team.Team.PayloadBytes), value("#card-payload [data-value]"))

	require.NoError(t, chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.ID("reason"), "3,000 flags of test data"),
		chromedp.Click(chromedp.ID("btn-quarantine")),
		chromedp.WaitVisible(chromedp.ID("btn-release")),
	))
	var st struct {
		Quarantined []struct {
			TeamID int64  `json:"team_id"`
			Reason string `json:"reason"`
		} `json:"quarantined"`
		Recent []struct {
			TeamID int64 `json:"team_id"`
			OK     bool  `json:"ok"`
		} `json:"recent"`
	}
	require.Equal(t, 200, api("GET", "/rebuilds", webReadToken, "", &st))
	require.Len(t, st.Quarantined, 1, "the click quarantined the team in the engine")
	require.Equal(t, giant, st.Quarantined[0].TeamID)
	require.Equal(t, "3,000 flags of test data", st.Quarantined[0].Reason)
	shot("team")

	open("/rebuilds")
	require.Equal(t, float64(len(st.Quarantined)), value("#card-quarantined [data-value]"))
	require.Contains(t, text("#quarantined"), fmt.Sprintf("team %d", giant))
	require.NotEmpty(t, st.Recent)
	require.Contains(t, text("#recent"), fmt.Sprintf("team %d", st.Recent[0].TeamID))
	shot("rebuilds")
}
