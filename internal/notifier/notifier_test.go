package notifier

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
)

// fakeAM records POST bodies and headers; status decides the answer.
type fakeAM struct {
	mu      sync.Mutex
	status  int
	auth    []string
	batches [][]*models.PostableAlert
}

func (f *fakeAM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var batch []*models.PostableAlert
	_ = json.NewDecoder(r.Body).Decode(&batch)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	if r.URL.Path != "/prefix/api/v2/alerts" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
		return
	}
	f.batches = append(f.batches, batch)
}

func (f *fakeAM) count() (batches, alerts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.batches {
		alerts += len(b)
	}
	return len(f.batches), alerts
}

func TestAuthBatchesAndPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"bearer", Options{BearerToken: "tok-123"}, "Bearer tok-123"},
		{"basic", Options{Username: "u", Password: "p"}, "Basic dTpw"},
		{"none", Options{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			am := &fakeAM{}
			srv := httptest.NewServer(am)
			defer srv.Close()
			opts := tc.opts
			opts.URLs, opts.BatchSize, opts.Registerer = []string{srv.URL + "/prefix/"}, 2, prometheus.NewRegistry()
			n, err := New(opts)
			require.NoError(t, err)
			var fs []detectors.Finding
			for _, q := range []string{"a", "b", "c", "d", "e"} {
				fs = append(fs, firing("backlog_growth", "queue", q, time.Now()))
			}
			n.Update(time.Now(), fs)
			require.NoError(t, n.Start(context.Background()))
			defer n.Stop(context.Background())
			eventually(t, 10*time.Second, "five alerts", func() bool { _, a := am.count(); return a == 5 })
			b, _ := am.count()
			require.GreaterOrEqual(t, b, 3, "batches of at most 2")
			am.mu.Lock()
			for _, h := range am.auth {
				require.Equal(t, tc.want, h)
			}
			for _, batch := range am.batches {
				require.LessOrEqual(t, len(batch), 2)
			}
			am.mu.Unlock()
		})
	}
}

func TestQueueDropsOldestAndCountsRejections(t *testing.T) {
	t.Parallel()
	am := &fakeAM{status: http.StatusBadRequest}
	srv := httptest.NewServer(am)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	n, err := New(Options{URLs: []string{srv.URL + "/prefix"}, QueueCapacity: 3, BatchSize: 10, Registerer: reg})
	require.NoError(t, err)
	var fs []detectors.Finding
	for _, q := range []string{"a", "b", "c", "d", "e"} {
		fs = append(fs, firing("backlog_growth", "queue", q, time.Now()))
	}
	n.Update(time.Now(), fs) // not started: everything waits in the queue
	require.Equal(t, 3, n.targets[0].len())
	require.Equal(t, 2.0, testutil.ToFloat64(n.metrics.dropped))
	// The newest three are kept.
	batch := n.targets[0].take(10)
	var queues []string
	for _, a := range batch {
		queues = append(queues, a.Labels["queue"])
	}
	require.Equal(t, []string{"c", "d", "e"}, queues)
	n.targets[0].enqueue(batch...)

	// Alertmanager rejects them as invalid: resending cannot help, so they are dropped
	// and counted, not retried for ever.
	require.NoError(t, n.Start(context.Background()))
	defer n.Stop(context.Background())
	eventually(t, 10*time.Second, "the rejected batch to be dropped", func() bool {
		return testutil.ToFloat64(n.metrics.dropped) == 5
	})
	require.Equal(t, 0, n.targets[0].len())
	require.Equal(t, 1.0, testutil.ToFloat64(n.metrics.errors.WithLabelValues(n.targets[0].name)))
}

func TestResendAndSeverityChange(t *testing.T) {
	t.Parallel()
	n, err := New(Options{URLs: []string{"http://127.0.0.1:9"}, ResendInterval: time.Minute, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	t0 := time.Date(2026, 2, 2, 10, 0, 0, 0, time.UTC)
	f := firing("backlog_growth", "queue", "celery", t0)
	f.Severity, f.Labels["severity"] = detectors.SeverityWarning, "warning"
	n.Update(t0, []detectors.Finding{f})
	got := n.targets[0].take(10)
	require.Len(t, got, 1)
	require.Equal(t, time.Time(got[0].EndsAt), t0.Add(4*time.Minute), "endsAt is four resend intervals ahead")

	n.Update(t0.Add(30*time.Second), []detectors.Finding{f})
	require.Zero(t, n.targets[0].len(), "not due for a resend yet")
	n.Update(t0.Add(61*time.Second), []detectors.Finding{f})
	require.Equal(t, 1, n.targets[0].len(), "resent after the resend interval")
	n.targets[0].take(10)

	// Severity moves to critical: the critical alert is sent and the warning one resolved.
	crit := f
	crit.Labels = map[string]string{"alertname": "backlog_growth", "severity": "critical", "queue": "celery"}
	crit.Severity = detectors.SeverityCritical
	now := t0.Add(90 * time.Second)
	n.Update(now, []detectors.Finding{crit})
	sent := n.targets[0].take(10)
	require.Len(t, sent, 2)
	bySev := map[string]*models.PostableAlert{}
	for _, a := range sent {
		bySev[a.Labels["severity"]] = a
	}
	require.Equal(t, now, time.Time(bySev["warning"].EndsAt), "old label set resolved now")
	require.True(t, time.Time(bySev["critical"].EndsAt).After(now))
}
