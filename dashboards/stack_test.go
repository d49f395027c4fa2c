package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// This file starts the real things the panel test runs against: flagwarden in-process
// with every component its configuration enables, on fresh Postgres databases and
// private Redis servers, fed by a real Celery producer and a Kubernetes API serving
// worker pods; a real Alertmanager to page; and a real Prometheus scraping it.

// workerNamespace is where the simulated Celery workers run.
const workerNamespace = "posthog"

// startAlertmanager runs the Debian Alertmanager on a free loopback port, without HA
// gossip, with a receiver that drops everything; it returns its URL.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin := testenv.Binary(t, "prometheus-alertmanager")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"), 0o600))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	startProcess(t, bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	testenv.WaitTCP(t, addr, 20*time.Second)
	return "http://" + addr
}

// startProcess starts a long-running binary whose output goes to the test log, and
// stops it when the test ends.
func startProcess(t *testing.T, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out := newTestWriter(t, filepath.Base(bin)+": ")
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start(), "start %s", bin)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// testWriter forwards output to t.Log until the test's cleanups end, after which t.Log
// would panic.
type testWriter struct {
	mu     sync.Mutex
	t      *testing.T
	prefix string
	done   bool
}

func newTestWriter(t *testing.T, prefix string) *testWriter {
	w := &testWriter{t: t, prefix: prefix}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// seedFlagDatabase fills a fresh database with the PostHog schema and a fleet with one
// giant team (the outlier) and a few teams with bad rows.
func seedFlagDatabase(t *testing.T, ctx context.Context, dbURL string) seed.Result {
	t.Helper()
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: 40, Seed: 6, GiantFlags: 3000, BadData: true})
	require.NoError(t, err, "seed the flag database")
	return res
}

// celeryProducer is a real Celery 5 client that puts update_team_flags_cache tasks on
// the broker with priorities, exactly as PostHog's web process does.
const celeryProducer = `
import sys
from celery import Celery
broker, queue, first, last, per_team = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
app = Celery("posthog", broker=broker)
app.conf.broker_transport_options = {"priority_steps": [0, 3, 6, 9], "sep": "\x06\x16", "queue_order_strategy": "priority"}
names = ["posthog.tasks.feature_flags.update_team_flags_cache", "posthog.tasks.feature_flags.update_team_service_flags_cache"]
n = 0
for team in range(first, last + 1):
    for i in range(per_team):
        app.send_task(names[i % 2], args=[team], queue=queue, priority=(3 * (i % 4)))
        n += 1
print(n)
`

// produceTasks sends per_team tasks for each team in [first, last] to queue.
func produceTasks(t *testing.T, brokerURL, queue string, first, last int64, perTeam int) {
	t.Helper()
	py := testenv.Python(t, "celery", "redis")
	out, err := exec.Command(py, "-c", celeryProducer, brokerURL, queue,
		strconv.FormatInt(first, 10), strconv.FormatInt(last, 10), strconv.Itoa(perTeam)).CombinedOutput()
	require.NoError(t, err, "celery producer: %s", out)
}

// flagwarden is one in-process flagwarden and what it was started with.
type flagwarden struct {
	addr string
	cfg  config.Config
}

// startFlagwarden starts flagwarden with every component enabled and short intervals,
// so that each loop has run, each detector has judged, and each counter has moved
// within seconds.
func startFlagwarden(t *testing.T, ctx context.Context) flagwarden {
	t.Helper()
	stateURL := testenv.Postgres(t)
	flagURL := testenv.Postgres(t)
	brokerURL := testenv.Redis(t)
	cacheURL := testenv.Redis(t)
	seed := seedFlagDatabase(t, ctx, flagURL)
	// A backlog to measure, and tasks for flagwarden's own consumer to build from.
	produceTasks(t, brokerURL, "feature_flags", seed.FirstTeamID, seed.FirstTeamID+9, 6)
	produceTasks(t, brokerURL, "flagwarden", seed.FirstTeamID, seed.FirstTeamID+4, 2)
	kubeconfig := startKubeAPI(t, workerNamespace, workerPods(workerNamespace))
	amURL := startAlertmanager(t)
	// A second Alertmanager that is down, as one member of an HA pair can be: alerts
	// still reach the first, and the failed POSTs to this one are counted.
	downAM := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))

	yaml := fmt.Sprintf(`
flag_database: {url: %q}
state_database: {url: %q}
broker:
  url: %q
  queues: [feature_flags, flagwarden]
cache: {url: %q}
kubernetes:
  enabled: true
  namespace: %s
  label_selector: app=celery-worker
  kubeconfig: %q
alertmanager:
  urls: [%q, %q]
  resend_interval: 1s
http:
  listen: 127.0.0.1:0
auth:
  open_reads: true
collectors:
  celery: {interval: 1s, timeout: 1s, jitter: 0}
  teams: {interval: 1s, timeout: 1s, jitter: 0, full_interval: 2s}
  pods: {interval: 1s, timeout: 1s, jitter: 0}
  caches: {interval: 1s, timeout: 1s, jitter: 0}
detectors:
  interval: 1s
  timeout: 1s
  for: 1s
  stale_after: 1s
  outlier_min_bytes: 1KiB
  collector_down_after: 1m
rebuild:
  enabled: true
  sweep_interval: 1s
  celery_consumer:
    enabled: true
    queue: flagwarden
verify: {enabled: true, interval: 1s, timeout: 1s}
leader:
  retry_interval: 200ms
log: {level: warn}
shutdown: {drain_timeout: 10s}
`, flagURL, stateURL, brokerURL, strings.Replace(cacheURL, "/0", "/1", 1), workerNamespace, kubeconfig, amURL, downAM)
	cfg, err := config.Parse(strings.NewReader(yaml), nil)
	require.NoError(t, err, "test configuration")

	logger := slog.New(slog.NewTextHandler(newTestWriter(t, "flagwarden: "), &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.New(ctx, app.Options{Config: cfg, Logger: logger, Version: "test", ReplicaID: "dashboards-test"})
	require.NoError(t, err, "app.New")
	require.NoError(t, a.Start(ctx), "app.Start")
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := a.Stop(stopCtx); err != nil {
			t.Errorf("stop flagwarden: %v", err)
		}
	})
	// A few API reads, so that the API's own metrics have series.
	for _, path := range []string{"/api/v1/findings", "/api/v1/teams", "/api/v1/no-such-route"} {
		resp, err := http.Get("http://" + a.Addr() + path)
		require.NoError(t, err)
		resp.Body.Close()
	}
	return flagwarden{addr: a.Addr(), cfg: cfg}
}

// prometheus is a running Prometheus server's HTTP API.
type prometheus struct {
	url    string
	client *http.Client
}

// startPrometheus runs the Debian Prometheus on a free loopback port with a fresh TSDB,
// scraping target every second and evaluating ruleFile.
func startPrometheus(t *testing.T, target, ruleFile string) *prometheus {
	t.Helper()
	bin := testenv.Binary(t, "prometheus")
	dir := t.TempDir()
	abs, err := filepath.Abs(ruleFile)
	require.NoError(t, err)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: flagwarden
    static_configs:
      - targets: [%q]
        # As Thanos or Mimir would show it: the dashboards' cluster variable lists it.
        labels: {cluster: test}
`, abs, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	startProcess(t, bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	testenv.WaitTCP(t, addr, 30*time.Second)
	p := &prometheus{url: "http://" + addr, client: &http.Client{Timeout: 10 * time.Second}}
	waitFor(t, 30*time.Second, "Prometheus ready", func() error {
		resp, err := p.client.Get(p.url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

// apiResponse is the envelope of every Prometheus HTTP API answer.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

func (p *prometheus) get(ctx context.Context, path string, params url.Values) (apiResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path+"?"+params.Encode(), nil)
	if err != nil {
		return apiResponse{}, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return apiResponse{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiResponse{}, err
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return apiResponse{}, fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	return r, nil
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// queryResult is an instant query's outcome: a parse or evaluation error, or samples.
type queryResult struct {
	errType, err string
	samples      []sample
}

func (p *prometheus) query(ctx context.Context, expr string) (queryResult, error) {
	r, err := p.get(ctx, "/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return queryResult{}, err
	}
	if r.Status != "success" {
		return queryResult{errType: r.ErrorType, err: r.Error}, nil
	}
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil {
		return queryResult{}, err
	}
	switch data.ResultType {
	case "vector":
		var s []sample
		if err := json.Unmarshal(data.Result, &s); err != nil {
			return queryResult{}, err
		}
		return queryResult{samples: s}, nil
	case "scalar":
		return queryResult{samples: []sample{{}}}, nil
	default:
		return queryResult{errType: "unexpected", err: "result type " + data.ResultType + " cannot be graphed"}, nil
	}
}

// metricNames lists every metric name Prometheus holds.
func (p *prometheus) metricNames(ctx context.Context) (map[string]bool, error) {
	r, err := p.get(ctx, "/api/v1/label/__name__/values", url.Values{})
	if err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	var names []string
	if err := json.Unmarshal(r.Data, &names); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// ruleHealth is one loaded rule's state.
type ruleHealth struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	Query     string `json:"query"`
}

func (p *prometheus) rules(ctx context.Context) ([]ruleHealth, error) {
	r, err := p.get(ctx, "/api/v1/rules", url.Values{})
	if err != nil {
		return nil, err
	}
	var data struct {
		Groups []struct {
			Name  string       `json:"name"`
			Rules []ruleHealth `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil {
		return nil, err
	}
	var out []ruleHealth
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// waitFor polls check until it returns nil or within passes, failing the test with the
// last error.
func waitFor(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
