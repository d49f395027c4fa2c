package detectors

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

func memFindingAt(id string, sev Severity, state State, at time.Time) Finding {
	return Finding{ID: id, Kind: "k", Severity: sev, State: state, ActiveAt: at,
		Labels: map[string]string{"alertname": "k"}, Evidence: map[string]float64{"v": 1}}
}

// TestMemStoreLifecycle follows Store's semantics: upsert by id keeping the first
// activation, resolve closes, a pending finding that clears is dropped, a resolved id
// can fire again as a new finding, and pruning removes only old resolved ones.
func TestMemStoreLifecycle(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

	require.NoError(t, s.Apply(ctx, []Change{
		{Finding: memFindingAt("a", SeverityWarning, StatePending, t0)},
		{Finding: memFindingAt("b", SeverityCritical, StateFiring, t0.Add(time.Minute))},
		{Finding: memFindingAt("c", SeverityWarning, StatePending, t0.Add(2*time.Minute))},
	}))
	active, err := s.Active(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"b", "a", "c"}, ids(active), "critical first, then oldest")

	// a fires (its first activation stays), c clears before firing, b resolves.
	fired := memFindingAt("a", SeverityWarning, StateFiring, t0.Add(5*time.Minute))
	fired.FiredAt = t0.Add(5 * time.Minute)
	resolved := memFindingAt("b", SeverityCritical, StateResolved, t0.Add(time.Minute))
	resolved.ResolvedAt = t0.Add(10 * time.Minute)
	require.NoError(t, s.Apply(ctx, []Change{
		{Finding: fired},
		{Finding: memFindingAt("c", SeverityWarning, StatePending, t0), Dropped: true},
		{Finding: resolved},
	}))
	active, err = s.Active(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, ids(active))
	require.Equal(t, StateFiring, active[0].State)
	require.Equal(t, t0, active[0].ActiveAt)
	require.Equal(t, t0.Add(5*time.Minute), active[0].FiredAt)

	// b fires again: a new finding next to the resolved one.
	require.NoError(t, s.Apply(ctx, []Change{{Finding: memFindingAt("b", SeverityCritical, StateFiring, t0.Add(20*time.Minute))}}))
	recent, err := s.Recent(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"b", "b", "a"}, ids(recent), "newest first, history kept")
	require.Equal(t, StateFiring, recent[0].State)
	require.Equal(t, StateResolved, recent[1].State)
	top, err := s.Recent(ctx, 1)
	require.NoError(t, err)
	require.Len(t, top, 1)
	none, err := s.Recent(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, none)

	// callers cannot change what is stored.
	recent[0].Labels["alertname"] = "changed"
	again, _ := s.Recent(ctx, 1)
	require.Equal(t, "k", again[0].Labels["alertname"])

	n, err := s.Prune(ctx, t0.Add(5*time.Minute))
	require.NoError(t, err)
	require.Zero(t, n, "resolved after the cutoff: kept")
	n, err = s.Prune(ctx, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	recent, _ = s.Recent(ctx, 10)
	require.Equal(t, []string{"b", "a"}, ids(recent))

	// resolving or dropping an unknown id changes nothing.
	require.NoError(t, s.Apply(ctx, []Change{{Finding: resolved}, {Finding: memFindingAt("zz", SeverityWarning, StatePending, t0), Dropped: true}}))
	recent, _ = s.Recent(ctx, 10)
	require.Len(t, recent, 2)
}

func TestMemStoreStatuses(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	require.NoError(t, s.SaveStatus(ctx, []DetectorStatus{{Detector: "backlog", Evaluated: 1}, {Detector: "among", Evaluated: 2}}))
	require.NoError(t, s.SaveStatus(ctx, []DetectorStatus{{Detector: "backlog", Evaluated: 3}}))
	st, err := s.Statuses(ctx)
	require.NoError(t, err)
	require.Len(t, st, 2)
	require.Equal(t, "among", st[0].Detector)
	require.Equal(t, 3, st[1].Evaluated, "replaced, not appended")
}

// TestEngineWithMemStore runs the detector engine on a MemStore: what it finds is
// readable from the store, as the API reads it.
func TestEngineWithMemStore(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	now := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	e, err := NewEngine(EngineOptions{
		Series: series.New(series.Options{}, prometheus.NewRegistry()), Snapshots: snapshot.NewStore(),
		Quarantine: memQuarantines{{TeamID: 2, Reason: "too big", Auto: true, Since: now.Add(-time.Hour)}},
		Store:      s, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now },
	})
	require.NoError(t, err)
	require.NoError(t, e.RunOnce(ctx))
	active, err := s.Active(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, active)
	require.Equal(t, ids(e.Active()), ids(active))
	require.Equal(t, "2", active[0].Subject)
	st, err := s.Statuses(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, st)
}

// memQuarantines is a fixed quarantine list: the engine's input, not the store under test.
type memQuarantines []snapshot.Quarantine

func (q memQuarantines) Quarantined(context.Context) ([]snapshot.Quarantine, error) { return q, nil }

func ids(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}
