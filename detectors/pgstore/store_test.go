package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/detectors/pgstore"
)

// Both stores must behave the same: the embedded demo's MemStore and the state
// database's Store.
func TestFindingStores(t *testing.T) {
	t.Parallel()
	for name, open := range map[string]func(t *testing.T) detectors.FindingStore{
		"postgres": func(t *testing.T) detectors.FindingStore { return pgstore.New(statePool(t)) },
		"memory":   func(*testing.T) detectors.FindingStore { return detectors.NewMemStore() },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkStoreSemantics(t, open(t))
		})
	}
}

func checkStoreSemantics(t *testing.T, s detectors.FindingStore) {
	ctx := context.Background()
	tr := detectors.NewTracker(detectors.Links{RunbookBase: "rb", ExternalURL: "https://x"}, time.Hour)
	obs := func(kind, queue string, sev detectors.Severity) detectors.Observation {
		return detectors.Observation{Kind: kind, Severity: sev, Subject: queue, Labels: map[string]string{"queue": queue},
			Summary: "s", Description: "d", Evidence: map[string]float64{"tau": 0.9}, For: time.Minute}
	}
	apply := func(at time.Time, o ...detectors.Observation) {
		t.Helper()
		require.NoError(t, s.Apply(ctx, tr.Update(at, o)))
	}
	a, b := obs("backlog_growth", "a", detectors.SeverityWarning), obs("backlog_stalled", "b", detectors.SeverityCritical)
	apply(t0, a, b)
	apply(t0.Add(time.Minute), a, b) // both fire
	active, err := s.Active(ctx)
	require.NoError(t, err)
	require.Len(t, active, 2)
	require.Equal(t, "backlog_stalled{queue=b}", active[0].ID, "critical first")
	require.Equal(t, detectors.StateFiring, active[0].State)
	require.Equal(t, t0, active[0].ActiveAt.UTC())
	require.Equal(t, t0.Add(time.Minute), active[0].FiredAt.UTC())
	require.Equal(t, map[string]float64{"tau": 0.9}, active[0].Evidence)
	require.Equal(t, "b", active[0].Labels["queue"])

	apply(t0.Add(2*time.Minute), a) // b resolves
	c := obs("backlog_growth", "c", detectors.SeverityWarning)
	apply(t0.Add(3*time.Minute), a, c) // c pending
	apply(t0.Add(4*time.Minute), a)    // c dropped before firing
	apply(t0.Add(5*time.Minute), a, b) // b comes back: a new occurrence
	active, err = s.Active(ctx)
	require.NoError(t, err)
	require.Len(t, active, 2)
	recent, err := s.Recent(ctx, 10)
	require.NoError(t, err)
	require.Len(t, recent, 3, "a, b twice; the dropped pending c is not history")
	require.Equal(t, "backlog_stalled{queue=b}", recent[0].ID, "newest first")
	require.Equal(t, detectors.StatePending, recent[0].State)
	// a and the first b began together; the later insert (b) comes first.
	require.Equal(t, "backlog_stalled{queue=b}", recent[1].ID)
	require.Equal(t, detectors.StateResolved, recent[1].State)
	require.Equal(t, t0.Add(2*time.Minute), recent[1].ResolvedAt.UTC())
	require.Equal(t, detectors.StateFiring, recent[2].State)
	limited, err := s.Recent(ctx, 1)
	require.NoError(t, err)
	require.Len(t, limited, 1)
	none, err := s.Recent(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, none)

	n, err := s.Prune(ctx, t0.Add(3*time.Minute))
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	require.NoError(t, s.SaveStatus(ctx, []detectors.DetectorStatus{{Detector: "backlog", Evaluated: 3, Insufficient: 1, Note: "insufficient data: …"}}))
	require.NoError(t, s.SaveStatus(ctx, []detectors.DetectorStatus{{Detector: "backlog", Evaluated: 4}}))
	st, err := s.Statuses(ctx)
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.Equal(t, 4, st[0].Evaluated)
}
