package web

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
)

// TestQueuesShowTheDetectorsJudgment runs the real detector engine over the fixture's
// queues into the in-memory findings store, and asks the API: each queue's ETA and
// verdict are the ones the backlog detector computed (and exported as its metric),
// not a second fit of the chart's window.
func TestQueuesShowTheDetectorsJudgment(t *testing.T) {
	t.Parallel()
	store := detectors.NewMemStore()
	b := newBundle(t, func(o *APIOptions) { o.Findings = store })
	reg := prometheus.NewRegistry()
	eng, err := detectors.NewEngine(detectors.EngineOptions{
		Series: b.series, Snapshots: b.snaps, Store: store, Registerer: reg,
		Now: func() time.Time { return fixtureNow },
	})
	require.NoError(t, err)
	require.NoError(t, eng.RunOnce(context.Background()))

	var want map[string]detectors.BacklogStatus
	for _, st := range eng.Statuses() {
		if st.Detector == detectors.BacklogDetector {
			want = map[string]detectors.BacklogStatus{}
			for _, q := range st.Queues {
				want[q.Queue] = q
			}
		}
	}
	require.Contains(t, want, "feature_flags")
	require.Greater(t, want["feature_flags"].ETASeconds, 0.0, "the fixture's queue grows toward the limit")

	var got struct {
		JudgedAt time.Time `json:"judged_at"`
		Queues   []struct {
			Name               string   `json:"name"`
			Trend              *Trend   `json:"trend"`
			DetectorETASeconds *float64 `json:"detector_eta_seconds"`
			Growth             *struct {
				Verdict  string    `json:"verdict"`
				JudgedAt time.Time `json:"judged_at"`
				detectors.BacklogStatus
			} `json:"growth"`
		} `json:"queues"`
	}
	r := b.do(t, "GET", "/api/v1/queues", readToken, "")
	require.Equal(t, 200, r.Code)
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.True(t, got.JudgedAt.Equal(fixtureNow), "judged_at is the detector pass")
	require.Len(t, got.Queues, 2)
	for _, q := range got.Queues {
		w, ok := want[q.Name]
		require.True(t, ok, q.Name)
		require.NotNil(t, q.Growth, q.Name)
		require.Equal(t, w, q.Growth.BacklogStatus, q.Name)
		require.Equal(t, growthVerdict(w), q.Growth.Verdict, q.Name)
		if w.ETASeconds < 0 {
			require.Nil(t, q.DetectorETASeconds, q.Name)
			continue
		}
		require.NotNil(t, q.DetectorETASeconds, q.Name)
		require.Equal(t, w.ETASeconds, *q.DetectorETASeconds, q.Name)
		// The metric that pages carries the same number.
		require.Equal(t, w.ETASeconds, backlogETAMetric(t, reg, q.Name), q.Name)
	}
}

// backlogETAMetric reads flagwarden_backlog_eta_seconds{queue} from reg.
func backlogETAMetric(t *testing.T, reg *prometheus.Registry, queue string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "flagwarden_backlog_eta_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "queue" && l.GetValue() == queue {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	require.Failf(t, "no ETA metric", "queue %s", queue)
	return 0
}
