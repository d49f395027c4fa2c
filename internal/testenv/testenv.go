// Package testenv gives integration tests the real services they talk to: a fresh
// Postgres database per test, a private redis-server per test, and the Debian binaries
// (Alertmanager, Prometheus, promtool, Celery, Chromium). Where a service is missing a
// test skips, except under CI=true, where it fails: CI must never pass by skipping.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgresURL is the admin connection used to create per-test databases.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// InCI reports whether missing services must fail rather than skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing fails the test under CI=true and skips it elsewhere.
func Missing(t testing.TB, what string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required under CI=true but unavailable: %v", what, err)
	}
	t.Skipf("%s unavailable (set CI=true to make this a failure): %v", what, err)
}

// PostgresAdminURL is $TEST_POSTGRES_URL or the loopback default.
func PostgresAdminURL() string {
	if u := os.Getenv("TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// Postgres creates an empty database for this test and returns its URL; the database is
// dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := PostgresAdminURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		Missing(t, "PostgreSQL", err)
	}
	defer conn.Close(context.Background())
	name := "fwtest_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", admin, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Redis starts a private redis-server on a free loopback port for this test and returns
// its URL (redis://127.0.0.1:PORT/0). It is killed when the test ends.
func Redis(t testing.TB) string {
	t.Helper()
	return StartRedis(t).URL()
}

// RedisServer is a redis-server of the test's own, without persistence, that the
// test can kill and start again on the same port (empty, as a restarted cache Redis
// without persistence comes back).
type RedisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
}

// StartRedis starts a redis-server on a free loopback port; it is killed when the test
// ends.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server", err)
	}
	r := &RedisServer{t: t, bin: bin, port: FreePort(t), dir: t.TempDir()}
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// URL is the server's redis:// URL, database 0.
func (r *RedisServer) URL() string { return "redis://" + r.Addr() + "/0" }

// Addr is host:port.
func (r *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Start starts the server (again) and waits until it accepts connections.
func (r *RedisServer) Start() {
	r.t.Helper()
	cmd := exec.Command(r.bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		Missing(r.t, "redis-server", err)
	}
	r.cmd = cmd
	WaitTCP(r.t, r.Addr(), 10*time.Second)
}

// Kill stops the server with SIGKILL: everything it held is lost. Idempotent.
func (r *RedisServer) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitTCP polls addr until it accepts a connection or the deadline passes.
func WaitTCP(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept connections within %s: %v", addr, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Binary returns the path of a Debian-packaged binary (prometheus-alertmanager,
// promtool, prometheus, chromium), or fails/skips when it is not installed.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, fmt.Errorf("%w (scripts/test.sh installs it)", err))
	}
	return p
}

// Python returns Debian's /usr/bin/python3 after checking that it imports the given
// modules (celery, redis); the python3 first on PATH may lack Debian's modules.
func Python(t testing.TB, modules ...string) string {
	t.Helper()
	const py = "/usr/bin/python3"
	for _, m := range modules {
		if out, err := exec.Command(py, "-c", "import "+m).CombinedOutput(); err != nil {
			Missing(t, "python module "+m, fmt.Errorf("%w: %s", err, out))
		}
	}
	return py
}

// OutputDir returns a folder for artefacts (screenshots) under $TEST_OUTPUT_DIR if set,
// else the test's temp dir.
func OutputDir(t testing.TB) string {
	t.Helper()
	if base := os.Getenv("TEST_OUTPUT_DIR"); base != "" {
		d := filepath.Join(base, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("create output dir: %v", err)
		}
		return d
	}
	return t.TempDir()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PromtoolCheckMetrics lints a /metrics exposition with `promtool check metrics` and
// returns what it reports: empty when the metrics follow Prometheus' conventions.
func PromtoolCheckMetrics(t testing.TB, exposition []byte) string {
	t.Helper()
	cmd := exec.Command(Binary(t, "promtool"), "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	report := strings.TrimSpace(string(out))
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run promtool check metrics: %v", err)
	}
	if err != nil && report == "" {
		report = err.Error()
	}
	return report
}

// TerminateBackends ends every other connection to the database at url, as a failover
// or an operator's pg_terminate_backend does, and returns how many it ended.
func TerminateBackends(t testing.TB, url string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to terminate backends: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
		t.Fatalf("terminate backends: %v", err)
	}
	return n
}
