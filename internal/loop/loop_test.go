package loop

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

func TestRunOnceRecordsHealth(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	fail := true
	l := New("celery", Timing{Interval: time.Second, Timeout: time.Second}, func(ctx context.Context) error {
		if fail {
			return errors.New("broker unreachable")
		}
		return nil
	}, quiet, m)
	require.Equal(t, 0.0, testutil.ToFloat64(m.up.WithLabelValues("celery")), "a loop that has not run is not up")

	require.Error(t, l.RunOnce(context.Background()))
	h := l.Health()
	require.False(t, h.Up)
	require.Equal(t, "broker unreachable", h.LastError)
	require.True(t, h.LastSuccess.IsZero())
	require.Equal(t, 1.0, testutil.ToFloat64(m.failures.WithLabelValues("celery")))

	fail = false
	require.NoError(t, l.RunOnce(context.Background()))
	h = l.Health()
	require.True(t, h.Up)
	require.Empty(t, h.LastError)
	require.False(t, h.LastSuccess.IsZero())
	require.Equal(t, int64(2), h.Passes)
	require.Equal(t, 1.0, testutil.ToFloat64(m.up.WithLabelValues("celery")))
}

func TestPassTimeoutAndPanicAreFailures(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	slow := New("slow", Timing{Interval: time.Second, Timeout: 20 * time.Millisecond}, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, quiet, m)
	require.ErrorIs(t, slow.RunOnce(context.Background()), context.DeadlineExceeded)

	boom := New("boom", Timing{Interval: time.Second, Timeout: time.Second}, func(ctx context.Context) error {
		var rows []int
		_ = rows[len(rows)] // an index bug in a pass must not take the process down
		return nil
	}, quiet, m)
	err := boom.RunOnce(context.Background())
	require.ErrorContains(t, err, "pass panicked")
	require.False(t, boom.Health().Up)
}

func TestLoopRunsCountsMissedAndStops(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	var passes atomic.Int64
	l := New("tick", Timing{Interval: 10 * time.Millisecond, Timeout: time.Second}, func(ctx context.Context) error {
		if passes.Add(1) == 2 {
			time.Sleep(55 * time.Millisecond) // overrun several ticks
		}
		return nil
	}, quiet, m)
	require.NoError(t, l.Start(context.Background()))
	require.Eventually(t, func() bool { return passes.Load() >= 4 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, l.Stop(context.Background()))
	require.NoError(t, l.Stop(context.Background()), "stop is idempotent")
	require.Positive(t, l.Health().Missed, "ticks during an overrunning pass are counted as missed")
}

func TestNewRejectsZeroInterval(t *testing.T) {
	require.Panics(t, func() {
		New("bad", Timing{}, func(context.Context) error { return nil }, quiet, NewMetrics(prometheus.NewRegistry()))
	})
}
