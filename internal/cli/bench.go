package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/dustin/go-humanize"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/dedupbench"
	"github.com/flagwarden/flagwarden/internal/heapwatch"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/procstat"
	"github.com/flagwarden/flagwarden/internal/statedb"
	"github.com/flagwarden/flagwarden/internal/units"
	"github.com/flagwarden/flagwarden/internal/writebehind"
	"github.com/flagwarden/flagwarden/rebuild"
)

func newBenchCmd(env Env) *cobra.Command {
	cmd := groupCmd("bench rebuild|dedup [flags]", "measure rebuild memory and throughput, or request dedup",
		"Measure on a real Postgres (and Redis): a build's memory and throughput against a naive\nbuild and COPY (bench rebuild), or how many builds a burst of duplicate requests\ncosts (bench dedup). Progress shows on stderr; the results go to stdout.")
	cmd.AddCommand(newBenchRebuildCmd(env), newBenchDedupCmd(env))
	return cmd
}

// benchRow is one measured build; the JSON keys are the benchmark's contract.
type benchRow struct {
	Mode          string  `json:"mode"`
	Flags         int     `json:"flags"`
	PayloadBytes  int64   `json:"payload_bytes"`
	Seconds       float64 `json:"seconds"`
	PeakHeapBytes int64   `json:"peak_heap_bytes"`
	PeakRSSBytes  int64   `json:"peak_rss_bytes"`
	// StoredBytes is what the cache would hold: the payload after PostHog's pickle and
	// zstd with --layout posthog, else the payload itself.
	StoredBytes int64  `json:"stored_bytes"`
	Note        string `json:"note,omitempty"`
	// Runs and RunSeconds, with --repeat above 1: how often the mode was measured and
	// each run's time; Seconds is then the fastest run, the peaks the highest.
	Runs       int       `json:"runs,omitempty"`
	RunSeconds []float64 `json:"run_seconds,omitempty"`
	// CopyRatio is Seconds over the copy row's of the same size, for the other modes.
	CopyRatio float64 `json:"copy_ratio,omitempty"`
	// PeakLiveHeapBytes is the highest live heap the collector found during the run:
	// what the build held, where PeakHeapBytes adds the garbage not yet collected.
	PeakLiveHeapBytes int64 `json:"peak_live_heap_bytes"`
	// ClientCPUSeconds is the CPU time this process spent on the run (the database's
	// own is not in it); FirstPassSeconds is the build's first pass, for the modes
	// that have one. With --repeat both are the fastest run's.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	FirstPassSeconds float64 `json:"first_pass_seconds,omitempty"`
}

// fold adds another run of the same mode: the fastest time (with that run's CPU and
// first pass), the highest peaks, the first error.
func (r *benchRow) fold(o benchRow) {
	if r.Runs == 0 {
		*r = o
		r.Runs, r.RunSeconds = 1, []float64{o.Seconds}
		return
	}
	r.Runs++
	r.RunSeconds = append(r.RunSeconds, o.Seconds)
	if o.Seconds < r.Seconds {
		r.Seconds, r.ClientCPUSeconds, r.FirstPassSeconds = o.Seconds, o.ClientCPUSeconds, o.FirstPassSeconds
	}
	r.PeakHeapBytes = max(r.PeakHeapBytes, o.PeakHeapBytes)
	r.PeakLiveHeapBytes = max(r.PeakLiveHeapBytes, o.PeakLiveHeapBytes)
	r.PeakRSSBytes = max(r.PeakRSSBytes, o.PeakRSSBytes)
	if r.Note == "" {
		r.Note = o.Note
	}
}

// benchConfig is the configuration a benchmark runs with, and the Postgres it uses:
// url when given (with the defaults), else the configuration's flag database.
func benchConfig(env Env, cfgPath, url string) (config.Config, string, error) {
	if url != "" {
		return config.Default(), url, nil
	}
	cfg, err := loadConfig(cfgPath, env, config.FlagDatabaseServer)
	if err != nil {
		return config.Config{}, "", err
	}
	return cfg, cfg.FlagDatabase.URL.Value(), nil
}

// benchRebuildFlags are bench rebuild's flags.
type benchRebuildFlags struct {
	cfgPath, url, sizes, cpuProfile, redisURL, layoutName *string
	naiveMax, repeat                                      *int
	compress                                              *bool
	out                                                   *output
}

func newBenchRebuildCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rebuild [--config FILE | --url URL] [--flags 1000,10000,100000,1000000] [--naive-max N] [-o table|json|yaml]",
		Short: "a build's peak heap, peak RSS and throughput by team size, against COPY and a naive build",
		Long: `a build's peak heap, peak RSS and throughput by team size, against COPY and a naive build

Modes: copy (COPY of the rows a build reads), streaming (a cold build: a new builder,
the whole first pass), warm (the same builder's next build of the team, predicting from
the streaming build's index, as a service's builds do), naive (everything in memory,
up to --naive-max) and, with --redis, publish (a cold build through the whole publish
path) and shared (a new builder predicting from the team's last build stored in Redis,
as another replica or a restarted process does; seeded by one untimed build).`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	f := benchRebuildFlags{
		cfgPath:    configFlag(fs, env),
		url:        fs.String("url", "", "flag database `URL` to seed bench teams into (default flag_database.url)"),
		sizes:      fs.String("flags", "1000,10000,100000,1000000", "team sizes in flags, comma separated"),
		naiveMax:   fs.Int("naive-max", 200000, "largest team the naive build is run for (it holds everything in memory)"),
		repeat:     fs.Int("repeat", 1, "measure every mode `N` times, the modes of a size taking turns, and report the fastest run (peak heap and RSS: the highest)"),
		out:        outputFlags(cmd, fs),
		cpuProfile: fs.String("cpuprofile", "", "write a CPU profile of the streaming build (of the largest size) to `FILE`"),
		redisURL:   fs.String("redis", "", "also build into this Redis `URL` (the full publish path: chunked writes, ETag, rename), as mode publish"),
		layoutName: fs.String("layout", "flagwarden", "cache layout to encode for: flagwarden (JSON as is) or posthog (pickled, zstd-compressed, as PostHog's readers take it)"),
		compress:   fs.Bool("compress", true, "with --layout posthog, zstd-compress as cache.compress does"),
	}
	_ = cmd.RegisterFlagCompletionFunc("layout", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"flagwarden", "posthog"}, cobra.ShellCompDirectiveNoFileComp
	})
	cmd.RunE = runBody(func(ctx context.Context, _ []string) int { return benchRebuild(ctx, env, f) })
	return cmd
}

func benchRebuild(ctx context.Context, env Env, f benchRebuildFlags) int {
	cfgPath, url, sizes, naiveMax, cpuProfile, redisURL, layoutName, compress := f.cfgPath, f.url, f.sizes, f.naiveMax, f.cpuProfile, f.redisURL, f.layoutName, f.compress
	format, err := f.out.Format()
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden bench: %v\n", err)
		return 2
	}
	if *layoutName != "flagwarden" && *layoutName != "posthog" {
		fmt.Fprintf(env.Stderr, "flagwarden bench: --layout must be flagwarden or posthog, got %q\n", *layoutName)
		return 2
	}
	postHogLayout := *layoutName == "posthog"
	cfg, dsn, err := benchConfig(env, *cfgPath, *url)
	if err != nil {
		printConfigError(env.Stderr, err)
		return 1
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden bench: %v\n", err)
		return 1
	}
	defer pool.Close()
	var prof *os.File
	if *cpuProfile != "" {
		if prof, err = os.Create(*cpuProfile); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden bench: %v\n", err)
			return 1
		}
		defer prof.Close()
	}
	src := app.NewFlagSource(pool)
	var pub *rebuild.Publisher
	var shared rebuild.PredictionStore
	if *redisURL != "" {
		opt, err := redis.ParseURL(*redisURL)
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden bench: --redis: %v\n", err)
			return 2
		}
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		cfg.Cache.Layout, cfg.Cache.Compress = *layoutName, *compress
		pub = app.NewPublisher(cfg, rdb, nil, nil)
		shared = rebuild.NewRedisPredictions(rdb, app.CacheLayout(cfg), time.Hour)
	}
	if *f.repeat < 1 {
		fmt.Fprintf(env.Stderr, "flagwarden bench: --repeat must be at least 1, got %d\n", *f.repeat)
		return 2
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(env.Stderr, "flagwarden bench: bad --flags value %q\n", s)
			return 2
		}
		ns = append(ns, n)
	}
	modes := 4 // copy, streaming, warm, naive
	if pub != nil {
		modes += 2 // publish, shared
	}
	p := env.newProgress("bench rebuild", "builds", int64(modes*len(ns)**f.repeat))
	defer p.Finish()
	// Progress is drawn between measurements only, never during one. (The closure's
	// body calls the package's measure: its own name is in scope only after it.)
	measure := func(mode string, flags int, fn func() (measured, error)) benchRow {
		p.Describe(fmt.Sprintf("%s, %s flags", mode, humanize.Comma(int64(flags))))
		row := measure(mode, flags, fn)
		p.Add(1)
		return row
	}
	var rows []benchRow
	profiled := false
	for _, n := range ns {
		team, err := benchTeam(ctx, pool, n, progressWriter{p, env.Stderr})
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden bench: %v\n", err)
			return 1
		}
		type run struct {
			mode string
			fn   func() (measured, error)
		}
		// streaming is a cold build: a new builder, which runs the whole first pass.
		// warm is the build after it with the same builder, as a service's next build of
		// the team: it predicts from the previous build's index (the runs take turns,
		// so every warm run follows a streaming one).
		var last *rebuild.Builder
		build := func(b *rebuild.Builder, source string) (measured, error) {
			var st rebuild.BuildStats
			var m measured
			var err error
			if postHogLayout {
				sink := &storedSink{compress: *compress}
				st, err = b.Build(ctx, src, team, sink)
				err = errors.Join(err, sink.close())
				m = measured{payload: sink.bytes(), stored: sink.stored()}
			} else {
				var sink rebuild.CountSink
				st, err = b.Build(ctx, src, team, &sink)
				m = measured{payload: sink.FlagsBytes + sink.DefinitionsBytes}
				m.stored = m.payload
			}
			m.firstPass = st.FirstPass.Seconds()
			if err == nil && st.PredictionSource != source {
				err = fmt.Errorf("the build predicted from %s, expected %s", st.PredictionSource, source)
			}
			return m, err
		}
		runs := []run{{"copy", func() (measured, error) {
			var w countWriter
			_, err := posthog.CopyFlags(ctx, pool, team, &w)
			return measured{payload: w.n, stored: w.n}, err
		}}, {"streaming", func() (measured, error) {
			// A file holds one profile (pprof refuses concatenated ones): the first
			// streaming run of the largest size.
			if prof != nil && !profiled && n == slices.Max(ns) {
				profiled = true
				if err := pprof.StartCPUProfile(prof); err == nil {
					defer pprof.StopCPUProfile()
				}
			}
			last = rebuild.NewBuilder(rebuild.BuilderOptions{})
			return build(last, rebuild.PredictionReferences)
		}}, {"warm", func() (measured, error) {
			return build(last, rebuild.PredictionPreviousBuild)
		}}}
		if pub != nil {
			runs = append(runs, run{"publish", func() (measured, error) {
				res, err := rebuild.NewRebuilder(src, rebuild.NewBuilder(rebuild.BuilderOptions{}), pub).Rebuild(ctx, team)
				return measured{payload: res.FlagsBytes + res.DefinitionsBytes, stored: res.FlagsStoredBytes + res.DefinitionsStoredBytes,
					firstPass: res.FirstPassSeconds}, err
			}})
			// The team's last build in the deployment, which the shared runs predict from.
			p.Describe(fmt.Sprintf("storing the shared prediction of %s flags", humanize.Comma(int64(n))))
			if _, err := rebuild.NewBuilder(rebuild.BuilderOptions{Predictions: shared}).Build(ctx, src, team, &rebuild.CountSink{}); err != nil {
				fmt.Fprintf(env.Stderr, "flagwarden bench: %v\n", err)
				return 1
			}
			runs = append(runs, run{"shared", func() (measured, error) {
				return build(rebuild.NewBuilder(rebuild.BuilderOptions{Predictions: shared}), rebuild.PredictionShared)
			}})
		}
		naive := benchRow{Mode: "naive", Flags: n, Note: fmt.Sprintf("skipped: above --naive-max %d, it would hold the whole team in memory", *naiveMax)}
		if n <= *naiveMax {
			naive = benchRow{}
			runs = append(runs, run{"naive", func() (measured, error) {
				a, b, err := rebuild.NaiveBuild(ctx, src, team)
				return measured{payload: int64(len(a) + len(b)), stored: int64(len(a) + len(b))}, err
			}})
		}
		folded := make([]benchRow, len(runs))
		for range *f.repeat {
			for i, r := range runs {
				folded[i].fold(measure(r.mode, n, r.fn))
			}
			if naive.Note != "" {
				p.Add(1)
			}
		}
		if *f.repeat == 1 {
			for i := range folded {
				folded[i].Runs, folded[i].RunSeconds = 0, nil // the keys of a single run stay as they were
			}
		}
		for i := range folded[1:] { // folded[0] is copy
			if r := &folded[1+i]; r.Note == "" && folded[0].Note == "" && folded[0].Seconds > 0 {
				r.CopyRatio = r.Seconds / folded[0].Seconds
			}
		}
		rows = append(rows, folded...)
		if naive.Note != "" {
			rows = append(rows, naive)
		}
	}
	p.Finish()
	if structured(format) {
		if err := writeData(env.Stdout, format, rows); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden bench: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(env.Stdout, "%-10s %9s %12s %12s %9s %7s %9s %10s %10s %12s %12s %12s\n", "mode", "flags", "payload", "stored", "seconds", "vs copy",
		"1st pass", "client cpu", "MB/s", "peak heap", "live heap", "peak rss")
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(env.Stdout, "%-10s %9d  %s\n", r.Mode, r.Flags, r.Note)
			continue
		}
		ratio, first := "", "" // the copy row itself; the modes without a first pass
		if r.CopyRatio > 0 {
			ratio = fmt.Sprintf("%.2f", r.CopyRatio)
		}
		if r.FirstPassSeconds > 0 {
			first = fmt.Sprintf("%.2f", r.FirstPassSeconds)
		}
		fmt.Fprintf(env.Stdout, "%-10s %9d %12s %12s %9.2f %7s %9s %10.2f %10.1f %12s %12s %12s\n", r.Mode, r.Flags, units.Bytes(r.PayloadBytes), units.Bytes(r.StoredBytes), r.Seconds,
			ratio, first, r.ClientCPUSeconds, float64(r.PayloadBytes)/(1<<20)/max(r.Seconds, 1e-9),
			units.Bytes(r.PeakHeapBytes), units.Bytes(r.PeakLiveHeapBytes), units.Bytes(r.PeakRSSBytes))
	}
	if *f.repeat > 1 {
		fmt.Fprintf(env.Stdout, "seconds: the fastest of %d runs (1st pass and client cpu: that run's); peaks: the highest\n", *f.repeat)
	}
	return 0
}

// benchTeam returns the team named bench-N, seeding it when missing.
func benchTeam(ctx context.Context, pool *pgxpool.Pool, n int, log io.Writer) (int64, error) {
	if err := posthog.ApplySchema(ctx, pool); err != nil {
		return 0, err
	}
	name := "bench-" + strconv.Itoa(n)
	if id, ok, err := posthog.TeamIDByName(ctx, pool, name); err != nil || ok {
		return id, err
	}
	fmt.Fprintf(log, "seeding team %s (%d flags)…\n", name, n)
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: 0, GiantFlags: n, GiantName: name, Seed: int64(n)})
	if err != nil {
		return 0, err
	}
	return res.GiantTeamID, nil
}

// measured is what one run reports of itself.
type measured struct {
	payload, stored int64
	firstPass       float64 // seconds; 0 for modes without a first pass
}

// measure runs fn once with heap sampling, a reset RSS high-water mark and the
// process's CPU time.
func measure(mode string, flags int, fn func() (measured, error)) benchRow {
	runtime.GC()
	procstat.ResetPeakRSS()
	heap := heapwatch.Start(2 * time.Millisecond)
	cpu := procstat.CPUSeconds()
	start := time.Now()
	m, err := fn()
	el := time.Since(start)
	cpu = procstat.CPUSeconds() - cpu
	peaks := heap.Stop()
	row := benchRow{Mode: mode, Flags: flags, PayloadBytes: m.payload, StoredBytes: m.stored, Seconds: el.Seconds(),
		PeakHeapBytes: peaks.Heap, PeakLiveHeapBytes: peaks.Live, PeakRSSBytes: procstat.PeakRSS(),
		ClientCPUSeconds: cpu, FirstPassSeconds: m.firstPass}
	if err != nil {
		row.Note = "error: " + err.Error()
	}
	return row
}

// requestOutcomes sums flagwarden_rebuild_requests_total by outcome.
func requestOutcomes(reg *prometheus.Registry) map[string]int64 {
	out := map[string]int64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "flagwarden_rebuild_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					out[l.GetValue()] += int64(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}

// benchDedupFlags are bench dedup's flags.
type benchDedupFlags struct {
	cfgPath, url    *string
	requests, teams *int
	coalesce        *time.Duration
	intake          *string
	out             *output
}

func newBenchDedupCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dedup [--config FILE | --url URL] [--requests N] [--teams N] [--intake in-process|celery] [-o table|json|yaml]",
		Short: "fire a burst of duplicate rebuild requests at a running engine and count the builds",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	f := benchDedupFlags{
		cfgPath:  configFlag(fs, env),
		url:      fs.String("url", "", "Postgres `URL` for the flag data and the engine's jobs (default flag_database.url)"),
		requests: fs.Int("requests", 116000, "requests in the burst"),
		teams:    fs.Int("teams", 500, "distinct teams the requests name"),
		coalesce: fs.Duration("coalesce-delay", 0, "rebuild.coalesce_delay for the engine (default the configuration's)"),
		intake:   fs.String("intake", "in-process", "how the burst arrives: in-process (Engine.Request), or celery (real Celery tasks on a private Redis, taken by the Celery consumer; also runs the in-process burst for comparison)"),
		out:      outputFlags(cmd, fs),
	}
	cmd.RunE = runBody(func(ctx context.Context, _ []string) int { return benchDedup(ctx, env, f) })
	return cmd
}

// benchDedup fires 116,000 requests over 500 teams at a running engine on Postgres
// and reports how many builds ran and how long the burst took to drain.
func benchDedup(ctx context.Context, env Env, f benchDedupFlags) int {
	cfgPath, url, requests, teamsN, coalesce := f.cfgPath, f.url, f.requests, f.teams, f.coalesce
	format, err := f.out.Format()
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden bench dedup: %v\n", err)
		return 2
	}
	cfg, dsn, err := benchConfig(env, *cfgPath, *url)
	if err != nil {
		printConfigError(env.Stderr, err)
		return 1
	}
	switch *f.intake {
	case "celery":
		return benchDedupCelery(ctx, env, dsn, *requests, *teamsN, *coalesce, format)
	case "in-process":
	default:
		fmt.Fprintf(env.Stderr, "flagwarden bench dedup: --intake %q: want in-process or celery\n", *f.intake)
		return 2
	}
	fail := func(err error) int { fmt.Fprintf(env.Stderr, "flagwarden bench dedup: %v\n", err); return 1 }
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	if _, err := statedb.Migrate(ctx, pool); err != nil {
		return fail(err)
	}
	if err := rebuild.MigratePostgres(ctx, pool); err != nil {
		return fail(err)
	}
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: *teamsN, FlagTeamShare: 1, MaxFlags: 200, Seed: 116})
	if err != nil {
		return fail(err)
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return fail(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	src := app.NewFlagSource(pool)
	reg := prometheus.NewRegistry()
	opts := app.EngineOptions(cfg, src, app.NewPublisher(cfg, rdb, nil, nil), app.Sinks{Registry: reg})
	opts.FetchPollInterval = 100 * time.Millisecond
	if *coalesce > 0 {
		opts.CoalesceDelay = *coalesce
	}
	e, err := app.NewPostgresEngine(pool, opts)
	if err != nil {
		return fail(err)
	}
	if err := e.Start(ctx); err != nil {
		return fail(err)
	}
	defer func() { _ = e.Stop(context.WithoutCancel(ctx)) }()
	start := time.Now()
	var sent atomic.Int64
	p := env.newProgress("bench dedup: requests", "requests", int64(*requests))
	stopProgress := follow(p, func() int64 { return sent.Load() })
	errs := dedupbench.Burst(ctx, e, res.FirstTeamID, *requests, *teamsN, &sent)
	intake := time.Since(start)
	stopProgress()
	p.Finish()
	var builds int
	// The drain's total is unknown until it ends: a count of checks, and the jobs left.
	drainProgress := env.newProgress("bench dedup: draining", "checks", 0)
	defer drainProgress.Finish()
	for {
		st, err := e.Status(ctx)
		if err != nil {
			return fail(err)
		}
		busy := 0
		for _, l := range st.Lanes {
			busy += l.Running + l.Waiting
		}
		if busy == 0 {
			break
		}
		drainProgress.Describe(fmt.Sprintf("%d builds running or waiting", busy))
		drainProgress.Add(1)
		time.Sleep(100 * time.Millisecond)
	}
	drain := time.Since(start)
	drainProgress.Finish()
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM flagwarden_rebuild_results WHERE team_id BETWEEN $1 AND $2`, res.FirstTeamID, res.LastTeamID).Scan(&builds); err != nil {
		return fail(err)
	}
	outcomes := requestOutcomes(reg)
	rate := float64(*requests) / max(intake.Seconds(), 1e-9)
	out := map[string]any{"requests": *requests, "teams": *teamsN, "request_errors": errs, "builds": builds,
		"intake_seconds": intake.Seconds(), "intake_requests_per_second": rate, "drain_seconds": drain.Seconds(),
		"outcomes": outcomes}
	if structured(format) {
		if err := writeData(env.Stdout, format, out); err != nil {
			return fail(err)
		}
		return 0
	}
	fmt.Fprintf(env.Stdout, "requests %d over %d teams: %d builds, %d request errors; intake %.2fs (%.0f requests/s), drained in %.1fs\n",
		*requests, *teamsN, builds, errs, intake.Seconds(), rate, drain.Seconds())
	fmt.Fprintf(env.Stdout, "request outcomes: coalesced in memory %d, joined in the database %d, inserted %d\n",
		outcomes["coalesced"], outcomes["joined"], outcomes["inserted"])
	return 0
}

// storedDiscard is the benchmark's discard writer for the PostHog layout: the payload
// goes through the same write-behind goroutine and encoder as a published one, and
// only the stored length is kept.
type storedDiscard struct {
	n   int64
	enc *hypercache.Writer
	wb  *writebehind.Writer
}

func newStoredDiscard(compress bool) *storedDiscard {
	d := &storedDiscard{enc: hypercache.NewWriter(discardSink{}, compress)}
	d.wb = writebehind.New(rebuild.EncodeChunk, func(b []byte) error { _, err := d.enc.Write(b); return err }, func(ok bool) error {
		if !ok {
			d.enc.Abort()
			return nil
		}
		return d.enc.Close()
	})
	return d
}

func (d *storedDiscard) Write(p []byte) (int, error) { d.n += int64(len(p)); return d.wb.Write(p) }
func (d *storedDiscard) Close() error                { return d.wb.Close() }
func (d *storedDiscard) stored() int64               { return d.enc.Stored() }

// storedSink hands the builder a fresh pair of storedDiscards per attempt, aborting
// the previous attempt's.
type storedSink struct {
	compress bool
	fl, df   *storedDiscard
}

func (s *storedSink) Writers(int) (io.Writer, io.Writer, error) {
	if s.fl != nil {
		s.fl.wb.Abort()
		s.df.wb.Abort()
	}
	s.fl, s.df = newStoredDiscard(s.compress), newStoredDiscard(s.compress)
	return s.fl, s.df, nil
}

func (s *storedSink) close() error {
	if s.fl == nil {
		return nil
	}
	return errors.Join(s.fl.Close(), s.df.Close())
}

func (s *storedSink) bytes() int64 {
	if s.fl == nil {
		return 0
	}
	return s.fl.n + s.df.n
}

func (s *storedSink) stored() int64 {
	if s.fl == nil {
		return 0
	}
	return s.fl.stored() + s.df.stored()
}

// discardSink counts nothing itself (the encoder does) and accepts header patches.
type discardSink struct{}

func (discardSink) Write(p []byte) (int, error)            { return len(p), nil }
func (discardSink) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }

// follow sets p to count() twice a second until the returned stop is called, for work
// whose count is kept by goroutines that should not share a lock with the bar.
func follow(p *progress, count func() int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				p.Set(count())
				return
			case <-t.C:
				p.Set(count())
			}
		}
	}()
	return func() { close(done); <-finished }
}

// progressWriter writes through a progress report without tearing its bar.
type progressWriter struct {
	p *progress
	w io.Writer
}

func (pw progressWriter) Write(b []byte) (int, error) {
	pw.p.Print(pw.w, "%s", b)
	return len(b), nil
}
