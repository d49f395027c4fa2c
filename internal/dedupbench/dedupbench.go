// Package dedupbench measures how a burst of duplicate rebuild requests drains: how many
// builds it costs, how long until every request is built, and the process's peak RSS.
// The burst reaches the engine either in process (Engine.Request from many goroutines)
// or through the real intake path: real Celery task messages on a real Redis broker,
// taken by the Celery consumer.
package dedupbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/procstat"
	"github.com/flagwarden/flagwarden/internal/statedb"
	"github.com/flagwarden/flagwarden/rebuild"
)

// Options describe the burst.
type Options struct {
	// DSN is the Postgres holding the seeded flag data and the engine's jobs.
	DSN string
	// Requests over Teams distinct teams.
	Requests, Teams int
	// CoalesceDelay is rebuild.coalesce_delay (0: the engine's default).
	CoalesceDelay time.Duration
	// Python runs the Celery producer; default /usr/bin/python3 (Debian's, with
	// python3-celery).
	Python string
	// RedisServer is the redis-server binary for the private broker; default from PATH.
	RedisServer string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Result is one measured burst; the JSON keys are the benchmark's contract.
type Result struct {
	Intake   string `json:"intake"`
	Requests int    `json:"requests"`
	Teams    int    `json:"teams"`
	Builds   int64  `json:"builds"`
	// ProduceSeconds is how long the producer took to put the burst on the broker
	// (celery only; the drain is timed from when the consumer starts).
	ProduceSeconds float64 `json:"produce_seconds,omitempty"`
	// IntakeSeconds is until every request was taken (celery: every message acked).
	IntakeSeconds float64 `json:"intake_seconds"`
	// DrainSeconds is until the last build finished.
	DrainSeconds  float64          `json:"drain_seconds"`
	PeakRSSBytes  int64            `json:"peak_rss_bytes"`
	RequestErrors int64            `json:"request_errors"`
	DeadLettered  int64            `json:"dead_lettered"`
	Outcomes      map[string]int64 `json:"outcomes"`
}

// Run measures the burst in process and through Celery, in that order.
func Run(ctx context.Context, o Options) ([]Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	o.Python = cmpOr(o.Python, "/usr/bin/python3")
	pool, err := pgxpool.New(ctx, o.DSN)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := statedb.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	if err := rebuild.MigratePostgres(ctx, pool); err != nil {
		return nil, err
	}
	var out []Result
	for _, intake := range []string{"in-process", "celery"} {
		fmt.Fprintf(o.Log, "%s: seeding %d teams\n", intake, o.Teams)
		r, err := runOne(ctx, pool, o, intake)
		if err != nil {
			return out, fmt.Errorf("%s burst: %w", intake, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// engineRun is one engine on freshly seeded teams.
type engineRun struct {
	e          *rebuild.Engine
	reg        *prometheus.Registry
	first, end int64 // team ids [first, first+teams)
}

func newEngineRun(ctx context.Context, pool *pgxpool.Pool, o Options, cache *redis.Client) (*engineRun, error) {
	seeded, err := seed.Fleet(ctx, pool, seed.Options{Teams: o.Teams, FlagTeamShare: 1, MaxFlags: 200, Seed: 116})
	if err != nil {
		return nil, err
	}
	src := rebuild.NewPGSource(pool, nil)
	reg := prometheus.NewRegistry()
	e, err := rebuild.NewPostgres(pool, rebuild.Options{Source: src, Sizes: src,
		Publisher:         rebuild.NewPublisher(cache, rebuild.PublisherOptions{}),
		FetchPollInterval: 100 * time.Millisecond, CoalesceDelay: o.CoalesceDelay, Registerer: reg})
	if err != nil {
		return nil, err
	}
	return &engineRun{e: e, reg: reg, first: seeded.FirstTeamID, end: seeded.FirstTeamID + int64(o.Teams)}, nil
}

func runOne(ctx context.Context, pool *pgxpool.Pool, o Options, intake string) (Result, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return Result{}, err
	}
	defer mr.Close()
	cache := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer cache.Close()
	run, err := newEngineRun(ctx, pool, o, cache)
	if err != nil {
		return Result{}, err
	}
	res := Result{Intake: intake, Requests: o.Requests, Teams: o.Teams}
	var produce func(ctx context.Context) error
	var take func(ctx context.Context) error
	switch intake {
	case "in-process":
		take = func(ctx context.Context) error {
			res.RequestErrors = Burst(ctx, run.e, run.first, o.Requests, o.Teams, nil)
			return nil
		}
	case "celery":
		broker, stop, err := startBroker(o)
		if err != nil {
			return Result{}, err
		}
		defer stop()
		rdb := redis.NewClient(&redis.Options{Addr: broker})
		defer rdb.Close()
		produce = func(ctx context.Context) error { return produceCelery(ctx, o, broker, run.first) }
		take = func(ctx context.Context) error { return consume(ctx, rdb, run, o, &res) }
	}
	if produce != nil {
		fmt.Fprintf(o.Log, "%s: producing %d tasks with Celery\n", intake, o.Requests)
		start := time.Now()
		if err := produce(ctx); err != nil {
			return Result{}, err
		}
		res.ProduceSeconds = time.Since(start).Seconds()
	}
	runtimeGC()
	procstat.ResetPeakRSS()
	if err := run.e.Start(ctx); err != nil {
		return Result{}, err
	}
	defer func() { _ = run.e.Stop(context.WithoutCancel(ctx)) }()
	fmt.Fprintf(o.Log, "%s: draining\n", intake)
	start := time.Now()
	if err := take(ctx); err != nil {
		return Result{}, err
	}
	res.IntakeSeconds = time.Since(start).Seconds()
	if err := waitIdle(ctx, run.e); err != nil {
		return Result{}, err
	}
	res.DrainSeconds = time.Since(start).Seconds()
	res.PeakRSSBytes = procstat.PeakRSS()
	res.Builds = int64(sumCounter(run.reg, "flagwarden_rebuild_builds_total", nil))
	res.Outcomes = byLabel(run.reg, "flagwarden_rebuild_requests_total", "outcome")
	return res, nil
}

// Burst fires requests for teams [first, first+teams) round-robin at the engine from
// 16 goroutines, as an API or NOTIFY intake under load would, and returns how many
// failed. sent, if not nil, counts the requests handed out (for progress).
func Burst(ctx context.Context, e *rebuild.Engine, first int64, requests, teams int, sent *atomic.Int64) int64 {
	var next, errs atomic.Int64
	if sent == nil {
		sent = new(atomic.Int64)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(requests) {
					return
				}
				sent.Add(1)
				if _, err := e.Request(ctx, first+i%int64(teams), "bench"); err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return errs.Load()
}

// producerScript sends argv[3] tasks, alternating PostHog's two cache tasks, for teams
// argv[4]+k*argv[6]+argv[5] (this producer's share), through Celery's own send_task.
const producerScript = `
import sys
from celery import Celery
url, queue, n, first, part, parts, teams = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
app = Celery(broker=url)
names = ['posthog.tasks.feature_flags.update_team_flags_cache', 'posthog.tasks.feature_flags.update_team_service_flags_cache']
with app.producer_or_acquire() as p:
    for i in range(part, n, parts):
        app.send_task(names[i % 2], args=[first + i % teams], queue=queue, producer=p)
`

// produceCelery puts the burst on the broker with real Celery, in two processes (one
// per core).
func produceCelery(ctx context.Context, o Options, broker string, first int64) error {
	const parts = 2
	errs := make(chan error, parts)
	for part := range parts {
		go func() {
			cmd := exec.CommandContext(ctx, o.Python, "-c", producerScript, "redis://"+broker+"/0", queue,
				strconv.Itoa(o.Requests), strconv.FormatInt(first, 10), strconv.Itoa(part), strconv.Itoa(parts), strconv.Itoa(o.Teams))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("celery producer: %w: %s", err, out)
				return
			}
			errs <- nil
		}()
	}
	var err error
	for range parts {
		err = errors.Join(err, <-errs)
	}
	return err
}

const queue = "flagwarden"

// consume runs the Celery consumer until every message is acked.
func consume(ctx context.Context, rdb *redis.Client, run *engineRun, o Options, res *Result) error {
	c, err := rebuild.NewCeleryConsumer(rdb, run.e, rebuild.CeleryOptions{
		Queue: queue, Tasks: []string{"posthog.tasks.feature_flags.update_team_flags_cache", "posthog.tasks.feature_flags.update_team_service_flags_cache"},
		Registerer: run.reg,
	})
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = c.Stop(context.WithoutCancel(ctx)) }()
	lists := []string{queue, queue + "\x06\x163", queue + "\x06\x166", queue + "\x06\x169"}
	for {
		pipe := rdb.Pipeline()
		var lens []*redis.IntCmd
		for _, l := range lists {
			lens = append(lens, pipe.LLen(ctx, l))
		}
		unacked := pipe.HLen(ctx, "unacked")
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		left := unacked.Val()
		for _, l := range lens {
			left += l.Val()
		}
		if left == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.DeadLettered = int64(sumCounter(run.reg, "flagwarden_rebuild_celery_dead_letters_total", nil))
	res.RequestErrors = int64(sumCounter(run.reg, "flagwarden_rebuild_requests_total", map[string]string{"outcome": "error"}))
	return nil
}

// startBroker runs a private redis-server on a free loopback port.
func startBroker(o Options) (string, func(), error) {
	bin := o.RedisServer
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return "", nil, fmt.Errorf("the celery intake needs redis-server for its broker: %w", err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "flagwarden-bench-broker")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.RemoveAll(dir) }
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server did not start on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitIdle(ctx context.Context, e *rebuild.Engine) error {
	for {
		st, err := e.Status(ctx)
		if err != nil {
			return err
		}
		busy := 0
		for _, l := range st.Lanes {
			busy += l.Running + l.Waiting
		}
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sumCounter(reg *prometheus.Registry, name string, match map[string]string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for k, v := range match {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == k && l.GetValue() == v)
				}
				if !found {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func byLabel(reg *prometheus.Registry, name, label string) map[string]int64 {
	out := map[string]int64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += int64(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}

// Write prints the results as a table, or as JSON lines with asJSON.
func Write(w io.Writer, rs []Result, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range rs {
			_ = enc.Encode(r)
		}
		return
	}
	fmt.Fprintf(w, "%-10s %9s %6s %7s %9s %9s %9s %10s %6s\n", "intake", "requests", "teams", "builds", "produce", "intake", "drain", "peak RSS", "dead")
	for _, r := range rs {
		produce := "-"
		if r.ProduceSeconds > 0 {
			produce = fmt.Sprintf("%.1fs", r.ProduceSeconds)
		}
		fmt.Fprintf(w, "%-10s %9d %6d %7d %9s %8.1fs %8.1fs %7.0f MB %6d\n", r.Intake, r.Requests, r.Teams, r.Builds,
			produce, r.IntakeSeconds, r.DrainSeconds, float64(r.PeakRSSBytes)/(1<<20), r.DeadLettered)
	}
}

// runtimeGC returns the previous run's memory to the OS, so each run's peak RSS is
// its own.
func runtimeGC() { debug.FreeOSMemory() }
