package series

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

func TestRingKeepsNewestMaxPoints(t *testing.T) {
	t.Parallel()
	s := New(Options{MaxPoints: 5, MaxSeries: 10}, nil)
	for i := range 12 {
		require.True(t, s.Append("q", t0.Add(time.Duration(i)*time.Minute), float64(i)))
	}
	pts := s.Range("q", time.Time{}, time.Time{})
	require.Len(t, pts, 5)
	for i, p := range pts {
		require.Equal(t, float64(7+i), p.V, "oldest points are overwritten, order kept")
	}
	last, ok := s.Last("q")
	require.True(t, ok)
	require.Equal(t, 11.0, last.V)
}

func TestRetentionTrimsOldPoints(t *testing.T) {
	t.Parallel()
	s := New(Options{Retention: 10 * time.Minute, MaxPoints: 100, MaxSeries: 10}, nil)
	for i := range 30 {
		s.Append("q", t0.Add(time.Duration(i)*time.Minute), float64(i))
	}
	pts := s.Range("q", time.Time{}, time.Time{})
	require.Equal(t, 19.0, pts[0].V, "points older than retention before the newest are gone")
	require.Len(t, pts, 11)
	// and the ring still accepts appends after trimming
	s.Append("q", t0.Add(40*time.Minute), 40)
	pts = s.Range("q", t0.Add(35*time.Minute), time.Time{})
	require.Equal(t, []Point{{T: t0.Add(40 * time.Minute), V: 40}}, pts)
}

func TestOutOfOrderAndSeriesCap(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := New(Options{MaxPoints: 10, MaxSeries: 2}, reg)
	require.True(t, s.Append("a", t0.Add(time.Minute), 1))
	require.False(t, s.Append("a", t0, 0), "a point older than the newest is dropped")
	require.True(t, s.Append("b", t0, 1))
	require.False(t, s.Append("c", t0, 1), "a third series exceeds max_series")
	require.Equal(t, 1.0, testutil.ToFloat64(s.dropped))
	n, pts, bytes := s.Stats()
	require.Equal(t, 2, n)
	require.Equal(t, 2, pts)
	require.Positive(t, bytes)
	require.Equal(t, []string{"a", "b"}, s.Keys(""))
	s.Delete("a")
	require.Equal(t, []string{"b"}, s.Keys(""))
}

func TestRangeBounds(t *testing.T) {
	t.Parallel()
	s := New(Options{MaxPoints: 100, MaxSeries: 1}, nil)
	for i := range 10 {
		s.Append(Key(QueueDepth, "celery"), t0.Add(time.Duration(i)*time.Second), float64(i))
	}
	pts := s.Range("queue_depth/celery", t0.Add(3*time.Second), t0.Add(5*time.Second))
	require.Equal(t, []float64{3, 4, 5}, values(pts))
	require.Nil(t, s.Range("missing", time.Time{}, time.Time{}))
}

func values(ps []Point) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = p.V
	}
	return out
}
