package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/detectors/pgstore"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/statedb"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// BenchmarkAPILatency measures request latency on loopback under a fixed request rate
// (an open-loop generator: requests are sent on schedule whether or not earlier ones
// answered, and latency counts from the scheduled time, so a stall shows up as latency
// instead of silently lowering the rate). The findings come from the real findings
// store on Postgres; the teams from a 10,000-team snapshot.
//
//	go test ./web -run '^$' -bench APILatency -benchtime 1x
//
// FLAGWARDEN_BENCH_RATE (requests/s, default 2000) and FLAGWARDEN_BENCH_SECONDS
// (default 5) change the load. Each endpoint runs once per benchmark invocation,
// whatever b.N is: the schedule, not b.N, sets the work.
func BenchmarkAPILatency(b *testing.B) {
	rate := envInt("FLAGWARDEN_BENCH_RATE", 2000)
	seconds := envInt("FLAGWARDEN_BENCH_SECONDS", 5)
	ctx := context.Background()

	pool, err := pgxpool.New(ctx, testenv.Postgres(b))
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	_, err = statedb.Migrate(ctx, pool)
	require.NoError(b, err)
	findings := pgstore.New(pool)
	var changes []detectors.Change
	for i := range 12 {
		f := outlierFinding(int64(1000+i), time.Now())
		if i%3 == 0 {
			f.Kind, f.ID, f.Severity = "backlog_growth", fmt.Sprintf("backlog_growth/q%d", i), detectors.SeverityWarning
		}
		changes = append(changes, detectors.Change{Finding: f})
	}
	require.NoError(b, findings.Apply(ctx, changes))

	bd := newBundle(b, func(o *APIOptions) { o.Findings = findings })
	teams := map[int64]snapshot.TeamSize{}
	for id := int64(1); id <= 10_000; id++ {
		teams[id] = snapshot.TeamSize{TeamID: id, Flags: id % 97, FlagsPayloadBytes: id * 131 % 1_000_003, DefinitionsPayloadBytes: id * 71}
	}
	bd.snaps.SetTeams(snapshot.Teams{At: time.Now(), Full: true, Teams: teams})
	srv := NewServer(Options{Listen: "127.0.0.1:0", ReadHeaderTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)}, bd.router)
	require.NoError(b, srv.Start(ctx))
	b.Cleanup(func() { _ = srv.Stop(ctx) })
	base := "http://" + srv.Addr()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute,
	}}
	b.Cleanup(client.CloseIdleConnections)

	type row struct {
		path                    string
		sent, failed            int
		p50, p90, p99, p999, mx time.Duration
		achieved                float64
	}
	var rows []row
	for _, path := range []string{"/api/v1/findings", "/api/v1/teams?limit=50"} {
		// Warm up connections and caches so that the first second does not measure dialing.
		for range 200 {
			_ = get(client, base+path)
		}
		lat, failed, elapsed := openLoop(client, base+path, rate, time.Duration(seconds)*time.Second)
		slices.Sort(lat)
		q := func(p float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[min(int(p*float64(len(lat))), len(lat)-1)]
		}
		r := row{path: path, sent: len(lat) + failed, failed: failed, p50: q(.5), p90: q(.9), p99: q(.99), p999: q(.999),
			achieved: float64(len(lat)+failed) / elapsed.Seconds()}
		if len(lat) > 0 {
			r.mx = lat[len(lat)-1]
		}
		rows = append(rows, r)
		b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms("+path+")")
	}
	b.StopTimer()
	fmt.Fprintf(os.Stdout, "\nAPI latency, open loop at %d req/s for %d s per endpoint, loopback, GOMAXPROCS=%d\n", rate, seconds, runtimeProcs())
	fmt.Fprintf(os.Stdout, "%-26s %8s %7s %9s %9s %9s %9s %9s %9s\n", "endpoint", "sent", "failed", "rate/s", "p50", "p90", "p99", "p99.9", "max")
	for _, r := range rows {
		fmt.Fprintf(os.Stdout, "%-26s %8d %7d %9.0f %9s %9s %9s %9s %9s\n", r.path, r.sent, r.failed, r.achieved,
			ms(r.p50), ms(r.p90), ms(r.p99), ms(r.p999), ms(r.mx))
	}
}

// openLoop sends GETs to url at rate per second for d, each on its own goroutine at
// its scheduled time (bounded to 4,096 outstanding; past that a request counts as
// failed rather than being queued, which would hide the overload).
func openLoop(client *http.Client, url string, rate int, d time.Duration) (lat []time.Duration, failed int, elapsed time.Duration) {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat = make([]time.Duration, 0, n)
	var mu sync.Mutex
	var fails atomic.Int64
	sem := make(chan struct{}, 4096)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case sem <- struct{}{}:
		default:
			fails.Add(1)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := get(client, url); err != nil {
				fails.Add(1)
				return
			}
			took := time.Since(at)
			mu.Lock()
			lat = append(lat, took)
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat, int(fails.Load()), time.Since(start)
}

func get(client *http.Client, url string) error {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func runtimeProcs() int { return goruntime.GOMAXPROCS(0) }
