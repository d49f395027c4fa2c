package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/rebuild"
)

const (
	readToken    = "read-token-0123456789"
	operateToken = "operate-token-0123456789"
)

// fixtureNow is the clock every fixture's data is relative to.
var fixtureNow = time.Date(2026, 2, 20, 12, 0, 0, 0, time.UTC)

// fillStores puts into real stores what the collectors would after a few hours of an
// incident: a growing feature_flags backlog, 300 teams with one 2 GB outlier, a
// crash-looping worker fleet, and caches of which one is stale.
func fillStores(snaps *snapshot.Store, ser *series.Store, now time.Time) {
	// Queues: feature_flags grows 1,200 messages an hour with a burst; celery is flat.
	for i := 0; i <= 360; i++ {
		t := now.Add(-6 * time.Hour).Add(time.Duration(i) * time.Minute)
		depth := 5000 + 20*float64(i)
		if i > 350 {
			depth += 4000 // a burst at the end that must not bend the trend
		}
		ser.Append(series.Key(series.QueueDepth, "feature_flags"), t, depth)
		ser.Append(series.Key(series.QueueDepth, "celery"), t, 40)
	}
	snaps.SetQueues(snapshot.Queues{
		At: now, Unacked: 12, Overdue: 3,
		Queues: []snapshot.Queue{
			{Name: "celery", Depth: 40, ByPriority: map[int]int64{0: 40}, Bound: true},
			{Name: "feature_flags", Depth: 16200, ByPriority: map[int]int64{0: 200, 3: 1000, 6: 15000}, Unacked: 12, Overdue: 3,
				OldestAge: 4 * time.Hour, Bound: true,
				Composition: snapshot.Composition{Sampled: 200, ByTask: map[string]int{"posthog.tasks.feature_flags.update_team_flags_cache": 200},
					ByTeam: map[int64]int{2: 190, 7: 10}, DistinctTeams: 2, DuplicateRatio: 0.99}},
		},
	})

	teams := map[int64]snapshot.TeamSize{}
	for id := int64(1); id <= 300; id++ {
		t := snapshot.TeamSize{TeamID: id, ProjectID: id, Flags: id % 40, ActiveFlags: id % 30, FiltersBytes: 900 + id*61,
			FlagsPayloadBytes: 2000 + id*137, DefinitionsPayloadBytes: 1500 + id*150,
			UpdatedAt: now.Add(-time.Duration(id) * time.Minute), MeasuredAt: now}
		if id == 2 {
			t.Flags, t.ActiveFlags, t.Cohorts, t.CohortBytes, t.FiltersBytes = 48000, 47000, 900, 310_000_000, 1_200_000_000
			t.FlagsPayloadBytes, t.DefinitionsPayloadBytes = 2_100_000_000, 1_900_000_000
			t.BadRows, t.BadReasons = 3, []string{"non-JSON filters"}
		}
		if id == 300 {
			t.FlagsPayloadBytes, t.DefinitionsPayloadBytes = 0, 0
		}
		teams[id] = t
	}
	snaps.SetTeams(snapshot.Teams{At: now, Full: true, PassSeconds: 4.2, Teams: teams})
	for i := 0; i < 10; i++ {
		t := now.Add(-time.Duration(10-i) * 24 * time.Hour)
		ser.Append(series.Key(series.TeamPayloadBytes, "2"), t, float64(400_000_000*(i+1)))
		ser.Append(series.Key(series.TeamFlags, "2"), t, float64(4800*(i+1)))
	}

	snaps.SetPods(snapshot.Pods{At: now, Source: "kubernetes", Pods: []snapshot.Pod{
		{Namespace: "posthog", Name: "celery-worker-a", Phase: "Running", Ready: false, Restarts: 41, RestartDelta: 1,
			Waiting: "CrashLoopBackOff", LastTermination: "OOMKilled", LastExitCode: 137, MemoryLimit: 8 << 30},
		{Namespace: "posthog", Name: "celery-worker-b", Phase: "Running", Ready: false, Restarts: 39,
			Waiting: "CrashLoopBackOff", LastTermination: "OOMKilled", LastExitCode: 137, MemoryLimit: 8 << 30},
		{Namespace: "posthog", Name: "celery-worker-c", Phase: "Running", Ready: true, Restarts: 2, MemoryLimit: 8 << 30, MemoryUsage: 6 << 30},
	}})
	for i := 0; i < 30; i++ {
		t := now.Add(-time.Duration(30-i) * 2 * time.Minute)
		ser.Append(series.Key(series.PodsTotal, "posthog"), t, 3)
		ser.Append(series.Key(series.PodsReady, "posthog"), t, float64(1+i%2))
		ser.Append(series.Key(series.OOMKills, "posthog"), t, float64(i%3))
		ser.Append(series.Key(series.Restarts, "posthog"), t, 1)
		ser.Append(series.Key(series.PodsCrashLooping, "posthog"), t, float64(min(i/10, 2)))
		ser.Append(series.Key(series.CacheLagP99, series.Fleet), t, float64(60*i))
		ser.Append(series.Key(series.CacheLagMax, series.Fleet), t, float64(120*i))
		ser.Append(series.Key(series.CacheStaleTeams, series.Fleet), t, float64(i/10))
	}

	snaps.SetCaches(snapshot.Caches{At: now, Teams: []snapshot.CacheState{
		{TeamID: 2, Kind: "flags", Source: "flagwarden", Bytes: 2_100_000_000, BuiltAt: now.Add(-96 * time.Hour),
			SourceUpdatedAt: now.Add(-time.Minute), Lag: 96*time.Hour - time.Minute, ETag: "abc"},
		{TeamID: 2, Kind: "definitions", Source: "flagwarden", Missing: true},
		{TeamID: 7, Kind: "flags", Source: "flagwarden", Bytes: 3000, BuiltAt: now.Add(-time.Minute)},
	}})
}

// memFindings is a findings source held in memory, for handler tests of the API's side.
type memFindings struct {
	mu     sync.Mutex
	active []detectors.Finding
	recent []detectors.Finding
	err    error
	// statuses are the detectors' last statuses, as the findings stores keep them.
	statuses []detectors.DetectorStatus
	// block, when set, makes Active wait for it or the context: a database that hangs.
	block chan struct{}
}

func (f *memFindings) Active(ctx context.Context) ([]detectors.Finding, error) {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.active), f.err
}

func (f *memFindings) Statuses(context.Context) ([]detectors.DetectorStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.statuses), f.err
}

func (f *memFindings) Recent(ctx context.Context, limit int) ([]detectors.Finding, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.recent[:min(limit, len(f.recent))]), f.err
}

func outlierFinding(team int64, now time.Time) detectors.Finding {
	s := strconv.FormatInt(team, 10)
	return detectors.Finding{
		ID: "outlier_team/" + s, Kind: "outlier_team", Severity: detectors.SeverityCritical, Subject: s,
		Labels:   map[string]string{"alertname": "FlagwardenOutlierTeam", "team": s},
		Summary:  "team " + s + " payload is 1,100× the fleet median",
		Evidence: map[string]float64{"value_bytes": 2.1e9, "median_bytes": 1.9e6, "robust_z": 412.5, "naive_build_bytes": 3.2e10},
		State:    detectors.StateFiring, ActiveAt: now.Add(-3 * time.Hour), FiredAt: now.Add(-170 * time.Minute),
	}
}

// memEngine is a rebuild engine held in memory that behaves as the contract says:
// unknown teams are refused, a second request for a waiting team joins it.
type memEngine struct {
	mu          sync.Mutex
	known       func(int64) bool
	nextJob     int64
	waiting     map[int64]int64
	quarantined map[int64]rebuild.Quarantine
	history     map[int64][]rebuild.BuildResult
	err         error
	now         func() time.Time
	// block makes every call wait for the request's context, to test timeouts and limits.
	block chan struct{}
}

func newMemEngine(known func(int64) bool) *memEngine {
	return &memEngine{known: known, nextJob: 100, now: func() time.Time { return fixtureNow }, waiting: map[int64]int64{},
		quarantined: map[int64]rebuild.Quarantine{}, history: map[int64][]rebuild.BuildResult{}}
}

func (e *memEngine) gate(ctx context.Context) error {
	if e.block == nil {
		return e.err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.block:
		return e.err
	}
}

func (e *memEngine) Request(ctx context.Context, team int64, reason string) (rebuild.RequestResult, error) {
	if err := e.gate(ctx); err != nil {
		return rebuild.RequestResult{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.known(team) {
		return rebuild.RequestResult{}, fmt.Errorf("request rebuild of team %d: %w", team, rebuild.ErrUnknownTeam)
	}
	if job, ok := e.waiting[team]; ok {
		return rebuild.RequestResult{TeamID: team, JobID: job, Joined: true, Lane: rebuild.LaneSmall}, nil
	}
	e.nextJob++
	e.waiting[team] = e.nextJob
	return rebuild.RequestResult{TeamID: team, JobID: e.nextJob, Lane: rebuild.LaneSmall}, nil
}

func (e *memEngine) Quarantine(ctx context.Context, team int64, reason string) error {
	if err := e.gate(ctx); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.known(team) {
		return rebuild.ErrUnknownTeam
	}
	e.quarantined[team] = rebuild.Quarantine{TeamID: team, Reason: reason, Since: e.now()}
	return nil
}

func (e *memEngine) Release(ctx context.Context, team int64, reason string) error {
	if err := e.gate(ctx); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.known(team) {
		return rebuild.ErrUnknownTeam
	}
	delete(e.quarantined, team)
	return nil
}

func (e *memEngine) Quarantined(ctx context.Context) ([]rebuild.Quarantine, error) {
	if err := e.gate(ctx); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []rebuild.Quarantine
	for _, q := range e.quarantined {
		out = append(out, q)
	}
	return out, nil
}

func (e *memEngine) Status(ctx context.Context) (rebuild.Status, error) {
	qs, err := e.Quarantined(ctx)
	if err != nil {
		return rebuild.Status{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var recent []rebuild.BuildResult
	for _, h := range e.history {
		recent = append(recent, h...)
	}
	return rebuild.Status{
		Lanes: []rebuild.LaneStatus{
			// The job table counts more running than this replica's workers (builds whose
			// end is not yet written, a dead replica's jobs): the page shows running_here.
			{Lane: rebuild.LaneSmall, Running: 24, RunningHere: 8, Waiting: len(e.waiting), Workers: 8},
			{Lane: rebuild.LaneLarge, Running: 1, RunningHere: 1, Waiting: 0, Workers: 2},
			{Lane: rebuild.LaneQuarantine, Running: 0, RunningHere: 0, Waiting: len(qs), Workers: 1},
		},
		BudgetBytes: 512 << 20, BudgetInUse: 300 << 20, Quarantined: qs, Recent: recent,
	}, nil
}

func (e *memEngine) History(ctx context.Context, team int64, limit int) ([]rebuild.BuildResult, error) {
	if err := e.gate(ctx); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.history[team]
	return slices.Clone(h[:min(limit, len(h))]), nil
}

// bundle is one API over filled stores, served by an httptest server.
type bundle struct {
	api      *API
	snaps    *snapshot.Store
	series   *series.Store
	findings *memFindings
	engine   *memEngine
	reg      *prometheus.Registry
	router   *gin.Engine
}

type bundleOpt func(*APIOptions)

func newBundle(t testing.TB, mods ...bundleOpt) *bundle {
	t.Helper()
	b := &bundle{snaps: snapshot.NewStore(), series: series.New(series.Options{MaxPoints: 20000}, nil), reg: prometheus.NewRegistry()}
	fillStores(b.snaps, b.series, fixtureNow)
	b.findings = &memFindings{active: []detectors.Finding{outlierFinding(2, fixtureNow), {
		ID: "backlog_growth/feature_flags", Kind: "backlog_growth", Severity: detectors.SeverityWarning, Subject: "feature_flags",
		Labels: map[string]string{"queue": "feature_flags"}, Summary: "feature_flags backlog grows 1.2k/h",
		Evidence: map[string]float64{"slope_per_hour": 1200, "tau": 0.97}, State: detectors.StateFiring, ActiveAt: fixtureNow.Add(-time.Hour),
	}}}
	b.findings.recent = slices.Clone(b.findings.active)
	// The backlog detector's last pass: feature_flags grows toward the limit, celery is flat.
	b.findings.statuses = []detectors.DetectorStatus{{Detector: detectors.BacklogDetector, At: fixtureNow.Add(-30 * time.Second), Evaluated: 2,
		Queues: []detectors.BacklogStatus{
			{Queue: "celery", Depth: 40, ETASeconds: -1, Comparison: "yesterday"},
			{Queue: "feature_flags", Depth: 16200, Tau: 0.97, SlopePerHour: 1200, ETASeconds: 70 * 3600, Growing: true, Comparison: "yesterday"},
		}}}
	b.engine = newMemEngine(func(id int64) bool { _, ok := b.snaps.Team(id); return ok })
	b.engine.history[2] = []rebuild.BuildResult{{TeamID: 2, JobID: 7, Lane: rebuild.LaneLarge, StartedAt: fixtureNow.Add(-2 * time.Hour),
		FinishedAt: fixtureNow.Add(-2*time.Hour + 95*time.Second), OK: true, Flags: 48000, FlagsBytes: 2_100_000_000,
		DefinitionsBytes: 1_900_000_000, PeakHeapBytes: 211 << 20, MemoryBoundBytes: 96 << 20,
		PeakLiveHeapBytes: 120 << 20, FirstPassSeconds: 2.5, PredictionReused: true, PredictionSource: rebuild.PredictionShared, Attempts: 2}}
	opts := APIOptions{
		Snapshots: b.snaps, Series: b.series, Findings: b.findings, Engine: b.engine,
		Loops: func() []loop.Health {
			return []loop.Health{
				{Name: "teams", Up: true, Passes: 10, LastSuccess: fixtureNow.Add(-30 * time.Second)},
				{Name: "celery", Up: false, Passes: 12, Failures: 4, LastError: "dial tcp 127.0.0.1:6379: connection refused",
					LastSuccess: fixtureNow.Add(-10 * time.Minute)},
			}
		},
		Auth: Auth{Tokens: []Token{
			{Name: "viewer", Token: readToken, Role: RoleRead},
			{Name: "oncall", Token: operateToken, Role: RoleOperate},
		}},
		Logger:     slog.New(slog.DiscardHandler),
		Registerer: b.reg,
		Now:        func() time.Time { return fixtureNow },
	}
	for _, m := range mods {
		m(&opts)
	}
	api, err := NewAPI(opts)
	require.NoError(t, err)
	b.api = api
	b.router = NewRouter(Options{Gatherer: b.reg, Routes: api.Register})
	return b
}

type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body: %s", r.Body)
	return m
}

// errorCode returns the code of the one error shape, failing if the body is not it.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var e errorBody
	require.NoError(t, json.Unmarshal(r.Body, &e), "body: %s", r.Body)
	require.NotEmpty(t, e.Error.Code, "error shape without code: %s", r.Body)
	require.NotEmpty(t, e.Error.Message, "error shape without message: %s", r.Body)
	return e.Error.Code
}

func (b *bundle) do(t *testing.T, method, path, token, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json") // as every client of the API sends it
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	b.router.ServeHTTP(rec, req)
	return response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}
