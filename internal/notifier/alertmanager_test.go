package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// webhookAlert is one alert in Alertmanager's webhook body (version 4).
type webhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	GeneratorURL string            `json:"generatorURL"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
}

type webhookMessage struct {
	Version string         `json:"version"`
	Status  string         `json:"status"`
	Alerts  []webhookAlert `json:"alerts"`
}

// receiver records every webhook body Alertmanager sends.
type receiver struct {
	mu       sync.Mutex
	messages []webhookMessage
	srv      *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m webhookMessage
		body, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("webhook body is not JSON: %v: %s", err, body)
		}
		r.mu.Lock()
		r.messages = append(r.messages, m)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// find returns the latest webhook alert with this alertname and status.
func (r *receiver) find(alertname, status string) (webhookAlert, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.messages) - 1; i >= 0; i-- {
		for _, a := range r.messages[i].Alerts {
			if a.Labels["alertname"] == alertname && a.Status == status {
				return a, true
			}
		}
	}
	return webhookAlert{}, false
}

// alertmanager is a real Alertmanager process on a fixed loopback port, so that it can
// be killed and started again on the same address.
type alertmanager struct {
	t      *testing.T
	bin    string
	dir    string
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
}

func startAlertmanager(t *testing.T, webhook string) *alertmanager {
	t.Helper()
	bin := testenv.Binary(t, "prometheus-alertmanager")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: test
  group_by: [alertname, queue, team, namespace]
  group_wait: 100ms
  group_interval: 200ms
  repeat_interval: 1h
receivers:
- name: test
  webhook_configs:
  - url: %q
    send_resolved: true
`, webhook)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o600))
	am := &alertmanager{t: t, bin: bin, dir: dir, port: testenv.FreePort(t)}
	am.start()
	t.Cleanup(am.kill)
	return am
}

func (am *alertmanager) addr() string { return "127.0.0.1:" + strconv.Itoa(am.port) }

func (am *alertmanager) start() {
	am.t.Helper()
	am.cmd = exec.Command(am.bin,
		"--config.file="+filepath.Join(am.dir, "am.yml"),
		"--storage.path="+filepath.Join(am.dir, "data"),
		"--web.listen-address="+am.addr(),
		"--cluster.listen-address=",
		"--log.level=warn")
	am.cmd.Stdout, am.cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(am.t, am.cmd.Start())
	am.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(am.cmd, am.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + am.addr() + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			am.t.Fatalf("alertmanager on %s not ready: %v", am.addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (am *alertmanager) kill() {
	if am.cmd == nil || am.cmd.Process == nil {
		return
	}
	_ = am.cmd.Process.Kill()
	<-am.exited
	am.cmd = nil
}

type gettableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	GeneratorURL string            `json:"generatorURL"`
	EndsAt       time.Time         `json:"endsAt"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

// alerts asks Alertmanager's API for the alerts with this alertname.
func (am *alertmanager) alerts(alertname string) []gettableAlert {
	q := url.Values{"filter": {fmt.Sprintf("alertname=%q", alertname)}}
	resp, err := http.Get("http://" + am.addr() + "/api/v2/alerts?" + q.Encode())
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		am.t.Errorf("decode alerts: %v", err)
	}
	return out
}

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
	hook := newReceiver(t)
	am := startAlertmanager(t, hook.srv.URL)
	reg := prometheus.NewRegistry()
	n, err := New(Options{
		URLs: []string{"http://" + am.addr()}, ResendInterval: time.Second, ResolvedRetention: 30 * time.Second,
		Timeout: 2 * time.Second, MaxBackoff: 200 * time.Millisecond, Registerer: reg,
	})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, n.Start(ctx))
	t.Cleanup(func() { _ = n.Stop(context.Background()) })

	// 1. A finding pages with its labels and annotations.
	growth := firing("backlog_growth", "queue", "celery", time.Now())
	n.Update(time.Now(), []detectors.Finding{growth})
	eventually(t, 15*time.Second, "the alert in Alertmanager's API", func() bool { return len(am.alerts("FlagwardenBacklogGrowth")) == 1 })
	got := am.alerts("FlagwardenBacklogGrowth")[0]
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
	eventually(t, 15*time.Second, "the firing webhook", func() bool { _, ok := hook.find("FlagwardenBacklogGrowth", "firing"); return ok })
	w, _ := hook.find("FlagwardenBacklogGrowth", "firing")
	require.Equal(t, "celery", w.Labels["queue"])
	require.Equal(t, "critical", w.Labels["severity"])
	require.Equal(t, growth.RunbookURL, w.Annotations["runbook_url"])
	require.Equal(t, growth.GeneratorURL, w.GeneratorURL)

	// 2. It resolves.
	resolved := growth
	resolved.State, resolved.ResolvedAt = detectors.StateResolved, time.Now()
	n.Update(time.Now(), []detectors.Finding{resolved})
	eventually(t, 15*time.Second, "the resolved webhook", func() bool { _, ok := hook.find("FlagwardenBacklogGrowth", "resolved"); return ok })

	// 3. An outage loses nothing: while Alertmanager is down a finding fires and another
	// is still firing; when it comes back (with no memory of alerts) it gets both.
	stall := firing("backlog_stalled", "queue", "feature_flags", time.Now())
	n.Update(time.Now(), []detectors.Finding{resolved, stall})
	eventually(t, 15*time.Second, "the stall alert before the outage", func() bool { return len(am.alerts("FlagwardenBacklogStalled")) == 1 })
	am.kill()
	oom := firing("worker_oom_kills", "namespace", "posthog", time.Now())
	for range 3 { // the detector pass keeps running during the outage
		n.Update(time.Now(), []detectors.Finding{resolved, stall, oom})
		time.Sleep(400 * time.Millisecond)
	}
	name := "127.0.0.1:" + strconv.Itoa(am.port)
	eventually(t, 15*time.Second, "failed sends to be counted", func() bool {
		return testutil.ToFloat64(n.metrics.errors.WithLabelValues(name)) > 0
	})
	require.Positive(t, testutil.ToFloat64(n.metrics.errors.WithLabelValues(name)))
	am.start()
	eventually(t, 20*time.Second, "both firing alerts after the restart", func() bool {
		return len(am.alerts("FlagwardenWorkerOOMKills")) == 1 && len(am.alerts("FlagwardenBacklogStalled")) == 1
	})
	eventually(t, 15*time.Second, "the webhook for the alert that fired during the outage", func() bool {
		_, ok := hook.find("FlagwardenWorkerOOMKills", "firing")
		return ok
	})
	require.Zero(t, testutil.ToFloat64(n.metrics.dropped))
	require.Positive(t, testutil.ToFloat64(n.metrics.sent.WithLabelValues(name)))
}
