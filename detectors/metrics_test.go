package detectors

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// TestBacklogETAHasNoSentinel: a growing queue has an ETA series; a flat one has none
// at all (never -1, which would break min() and comparisons).
func TestBacklogETAHasNoSentinel(t *testing.T) {
	t.Parallel()
	ser := series.New(series.Options{MaxPoints: 10000}, nil)
	for i := range 480 { // four hours at 30 s
		at := t0.Add(time.Duration(i-479) * 30 * time.Second)
		ser.Append(series.Key(series.QueueDepth, "growing"), at, float64(1000+10*i))
		ser.Append(series.Key(series.QueueDepth, "flat"), at, 500)
	}
	e, err := NewEngine(EngineOptions{Series: ser, Snapshots: snapshot.NewStore(), Store: NewMemStore(),
		Registerer: prometheus.NewRegistry(), Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	require.NoError(t, e.RunOnce(context.Background()))
	eta := e.detectors[0].(*backlogDetector).eta
	require.Equal(t, 1, testutil.CollectAndCount(eta), "only the growing queue has an ETA")
	require.Positive(t, testutil.ToFloat64(eta.WithLabelValues("growing")))
}
