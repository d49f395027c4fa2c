package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

var quiet = slog.New(slog.DiscardHandler)

// testConfig is a valid configuration against real services on loopback, with fast
// leader election so takeover is quick.
func testConfig(t *testing.T, stateURL, redisURL string) config.Config {
	t.Helper()
	env := []string{
		"FLAGWARDEN_FLAG_DATABASE_URL=" + stateURL,
		"FLAGWARDEN_BROKER_URL=" + redisURL,
		"FLAGWARDEN_CACHE_URL=" + redisURL,
		"FLAGWARDEN_HTTP_LISTEN=127.0.0.1:0",
		"FLAGWARDEN_LEADER_RETRY_INTERVAL=200ms",
		"FLAGWARDEN_SHUTDOWN_DRAIN_TIMEOUT=10s",
	}
	cfg, err := config.Parse(strings.NewReader(""), env)
	require.NoError(t, err)
	return cfg
}

func startApp(t *testing.T, cfg config.Config, replica string) *App {
	t.Helper()
	ctx := context.Background()
	a, err := New(ctx, Options{Config: cfg, Logger: quiet, Version: "test", ReplicaID: replica})
	require.NoError(t, err)
	require.NoError(t, a.Start(ctx))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = a.Stop(stopCtx)
	})
	return a
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHealthReadyAndMetrics(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Redis(t)
	a := startApp(t, testConfig(t, testenv.Postgres(t), redisURL), "r1")
	base := "http://" + a.Addr()

	code, body := get(t, base+"/-/healthy")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "OK\n", body)

	code, body = get(t, base+"/-/ready")
	require.Equal(t, http.StatusOK, code, body)

	require.Eventually(t, a.IsLeader, 10*time.Second, 50*time.Millisecond, "a lone replica leads")
	code, body = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, m := range []string{"process_resident_memory_bytes", "go_goroutines", "flagwarden_leader_is_leader 1", "flagwarden_series", `flagwarden_build_info{branch=`} {
		require.Contains(t, body, m)
	}
}

func TestReadyFailsWhenADependencyIsDown(t *testing.T) {
	t.Parallel()
	redisURL := testenv.Redis(t)
	cfg := testConfig(t, testenv.Postgres(t), redisURL)
	// The cache Redis points at a port where nothing listens.
	cfg.Cache.URL = config.URL("redis://127.0.0.1:" + strings.TrimPrefix(freeAddr(t), "127.0.0.1:") + "/0")
	a := startApp(t, cfg, "r1")
	code, body := get(t, "http://"+a.Addr()+"/-/ready")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, `"cache"`)
	require.NotContains(t, body, `"broker"`, "only the failing dependency is named")
}

func freeAddr(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
}

// TestLeaderTakeover runs two replicas against one state database: exactly one leads;
// when its lock connection is killed, the other takes over within seconds.
func TestLeaderTakeover(t *testing.T) {
	t.Parallel()
	stateURL := testenv.Postgres(t)
	redisURL := testenv.Redis(t)
	cfg := testConfig(t, stateURL, redisURL)
	a := startApp(t, cfg, "replica-a")
	b := startApp(t, cfg, "replica-b")

	require.Eventually(t, func() bool { return a.IsLeader() != b.IsLeader() }, 10*time.Second, 20*time.Millisecond,
		"exactly one replica leads")
	// Leadership is stable: it does not flap while both are healthy.
	first, other := a, b
	if b.IsLeader() {
		first, other = b, a
	}
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		require.True(t, first.IsLeader())
		require.False(t, other.IsLeader())
	}

	// Kill the leader's lock connection, as a network partition or a dead pod would.
	killAdvisoryHolders(t, stateURL)
	require.Eventually(t, other.IsLeader, 10*time.Second, 20*time.Millisecond, "the follower takes over")
	require.Eventually(t, func() bool { return !first.IsLeader() }, 10*time.Second, 20*time.Millisecond,
		"the old leader notices it lost the lock and stops its leader-only services")

	// The replicas table says who leads, as each replica's heartbeat last saw it.
	conn, err := pgx.Connect(context.Background(), stateURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.Eventually(t, func() bool {
		var leaders []string
		rows, err := conn.Query(context.Background(), `SELECT id FROM flagwarden_replicas WHERE is_leader ORDER BY id`)
		if err != nil {
			return false
		}
		leaders, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err == nil && len(leaders) == 1 && leaders[0] == other.replica
	}, 10*time.Second, 50*time.Millisecond, "the replicas table names the new leader")
}

func killAdvisoryHolders(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var killed int
	require.NoError(t, conn.QueryRow(ctx, `
		SELECT count(pg_terminate_backend(l.pid))::int FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&killed))
	require.Equal(t, 1, killed, "one connection holds the leader lock")
}

// TestServeExitsCleanlyOnSIGTERM runs the real binary and stops it the way Kubernetes does.
func TestServeExitsCleanlyOnSIGTERM(t *testing.T) {
	t.Parallel()
	stateURL := testenv.Postgres(t)
	redisURL := testenv.Redis(t)
	bin := filepath.Join(t.TempDir(), "flagwarden")
	build := exec.Command("go", "build", "-o", bin, "github.com/flagwarden/flagwarden/cmd/flagwarden")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--listen", addr)
	cmd.Env = append(os.Environ(),
		"FLAGWARDEN_FLAG_DATABASE_URL="+stateURL,
		"FLAGWARDEN_BROKER_URL="+redisURL,
		"FLAGWARDEN_CACHE_URL="+redisURL,
		"FLAGWARDEN_SHUTDOWN_DRAIN_TIMEOUT=5s",
	)
	var logs strings.Builder
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "serve becomes ready; logs:\n%s", &logs)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "serve exits 0 on SIGTERM; logs:\n%s", logs.String())
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("serve did not exit within the drain time; logs:\n%s", logs.String())
	}
	require.Contains(t, logs.String(), "shutting down")
}
