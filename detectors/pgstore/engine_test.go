package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/detectors/pgstore"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/statedb"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

var t0 = time.Date(2026, 2, 10, 12, 0, 0, 0, time.UTC)

func statePool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := testenv.Postgres(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = statedb.Migrate(ctx, pool)
	require.NoError(t, err)
	return pool
}

type quarantines struct {
	qs  []snapshot.Quarantine
	err error
}

func (q *quarantines) Quarantined(context.Context) ([]snapshot.Quarantine, error) { return q.qs, q.err }

type recordingPager struct{ last []detectors.Finding }

func (p *recordingPager) Update(_ time.Time, relevant []detectors.Finding) { p.last = relevant }

func TestEngineEndToEndWithStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := statePool(t)
	store := pgstore.New(pool)

	ser := series.New(series.Options{MaxPoints: 10000}, nil)
	snaps := snapshot.NewStore()
	// 200 ordinary teams and one giant whose naive build exceeds the 8 GiB limit.
	ts := snapshot.Teams{At: t0, Full: true, Teams: map[int64]snapshot.TeamSize{}}
	for i := int64(1); i <= 200; i++ {
		ts.Teams[i] = snapshot.TeamSize{TeamID: i, FlagsPayloadBytes: 20_000 + i*500, DefinitionsPayloadBytes: 10_000}
	}
	ts.Teams[2] = snapshot.TeamSize{TeamID: 2, FlagsPayloadBytes: 2 << 30, DefinitionsPayloadBytes: 1 << 30}
	snaps.SetTeams(ts)
	// A queue whose messages sit there, its oldest message ageing with the clock:
	// stalled.
	for i := range 40 {
		at := t0.Add(time.Duration(i-39) * 30 * time.Second)
		ser.Append(series.Key(series.QueueDepth, "celery"), at, 5000)
		ser.Append(series.Key(series.QueueOldestAge, "celery"), at, float64(3600+30*i))
	}
	snaps.SetPods(snapshot.Pods{At: t0, Pods: []snapshot.Pod{
		{Namespace: "posthog", Name: "w1", Waiting: "CrashLoopBackOff"},
		{Namespace: "posthog", Name: "w2"},
	}})
	q := &quarantines{qs: []snapshot.Quarantine{{TeamID: 2, Reason: "estimated build over the hard limit", Auto: true, Since: t0}}}
	now := t0
	health := []loop.Health{{Name: "celery", LastSuccess: t0.Add(-time.Hour)}}
	reg := prometheus.NewRegistry()
	pager := &recordingPager{}
	opts := detectors.EngineOptions{
		Series: ser, Snapshots: snaps, Quarantine: q, Store: store, Pager: pager,
		Health:             func() []loop.Health { return health },
		CollectorDownAfter: 5 * time.Minute,
		Links:              detectors.Links{RunbookBase: "https://docs/runbook.md", ExternalURL: "https://fw.example"},
		Backlog:            detectors.BacklogOptions{For: 5 * time.Minute},
		Outlier:            detectors.OutlierOptions{MinBytes: 1 << 20, WorkerMemoryLimit: 8 << 30},
		Worker:             detectors.WorkerOptions{For: 5 * time.Minute},
		Cache:              detectors.CacheOptions{StaleAfter: 15 * time.Minute},
		Registerer:         reg, Now: func() time.Time { return now },
	}
	e, err := detectors.NewEngine(opts)
	require.NoError(t, err)
	require.NoError(t, e.RunOnce(ctx))

	// Another replica's API reads the same store.
	reader := pgstore.New(pool)
	active, err := reader.Active(ctx)
	require.NoError(t, err)
	byID := map[string]detectors.Finding{}
	for _, f := range active {
		byID[f.ID] = f
	}
	for id, state := range map[string]detectors.State{
		"outlier_team{team=2}":                    detectors.StateFiring, // For 0: the memory rule pages at once
		"team_quarantined{team=2}":                detectors.StateFiring,
		"backlog_stalled{queue=celery}":           detectors.StateFiring,
		"collector_down{collector=celery}":        detectors.StateFiring,
		"workers_crashlooping{namespace=posthog}": detectors.StatePending,
	} {
		require.Containsf(t, byID, id, "active: %v", byID)
		require.Equal(t, state, byID[id].State, id)
	}
	out := byID["outlier_team{team=2}"]
	require.Equal(t, detectors.SeverityCritical, out.Severity)
	require.Equal(t, "https://fw.example/teams/2", out.GeneratorURL)
	require.Equal(t, "https://docs/runbook.md#outlier_team", out.RunbookURL)
	require.Equal(t, float64(8*(3<<30)), out.Evidence["estimated_memory_bytes"])
	require.Equal(t, "https://fw.example/?queue=celery", byID["backlog_stalled{queue=celery}"].GeneratorURL)
	require.Len(t, pager.last, 4, "pending findings do not page")
	require.Equal(t, 1.0, gauge(t, reg, "flagwarden_detector_evaluations_total", nil))
	require.Equal(t, 1.0, gauge(t, reg, "flagwarden_findings_active", map[string]string{"kind": "workers_crashlooping", "severity": "critical"}))
	statuses, err := reader.Statuses(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, statuses)

	// A quarantine lookup that fails keeps the quarantine finding; the pass reports it.
	q.err = errors.New("state database unreachable")
	now = now.Add(30 * time.Second)
	require.ErrorContains(t, e.RunOnce(ctx), "state database unreachable")
	active, err = reader.Active(ctx)
	require.NoError(t, err)
	require.True(t, containsID(active, "team_quarantined{team=2}"))

	// The collector recovers and the team is released: both resolve, and stay in Recent.
	q.err, q.qs = nil, nil
	now = now.Add(30 * time.Second)
	health = []loop.Health{{Name: "celery", LastSuccess: now}}
	require.NoError(t, e.RunOnce(ctx))
	active, err = reader.Active(ctx)
	require.NoError(t, err)
	require.False(t, containsID(active, "team_quarantined{team=2}"))
	require.False(t, containsID(active, "collector_down{collector=celery}"))
	recent, err := reader.Recent(ctx, 50)
	require.NoError(t, err)
	var resolved int
	for _, f := range recent {
		if f.State == detectors.StateResolved {
			resolved++
			require.False(t, f.ResolvedAt.IsZero())
		}
	}
	require.Equal(t, 2, resolved)

	// A new leader restores the firing findings instead of paging them from scratch.
	e2, err := detectors.NewEngine(detectors.EngineOptions{Series: ser, Snapshots: snaps, Store: store, Links: opts.Links,
		Outlier: opts.Outlier, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now.Add(time.Minute) }})
	require.NoError(t, err)
	require.NoError(t, e2.RunOnce(ctx))
	active, err = reader.Active(ctx)
	require.NoError(t, err)
	for _, f := range active {
		if f.ID == "outlier_team{team=2}" {
			require.Equal(t, t0, f.FiredAt.UTC(), "fired_at kept across the takeover")
		}
	}
	// The resolved one comes back as a new occurrence, not a rewrite of history.
	q.qs = []snapshot.Quarantine{{TeamID: 2, Reason: "again", Since: now}}
	now = now.Add(2 * time.Minute)
	require.NoError(t, e.RunOnce(ctx))
	recent, err = reader.Recent(ctx, 100)
	require.NoError(t, err)
	n := 0
	for _, f := range recent {
		if f.ID == "team_quarantined{team=2}" {
			n++
		}
	}
	require.Equal(t, 2, n)
	limited, err := reader.Recent(ctx, 1)
	require.NoError(t, err)
	require.Len(t, limited, 1)
}

func containsID(fs []detectors.Finding, id string) bool {
	for _, f := range fs {
		if f.ID == id {
			return true
		}
	}
	return false
}

func TestEngineRetriesResolutionsTheStoreMissed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := statePool(t)
	good := pgstore.New(pool)
	broken, err := pgxpool.New(ctx, pool.Config().ConnString())
	require.NoError(t, err)
	broken.Close() // every query on it fails

	q := &quarantines{qs: []snapshot.Quarantine{{TeamID: 5, Reason: "manual", Since: t0}}}
	now := t0
	store := &switchStore{FindingStore: good}
	e, err := detectors.NewEngine(detectors.EngineOptions{Series: series.New(series.Options{MaxPoints: 10}, nil), Snapshots: snapshot.NewStore(),
		Quarantine: q, Store: store, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	require.NoError(t, err)
	require.NoError(t, e.RunOnce(ctx))

	// The team is released while the state database is unreachable.
	q.qs = nil
	now = now.Add(30 * time.Second)
	store.FindingStore = pgstore.New(broken)
	require.Error(t, e.RunOnce(ctx))
	active, err := good.Active(ctx)
	require.NoError(t, err)
	require.Len(t, active, 1, "the store still shows it firing")

	store.FindingStore = good
	now = now.Add(30 * time.Second)
	require.NoError(t, e.RunOnce(ctx))
	active, err = good.Active(ctx)
	require.NoError(t, err)
	require.Empty(t, active, "the missed resolution was written on the next pass")
	recent, err := good.Recent(ctx, 10)
	require.NoError(t, err)
	require.Len(t, recent, 1)
	require.Equal(t, detectors.StateResolved, recent[0].State)
	require.Equal(t, t0.Add(30*time.Second), recent[0].ResolvedAt, "resolved when it cleared, not when it was written")
}

// switchStore lets a test swap the store an engine writes to.
type switchStore struct{ detectors.FindingStore }

// gauge reads one sample of a metric family from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}
