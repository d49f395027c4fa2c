package pods

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func fixture(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	require.NoError(t, err)
	var p corev1.Pod
	require.NoError(t, json.Unmarshal(b, &p))
	return &p
}

var gi = int64(1 << 30)

func TestClassifyFixtures(t *testing.T) {
	t.Parallel()
	// Half an hour after the crash-looping pod's last OOM kill.
	now := time.Date(2026, 2, 5, 14, 32, 9, 0, time.UTC)
	cases := []struct {
		fixture string
		prev    Seen
		recent  time.Duration
		want    snapshot.Pod
	}{
		{"running-ready", Seen{}, time.Minute, snapshot.Pod{Phase: "Running", Ready: true, MemoryLimit: 8*gi + 256<<20}},
		{"pending-creating", Seen{}, time.Minute, snapshot.Pod{Phase: "Pending", MemoryLimit: 8 * gi}},
		{
			"crashloop-oom", Seen{Known: true, Restarts: 5, OOMAt: time.Date(2026, 2, 5, 13, 57, 0, 0, time.UTC)}, time.Minute,
			snapshot.Pod{Phase: "Running", Restarts: 6, RestartDelta: 1, Waiting: ReasonCrashLoop, LastTermination: ReasonOOMKilled,
				LastExitCode: ExitSIGKILL, LastTerminatedAt: time.Date(2026, 2, 5, 14, 2, 9, 0, time.UTC), NewOOMKill: true, MemoryLimit: 8 * gi},
		},
		{
			// The same kill seen again: not new.
			"crashloop-oom", Seen{Known: true, Restarts: 6, OOMAt: time.Date(2026, 2, 5, 14, 2, 9, 0, time.UTC)}, time.Minute,
			snapshot.Pod{Phase: "Running", Restarts: 6, Waiting: ReasonCrashLoop, LastTermination: ReasonOOMKilled,
				LastExitCode: ExitSIGKILL, LastTerminatedAt: time.Date(2026, 2, 5, 14, 2, 9, 0, time.UTC), MemoryLimit: 8 * gi},
		},
		{
			// First sighting, kill 30 minutes old: history, not news.
			"crashloop-oom", Seen{}, time.Minute,
			snapshot.Pod{Phase: "Running", Restarts: 6, Waiting: ReasonCrashLoop, LastTermination: ReasonOOMKilled,
				LastExitCode: ExitSIGKILL, LastTerminatedAt: time.Date(2026, 2, 5, 14, 2, 9, 0, time.UTC), MemoryLimit: 8 * gi},
		},
		{
			// First sighting with a wide window: news.
			"crashloop-oom", Seen{}, time.Hour,
			snapshot.Pod{Phase: "Running", Restarts: 6, Waiting: ReasonCrashLoop, LastTermination: ReasonOOMKilled,
				LastExitCode: ExitSIGKILL, LastTerminatedAt: time.Date(2026, 2, 5, 14, 2, 9, 0, time.UTC), NewOOMKill: true, MemoryLimit: 8 * gi},
		},
		{
			// Recovered after an OOM: ready again, the kill counted once.
			"oom-restarted", Seen{Known: true, Restarts: 0}, time.Minute,
			snapshot.Pod{Phase: "Running", Ready: true, Restarts: 1, RestartDelta: 1, LastTermination: ReasonOOMKilled, LastExitCode: ExitSIGKILL,
				LastTerminatedAt: time.Date(2026, 2, 5, 11, 40, 3, 0, time.UTC), NewOOMKill: true, MemoryLimit: 8 * gi},
		},
		{
			// Crash-looping for another reason; the completed init container is no termination.
			"error-exit", Seen{Known: true, Restarts: 2}, time.Minute,
			snapshot.Pod{Phase: "Running", Restarts: 2, Waiting: ReasonCrashLoop, LastTermination: "Error", LastExitCode: 1,
				LastTerminatedAt: time.Date(2026, 2, 5, 10, 1, 4, 0, time.UTC), MemoryLimit: 6 * gi},
		},
		{
			// The restart count went down (node state lost): no negative restarts.
			"error-exit", Seen{Known: true, Restarts: 9}, time.Minute,
			snapshot.Pod{Phase: "Running", Restarts: 2, Waiting: ReasonCrashLoop, LastTermination: "Error", LastExitCode: 1,
				LastTerminatedAt: time.Date(2026, 2, 5, 10, 1, 4, 0, time.UTC), MemoryLimit: 6 * gi},
		},
	}
	for _, tc := range cases {
		p := fixture(t, tc.fixture)
		tc.want.Namespace, tc.want.Name = p.Namespace, p.Name
		got, next := Classify(p, tc.prev, now, tc.recent)
		got.LastTerminatedAt = got.LastTerminatedAt.UTC()
		require.Equal(t, tc.want, got, "%s with %+v", tc.fixture, tc.prev)
		require.True(t, next.Known)
		require.Equal(t, got.Restarts, next.Restarts)
		if got.LastTermination == ReasonOOMKilled {
			require.True(t, next.OOMAt.Equal(got.LastTerminatedAt), "the counted kill is remembered")
		}
	}
}

// staticLister serves fixed pods or an error.
type staticLister struct {
	mu   sync.Mutex
	pods []*corev1.Pod
	err  error
}

func (s *staticLister) Pods(context.Context) ([]*corev1.Pod, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pods, s.err
}
func (s *staticLister) Source() string { return "simulated" }

type fixedMemory map[string]int64

func (m fixedMemory) PodMemory(context.Context) (map[string]int64, error) { return m, nil }

func TestCollectorFleetSeriesAndHealth(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 2, 5, 14, 2, 30, 0, time.UTC)
	ready, crash := fixture(t, "running-ready"), fixture(t, "crashloop-oom")
	lister := &staticLister{pods: []*corev1.Pod{ready, crash}}
	reg := prometheus.NewRegistry()
	snaps := snapshot.NewStore()
	ss := series.New(series.Options{Retention: time.Hour, MaxPoints: 10, MaxSeries: 100}, nil)
	c, err := New(lister, Options{Subject: "posthog", Clock: clock.Func(func() time.Time { return now }),
		Memory: fixedMemory{ready.Name: 6 * gi}}, snaps, ss, reg, discardLogger())
	require.NoError(t, err)
	l := loop.New("pods", loop.Timing{Interval: time.Minute, Timeout: time.Second}, c.RunOnce, discardLogger(), loop.NewMetrics(reg))

	require.NoError(t, l.RunOnce(context.Background()))
	require.Equal(t, 2.0, testutil.ToFloat64(c.metrics.pods.WithLabelValues("posthog")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.ready.WithLabelValues("posthog")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.crashLooping.WithLabelValues("posthog")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.oomKills.WithLabelValues("posthog", crash.Name)), "a kill 21s old on a new pod is news")
	require.Zero(t, testutil.ToFloat64(c.metrics.oomKills.WithLabelValues("posthog", ready.Name)))
	require.InDelta(t, 6.0/(8+0.25), testutil.ToFloat64(c.metrics.memoryRatio.WithLabelValues("posthog", ready.Name)), 1e-9)
	// Usage unknown for the crash-looping pod: no ratio rather than a made-up 0.
	require.Equal(t, 1, testutil.CollectAndCount(c.metrics.memoryRatio), "only the pod with known usage has a ratio")
	require.Equal(t, "simulated", snaps.Pods().Source)

	// The same state again: nothing new.
	now = now.Add(15 * time.Second)
	require.NoError(t, l.RunOnce(context.Background()))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.oomKills.WithLabelValues("posthog", crash.Name)))
	p, ok := ss.Last(series.Key(series.OOMKills, "posthog"))
	require.True(t, ok)
	require.Zero(t, p.V)

	// Another OOM kill and restart on the crash-looping pod.
	again := crash.DeepCopy()
	again.Status.ContainerStatuses[0].RestartCount = 7
	again.Status.ContainerStatuses[0].LastTerminationState.Terminated.FinishedAt = metav1.NewTime(now.Add(5 * time.Second))
	lister.mu.Lock()
	lister.pods = []*corev1.Pod{ready, again}
	lister.mu.Unlock()
	now = now.Add(15 * time.Second)
	require.NoError(t, l.RunOnce(context.Background()))
	require.Equal(t, 2.0, testutil.ToFloat64(c.metrics.oomKills.WithLabelValues("posthog", crash.Name)))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.restarts.WithLabelValues("posthog", crash.Name)))
	p, _ = ss.Last(series.Key(series.Restarts, "posthog"))
	require.Equal(t, 1.0, p.V)

	// The crash-looping pod is replaced: its per-pod series go with it, so the
	// cardinality stays bounded by the pods that exist.
	lister.mu.Lock()
	lister.pods = []*corev1.Pod{ready}
	lister.mu.Unlock()
	now = now.Add(15 * time.Second)
	require.NoError(t, l.RunOnce(context.Background()))
	require.Equal(t, 1, testutil.CollectAndCount(c.metrics.oomKills), "only the live pod keeps a series")
	require.Equal(t, 1, testutil.CollectAndCount(c.metrics.restarts))
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.pods.WithLabelValues("posthog")))

	// The cluster is unreachable: the loop is down, not "no pods".
	lister.mu.Lock()
	lister.err = errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	lister.mu.Unlock()
	require.Error(t, l.RunOnce(context.Background()))
	require.False(t, l.Health().Up)
	require.Len(t, snaps.Pods().Pods, 1, "the last good look stays")
}

// TestInformerWiring runs the real informer against the fake clientset: pods matching
// the selector are listed, others are not, and an update arrives through the watch.
func TestInformerWiring(t *testing.T) {
	// Not parallel: the goroutine check must see only this test's goroutines.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	crash := fixture(t, "crashloop-oom")
	other := fixture(t, "running-ready")
	other.Name, other.UID, other.Labels = "web-1", "web-1-uid", map[string]string{"app": "web"}
	client := fake.NewClientset(fixture(t, "running-ready"), other)
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("pods", func(a clienttesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		once.Do(func() { close(watching) })
		return true, w, err
	})

	inf, err := NewInformer(client, "posthog", "app=celery-worker", 0)
	require.NoError(t, err)
	_, err = inf.Pods(context.Background())
	require.ErrorIs(t, err, ErrNotSynced)
	require.NoError(t, inf.Start(context.Background()))
	defer func() { require.NoError(t, inf.Stop(context.Background())) }()

	snaps := snapshot.NewStore()
	c, err := New(inf, Options{Recent: time.Hour * 24 * 365 * 10}, snaps, nil, prometheus.NewRegistry(), discardLogger())
	require.NoError(t, err)
	waitFor(t, func() bool { return c.RunOnce(context.Background()) == nil })
	require.Len(t, snaps.Pods().Pods, 1, "only the worker matches the selector")
	require.Equal(t, "kubernetes", snaps.Pods().Source)
	<-watching

	_, err = client.CoreV1().Pods("posthog").Create(context.Background(), crash, metav1.CreateOptions{})
	require.NoError(t, err)
	waitFor(t, func() bool {
		require.NoError(t, c.RunOnce(context.Background()))
		return len(snaps.Pods().Pods) == 2
	})
	require.Equal(t, 1, Summarize(snaps.Pods()).CrashLooping)
	require.Equal(t, 1.0, testutil.ToFloat64(c.metrics.oomKills.WithLabelValues("posthog", crash.Name)))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "condition not met within 10s")
		time.Sleep(10 * time.Millisecond)
	}
}
