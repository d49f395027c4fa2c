package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/flagwarden once per test process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flagwarden-faults-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "flagwarden")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/flagwarden/flagwarden/cmd/flagwarden")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

const token = "faults-operate-token-0123456789"

// env is one deployment: a flag database that is also the state database (so that
// terminating its connections hits both), a broker and a cache Redis, Alertmanager
// with a webhook receiver, and the serve process.
type env struct {
	// t is the test or scenario reporting now; root owns the processes.
	t, root *testing.T
	dbURL   string
	pool    *pgxpool.Pool
	cache   *testenv.RedisServer
	broker  *testenv.RedisServer
	cdb     *redis.Client
	am      *testenv.Alertmanager
	hook    *testenv.Webhook
	dir     string
	cfg     string
	addr    string
	serve   *process
	// giant is the team whose build takes long enough to be killed mid-way.
	giant int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, root: t, dir: t.TempDir()}
	e.dbURL = testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, e.dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	e.pool = pool
	require.NoError(t, posthog.ApplySchema(ctx, pool))
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: 60, Seed: 14, FlagTeamShare: 0.5, MaxFlags: 400, GiantFlags: 60_000})
	require.NoError(t, err)
	e.giant = res.GiantTeamID
	require.Positive(t, e.giant)

	e.cache, e.broker = testenv.StartRedis(t), testenv.StartRedis(t)
	opt, err := redis.ParseURL(e.cache.URL())
	require.NoError(t, err)
	e.cdb = redis.NewClient(opt)
	t.Cleanup(func() { e.cdb.Close() })
	e.hook = testenv.NewWebhook(t)
	e.am = testenv.StartAlertmanager(t, e.hook.URL())
	e.addr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	e.cfg = filepath.Join(e.dir, "flagwarden.yaml")
	require.NoError(t, os.WriteFile(e.cfg, []byte(e.config()), 0o600))
	return e
}

// config is serve's configuration: every loop fast, so that the suite waits seconds
// rather than minutes for what serve does on its own.
func (e *env) config() string {
	return fmt.Sprintf(`flag_database:
  url: %[1]s
  max_conns: 8
state_database:
  url: %[1]s
  max_conns: 8
broker:
  url: %[2]s
cache:
  url: %[3]s
alertmanager:
  urls: [http://%[4]s]
  resend_interval: 1s
  timeout: 2s
http:
  listen: %[5]s
auth:
  open_reads: true
  tokens:
    - name: faults
      token: %[6]s
      role: operate
collectors:
  celery: {interval: 1s, timeout: 900ms}
  teams: {interval: 5s, timeout: 4s}
  pods: {interval: 1s, timeout: 900ms}
  caches: {interval: 500ms, timeout: 450ms}
detectors:
  interval: 500ms
  timeout: 450ms
  for: 1s
  stale_after: 30s
  collector_down_after: 1m
rebuild:
  enabled: true
  celery_consumer:
    enabled: true
    queue: %[7]s
  sweep_interval: 3s
  coalesce_delay: 50ms
  page_size: 200
leader:
  retry_interval: 200ms
log:
  level: info
shutdown:
  drain_timeout: 5s
`, e.dbURL, e.broker.URL(), e.cache.URL(), e.am.Addr(), e.addr, token, celeryQueue)
}

// process is one run of `flagwarden serve`; its log goes to a file kept with the
// test's output when the test fails.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// start runs serve and waits until it answers /-/ready.
func (e *env) start() {
	e.t.Helper()
	log := filepath.Join(e.dir, fmt.Sprintf("serve-%d.log", time.Now().UnixNano()))
	f, err := os.Create(log)
	require.NoError(e.t, err)
	cmd := exec.Command(binary(e.t), "serve", "--config", e.cfg)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	require.NoError(e.t, cmd.Start())
	p := &process{cmd: cmd, exited: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); f.Close(); close(p.exited) }()
	e.serve = p
	root := e.root
	root.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if root.Failed() {
			b, _ := os.ReadFile(log)
			root.Logf("serve log %s (last 4 KiB):\n%s", log, tail(b, 4096))
		}
	})
	e.eventually(60*time.Second, "serve did not become ready", func() bool {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(log)
			e.t.Fatalf("serve exited at start:\n%s", tail(b, 4096))
		default:
		}
		resp, err := http.Get("http://" + e.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (p *process) stop(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	<-p.exited
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (e *env) eventually(within time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api calls serve's API and decodes the JSON answer into out (if not nil); it returns
// the status code.
func (e *env) api(method, path string, body any, out any) int {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(e.t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+e.addr+path, r)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	require.NoError(e.t, err)
	if out != nil && resp.StatusCode < 300 {
		require.NoError(e.t, json.Unmarshal(b, out), "%s %s: %s", method, path, b)
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
		e.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// teamsNeedingCaches lists, from the flag database, the teams with flag data and the
// caches each needs (the /flags payload needs an active flag, the definitions any
// live flag).
func (e *env) teamsNeedingCaches() map[int64][]cachekeys.Kind {
	e.t.Helper()
	out := map[int64][]cachekeys.Kind{}
	rows, err := e.pool.Query(context.Background(), `SELECT team_id::bigint, (count(*) FILTER (WHERE active))::bigint, count(*)::bigint
		FROM posthog_featureflag WHERE NOT deleted GROUP BY team_id`)
	require.NoError(e.t, err)
	defer rows.Close()
	for rows.Next() {
		var id, active, live int64
		require.NoError(e.t, rows.Scan(&id, &active, &live))
		for _, k := range cachekeys.Kinds {
			if k.Needed(active, live) {
				out[id] = append(out[id], k)
			}
		}
	}
	require.NoError(e.t, rows.Err())
	return out
}

// missingCaches counts the needed caches that have no metadata in the cache Redis.
func (e *env) missingCaches(need map[int64][]cachekeys.Kind) int {
	ctx := context.Background()
	pipe := e.cdb.Pipeline()
	var cmds []*redis.IntCmd
	for id, kinds := range need {
		for _, k := range kinds {
			cmds = append(cmds, pipe.Exists(ctx, cachekeys.Layout{}.Meta(id, k)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return len(cmds)
	}
	n := 0
	for _, c := range cmds {
		if c.Val() == 0 {
			n++
		}
	}
	return n
}

// history is the team's build results, newest first.
func (e *env) history(team int64) []buildResult {
	var out struct {
		Rebuilds []buildResult `json:"rebuilds"`
	}
	if e.api(http.MethodGet, "/api/v1/teams/"+strconv.FormatInt(team, 10), nil, &out) != http.StatusOK {
		return nil
	}
	return out.Rebuilds
}

type buildResult struct {
	JobID      int64     `json:"job_id"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error"`
	Reason     string    `json:"reason"`
	Flags      int64     `json:"flags"`
	FinishedAt time.Time `json:"finished_at"`
}

type finding struct {
	Kind     string             `json:"kind"`
	Subject  string             `json:"subject"`
	State    string             `json:"state"`
	Summary  string             `json:"summary"`
	Labels   map[string]string  `json:"labels"`
	Evidence map[string]float64 `json:"evidence"`
}

// findings are the active and recent findings.
func (e *env) findings() []finding {
	var out struct {
		Active []finding `json:"active"`
		Recent []finding `json:"recent"`
	}
	if e.api(http.MethodGet, "/api/v1/findings?limit=500", nil, &out) != http.StatusOK {
		return nil
	}
	return append(out.Active, out.Recent...)
}
