package promql

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// target serves what cAdvisor and celery-exporter would: per-pod working sets and a
// WorkerLostError counter.
func target(t *testing.T, workingSet map[string]float64, workerLost float64) string {
	reg := prometheus.NewRegistry()
	ws := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "container_memory_working_set_bytes"}, []string{"pod", "container"})
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "celery_task_failed_total"}, []string{"exception"})
	reg.MustRegister(ws, failed)
	for pod, v := range workingSet {
		ws.WithLabelValues(pod, "celery").Set(v)
	}
	failed.WithLabelValues("WorkerLostError").Add(workerLost)
	failed.WithLabelValues("ValueError").Add(1)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return u.Host
}

// startPrometheus runs the Debian prometheus binary on a free loopback port scraping
// target every second.
func startPrometheus(t *testing.T, targetAddr string) string {
	bin := testenv.Binary(t, "prometheus")
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: workers\n  static_configs:\n  - targets: [%q]\n", targetAddr)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644))
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	testenv.WaitTCP(t, addr, 30*time.Second)
	return "http://" + addr
}

func TestQueriesAgainstRealPrometheus(t *testing.T) {
	t.Parallel()
	ws := map[string]float64{"worker-a": 7.5e9, "worker-b": 2e9}
	promURL := startPrometheus(t, target(t, ws, 3))
	reg := prometheus.NewRegistry()
	ss := series.New(series.Options{Retention: time.Hour, MaxPoints: 100, MaxSeries: 100}, nil)
	c, err := New(Options{
		URL: promURL,
		Queries: []Query{
			{Name: "worker_memory_max", Expr: `max(container_memory_working_set_bytes{container="celery"})`},
			{Name: "worker_lost_errors", Expr: `sum(celery_task_failed_total{exception="WorkerLostError"})`},
			{Name: "absent", Expr: `celery_task_failed_total{exception="NoSuchError"}`},
		},
		PodMemoryQuery: `max by (pod) (container_memory_working_set_bytes{container="celery"})`,
	}, ss, reg, discardLogger())
	require.NoError(t, err)
	l := loop.New("promql", loop.Timing{Interval: time.Minute, Timeout: 10 * time.Second}, c.RunOnce, discardLogger(), loop.NewMetrics(reg))

	// Poll until Prometheus has scraped the target.
	deadline := time.Now().Add(45 * time.Second)
	for {
		err := l.RunOnce(context.Background())
		if err == nil && c.Results()["worker_lost_errors"].Samples > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "no data from prometheus: %v %+v", err, c.Results())
		time.Sleep(250 * time.Millisecond)
	}
	res := c.Results()
	require.Equal(t, 7.5e9, res["worker_memory_max"].Value)
	require.Equal(t, 3.0, res["worker_lost_errors"].Value)
	require.Zero(t, res["absent"].Samples)
	require.True(t, math.IsNaN(res["absent"].Value), "no data is not zero")
	require.Equal(t, 3.0, testutil.ToFloat64(c.metrics.value.WithLabelValues("worker_lost_errors")))
	p, ok := ss.Last(series.Key(series.PromQL, "worker_memory_max"))
	require.True(t, ok)
	require.Equal(t, 7.5e9, p.V)
	_, ok = ss.Last(series.Key(series.PromQL, "absent"))
	require.False(t, ok)

	mem, err := c.PodMemory(context.Background())
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"worker-a": 7_500_000_000, "worker-b": 2_000_000_000}, mem)
}

// TestBadQueryAndDownPrometheusShowInHealth: a query Prometheus rejects, and a
// Prometheus that is gone, each fail the pass and are counted per query.
func TestBadQueryAndDownPrometheusShowInHealth(t *testing.T) {
	t.Parallel()
	promURL := startPrometheus(t, target(t, map[string]float64{"w": 1}, 0))
	reg := prometheus.NewRegistry()
	c, err := New(Options{URL: promURL, Queries: []Query{
		{Name: "broken", Expr: `sum(rate(`},
		{Name: "fine", Expr: `vector(42)`},
	}}, nil, reg, discardLogger())
	require.NoError(t, err)
	l := loop.New("promql", loop.Timing{Interval: time.Minute, Timeout: 10 * time.Second}, c.RunOnce, discardLogger(), loop.NewMetrics(reg))
	deadline := time.Now().Add(30 * time.Second)
	for c.Results()["fine"].Samples == 0 {
		require.Error(t, l.RunOnce(context.Background()))
		require.True(t, time.Now().Before(deadline))
		time.Sleep(100 * time.Millisecond)
	}
	require.False(t, l.Health().Up)
	require.Contains(t, l.Health().LastError, "query broken")
	require.Equal(t, 42.0, c.Results()["fine"].Value, "one bad query does not stop the others")
	require.Positive(t, testutil.ToFloat64(c.metrics.errors.WithLabelValues("broken")))

	down, err := New(Options{URL: "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), Queries: []Query{{Name: "q", Expr: "up"}}, Timeout: time.Second},
		nil, prometheus.NewRegistry(), discardLogger())
	require.NoError(t, err)
	require.Error(t, down.RunOnce(context.Background()))
	_, err = down.PodMemory(context.Background())
	require.NoError(t, err, "no pod memory query configured: nothing to read")
}

func TestOptionsRejectDuplicateNames(t *testing.T) {
	t.Parallel()
	_, err := New(Options{URL: "http://127.0.0.1:1", Queries: []Query{{"a", "up"}, {"a", "up"}}}, nil, prometheus.NewRegistry(), discardLogger())
	require.Error(t, err)
	_, err = New(Options{}, nil, prometheus.NewRegistry(), discardLogger())
	require.Error(t, err)
}
