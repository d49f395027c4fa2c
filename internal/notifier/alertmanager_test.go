package notifier

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func firing(kind, labelName, labelValue string, at time.Time) detectors.Finding {
	return detectors.Finding{
		ID: kind + "{" + labelName + "=" + labelValue + "}", Kind: kind, Severity: detectors.SeverityCritical, Subject: labelValue,
		Labels:      map[string]string{"alertname": kind, "severity": "critical", labelName: labelValue},
		Summary:     "Queue " + labelValue + " is growing steadily",
		Description: "Mann–Kendall τ 0.93 over 24 five-minute medians.",
		Evidence:    map[string]float64{"tau": 0.93, "slope_per_hour": 1200},
		State:       detectors.StateFiring, ActiveAt: at.Add(-5 * time.Minute), FiredAt: at,
		RunbookURL:   "https://flagwarden.example/docs/runbook.md#" + kind,
		GeneratorURL: "http://flagwarden.example/?queue=" + labelValue,
	}
}

func TestAlertmanagerPagesResolvesAndSurvivesOutage(t *testing.T) {
	t.Parallel()
	hook := testenv.NewWebhook(t)
	am := testenv.StartAlertmanager(t, hook.URL())
	reg := prometheus.NewRegistry()
	n, err := New(Options{
		URLs: []string{"http://" + am.Addr()}, ResendInterval: time.Second, ResolvedRetention: 30 * time.Second,
		Timeout: 2 * time.Second, MaxBackoff: 200 * time.Millisecond, Registerer: reg,
	})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, n.Start(ctx))
	t.Cleanup(func() { _ = n.Stop(context.Background()) })

	// 1. A finding pages with its labels and annotations.
	growth := firing("backlog_growth", "queue", "celery", time.Now())
	n.Update(time.Now(), []detectors.Finding{growth})
	eventually(t, 15*time.Second, "the alert in Alertmanager's API", func() bool { return len(am.Alerts("FlagwardenBacklogGrowth")) == 1 })
	got := am.Alerts("FlagwardenBacklogGrowth")[0]
	// The alertname is the prefixed CamelCase one the Prometheus rules use; kind keeps
	// the finding's own name.
	require.Equal(t, map[string]string{"alertname": "FlagwardenBacklogGrowth", "kind": "backlog_growth",
		"severity": "critical", "queue": "celery"}, got.Labels)
	require.Equal(t, growth.Summary, got.Annotations["summary"])
	require.Equal(t, growth.Description, got.Annotations["description"])
	require.Equal(t, growth.RunbookURL, got.Annotations["runbook_url"])
	require.Contains(t, got.Annotations["evidence"], "tau=0.93")
	require.Equal(t, growth.GeneratorURL, got.GeneratorURL)
	require.Equal(t, "active", got.Status.State)
	require.True(t, got.EndsAt.After(time.Now()), "a firing alert's endsAt lies ahead")
	eventually(t, 15*time.Second, "the firing webhook", func() bool { _, ok := hook.Find("FlagwardenBacklogGrowth", "firing"); return ok })
	w, _ := hook.Find("FlagwardenBacklogGrowth", "firing")
	require.Equal(t, "celery", w.Labels["queue"])
	require.Equal(t, "critical", w.Labels["severity"])
	require.Equal(t, growth.RunbookURL, w.Annotations["runbook_url"])
	require.Equal(t, growth.GeneratorURL, w.GeneratorURL)

	// 2. It resolves.
	resolved := growth
	resolved.State, resolved.ResolvedAt = detectors.StateResolved, time.Now()
	n.Update(time.Now(), []detectors.Finding{resolved})
	eventually(t, 15*time.Second, "the resolved webhook", func() bool { _, ok := hook.Find("FlagwardenBacklogGrowth", "resolved"); return ok })

	// 3. An outage loses nothing: while Alertmanager is down a finding fires and another
	// is still firing; when it comes back (with no memory of alerts) it gets both.
	stall := firing("backlog_stalled", "queue", "feature_flags", time.Now())
	n.Update(time.Now(), []detectors.Finding{resolved, stall})
	eventually(t, 15*time.Second, "the stall alert before the outage", func() bool { return len(am.Alerts("FlagwardenBacklogStalled")) == 1 })
	am.Kill()
	oom := firing("worker_oom_kills", "namespace", "posthog", time.Now())
	for range 3 { // the detector pass keeps running during the outage
		n.Update(time.Now(), []detectors.Finding{resolved, stall, oom})
		time.Sleep(400 * time.Millisecond)
	}
	name := am.Addr()
	eventually(t, 15*time.Second, "failed sends to be counted", func() bool {
		return testutil.ToFloat64(n.metrics.errors.WithLabelValues(name)) > 0
	})
	require.Positive(t, testutil.ToFloat64(n.metrics.errors.WithLabelValues(name)))
	am.Start()
	eventually(t, 20*time.Second, "both firing alerts after the restart", func() bool {
		return len(am.Alerts("FlagwardenWorkerOOMKills")) == 1 && len(am.Alerts("FlagwardenBacklogStalled")) == 1
	})
	eventually(t, 15*time.Second, "the webhook for the alert that fired during the outage", func() bool {
		_, ok := hook.Find("FlagwardenWorkerOOMKills", "firing")
		return ok
	})
	require.Zero(t, testutil.ToFloat64(n.metrics.dropped))
	require.Positive(t, testutil.ToFloat64(n.metrics.sent.WithLabelValues(name)))
}
