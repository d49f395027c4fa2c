package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/collectors/caches"
	"github.com/flagwarden/flagwarden/collectors/pods"
	"github.com/flagwarden/flagwarden/collectors/promql"
	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// inspectSubjects are inspect's subcommands: what each collects, and which servers of
// the configuration it connects to.
var inspectSubjects = []struct {
	name, short string
	uses        []config.Server
	run         func(context.Context, config.Config, inspectOut) error
}{
	{"queues", "the broker's Celery queues: depth by priority, unacked and overdue messages, what they hold", []config.Server{config.BrokerServer}, inspectQueues},
	{"teams", "every team's flag data sizes, largest first, against the worker memory limit", []config.Server{config.FlagDatabaseServer}, inspectTeams},
	{"pods", "the Celery worker pods: readiness, restarts, last termination, memory (and PromQL results)", nil, inspectPods},
	{"caches", "the published caches: size, age and lag behind the flag data (lag needs the flag database)", []config.Server{config.CacheServer}, inspectCaches},
}

func newInspectCmd(env Env) *cobra.Command {
	cmd := groupCmd("inspect queues|teams|pods|caches [-o table|wide|json|yaml] [--top N] [--config FILE]",
		"print one collection of queues, teams, pods or caches",
		"Run one collection, as serve's collectors do, and print it: a table (the largest or\nworst first), more columns with -o wide, or everything with -o json or -o yaml.")
	pf := cmd.PersistentFlags()
	cfgPath := configFlag(pf, env)
	out := outputFlags(cmd, pf)
	top := pf.Int("top", 30, "rows to show in a table (largest or worst first); 0 shows all")
	timeout := pf.Duration("timeout", 2*time.Minute, "give up after this long")
	for _, s := range inspectSubjects {
		sub := &cobra.Command{
			Use:   s.name + " [-o table|wide|json|yaml] [--top N] [--config FILE]",
			Short: s.short,
			Args:  noArgs,
		}
		sub.RunE = runBody(func(ctx context.Context, _ []string) int {
			format, err := out.Format()
			if err != nil {
				fmt.Fprintf(env.Stderr, "flagwarden inspect %s: %v\n", s.name, err)
				return 2
			}
			cfg, err := loadConfig(*cfgPath, env, s.uses...)
			if err != nil {
				printConfigError(env.Stderr, err)
				return 1
			}
			ctx, cancel := context.WithTimeout(ctx, *timeout)
			defer cancel()
			o := inspectOut{w: env.Stdout, format: format, top: *top, colour: palette(env.colour(env.Stdout)),
				logger: newLogger(config.Log{Level: "warn", Format: cfg.Log.Format}, env.Stderr)}
			if err := s.run(ctx, cfg, o); err != nil {
				fmt.Fprintf(env.Stderr, "flagwarden inspect %s: %v\n", s.name, err)
				return 1
			}
			return 0
		})
		cmd.AddCommand(sub)
	}
	return cmd
}

type inspectOut struct {
	w      io.Writer
	format string
	top    int
	colour palette
	logger *slog.Logger
}

func (o inspectOut) structured() bool { return structured(o.format) }

func (o inspectOut) encode(v any) error { return writeData(o.w, o.format, v) }

// limit is how many of n rows a table shows.
func (o inspectOut) limit(n int) int {
	if o.top <= 0 {
		return n
	}
	return min(n, o.top)
}

func (o inspectOut) table(headers ...string) *table {
	return newTable(o.w, o.format == formatWide, headers...)
}

func (o inspectOut) more(shown, total int, what string) {
	if shown < total {
		fmt.Fprintf(o.w, "… %d more %s (--top 0 shows all, -o json or -o yaml for everything)\n", total-shown, what)
	}
}

// sinks are a one-shot collection's: no store, series or shared registry.
func (o inspectOut) sinks() app.Sinks { return app.Sinks{Logger: o.logger} }

func openRedis(u config.URL) (*redis.Client, error) {
	opt, err := redis.ParseURL(u.Value())
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", u, err)
	}
	return redis.NewClient(opt), nil
}

func inspectQueues(ctx context.Context, cfg config.Config, o inspectOut) error {
	rdb, err := openRedis(cfg.Broker.URL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	c, err := app.NewCeleryCollector(cfg, rdb, o.sinks())
	if err != nil {
		return err
	}
	start := time.Now()
	q, err := c.Collect(ctx)
	if err != nil {
		return err
	}
	if o.structured() {
		return o.encode(q)
	}
	var total int64
	for _, x := range q.Queues {
		total += x.Depth
	}
	fmt.Fprintf(o.w, "%d queues, %s messages waiting, %s unacked (%s overdue) — collected in %s\n\n",
		len(q.Queues), humanize.Comma(total), humanize.Comma(q.Unacked), humanize.Comma(q.Overdue), time.Since(start).Round(time.Millisecond))
	steps := cfg.Broker.PrioritySteps
	tw := o.table("QUEUE", "DEPTH", "BY PRIORITY "+joinInts(steps), "UNACKED", "OVERDUE", "+SAMPLED", "TEAMS", "DUPLICATES", "+UNDECODABLE", "TOP TASK", "+BOUND")
	n := o.limit(len(q.Queues))
	for _, x := range q.Queues[:n] {
		pri := make([]string, len(steps))
		for i, s := range steps {
			pri[i] = humanize.Comma(x.ByPriority[s])
		}
		comp := x.Composition
		teams, dup, bad, task := "-", "-", "-", "-"
		if comp.Sampled > 0 {
			teams, dup, bad = strconv.Itoa(comp.DistinctTeams), fmt.Sprintf("%.0f%%", 100*comp.DuplicateRatio), strconv.Itoa(comp.Undecodable)
			task = topTask(comp.ByTask)
		}
		sampled := "-"
		if comp.Sampled > 0 {
			sampled = strconv.Itoa(comp.Sampled)
		}
		tw.row(x.Name, humanize.Comma(x.Depth), strings.Join(pri, "/"), humanize.Comma(x.Unacked), humanize.Comma(x.Overdue),
			sampled, teams, dup, bad, task, yesNo(x.Bound))
	}
	if err := tw.flush(); err != nil {
		return err
	}
	o.more(n, len(q.Queues), "queues")
	fmt.Fprintln(o.w, "\nThe oldest message's age needs two looks; `flagwarden serve` tracks it.")
	return nil
}

func topTask(byTask map[string]int) string {
	best, n := "", 0
	for t, c := range byTask {
		if c > n || (c == n && t < best) {
			best, n = t, c
		}
	}
	if best == "" {
		return "-"
	}
	if i := strings.LastIndex(best, "."); i >= 0 {
		best = best[i+1:]
	}
	return fmt.Sprintf("%s (%d)", best, n)
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, "/")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// collectTeams runs one full pass over the flag database.
func collectTeams(ctx context.Context, cfg config.Config, logger *slog.Logger) (snapshot.Teams, error) {
	pool, err := app.OpenDatabase(ctx, cfg.FlagDatabase)
	if err != nil {
		return snapshot.Teams{}, err
	}
	defer pool.Close()
	c, err := app.NewTeamsCollector(cfg, app.NewFlagDBTeams(cfg, pool), app.Sinks{Logger: logger})
	if err != nil {
		return snapshot.Teams{}, err
	}
	return c.Collect(ctx)
}

func inspectTeams(ctx context.Context, cfg config.Config, o inspectOut) error {
	t, err := collectTeams(ctx, cfg, o.logger)
	if err != nil {
		return err
	}
	list := make([]snapshot.TeamSize, 0, len(t.Teams))
	for _, s := range t.Teams {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b snapshot.TeamSize) int {
		return cmp.Or(cmp.Compare(b.PayloadBytes(), a.PayloadBytes()), cmp.Compare(a.TeamID, b.TeamID))
	})
	if o.structured() {
		return o.encode(struct {
			At          time.Time           `json:"at"`
			PassSeconds float64             `json:"pass_seconds"`
			Teams       []snapshot.TeamSize `json:"teams"`
		}{t.At, t.PassSeconds, list})
	}
	var flags, bad int64
	for _, s := range list {
		flags += s.Flags
		bad += s.BadRows
	}
	limit := int64(cfg.Detectors.WorkerMemoryLimit)
	fmt.Fprintf(o.w, "%s teams with flag data, %s flags, %d bad rows — full pass in %s\n", humanize.Comma(int64(len(list))), humanize.Comma(flags), bad,
		time.Duration(t.PassSeconds*float64(time.Second)).Round(time.Millisecond))
	fmt.Fprintf(o.w, "NAIVE BUILD is %d× both payloads, what a load-everything build holds; compared with the %s worker limit.\n\n",
		snapshot.NaiveBuildFactor, humanize.IBytes(uint64(limit)))
	tw := o.table("TEAM", "FLAGS", "+ACTIVE", "+DELETED", "COHORTS", "+FILTERS", "+LARGEST FILTER", "FLAGS PAYLOAD", "DEFINITIONS PAYLOAD", "NAIVE BUILD", "+UPDATED", "BAD")
	n := o.limit(len(list))
	for _, s := range list[:n] {
		naive := humanize.IBytes(uint64(s.EstimatedNaiveBuildBytes()))
		if s.EstimatedNaiveBuildBytes() > limit {
			naive += " (over limit)"
		}
		badCol := "-"
		if s.BadRows > 0 {
			badCol = fmt.Sprintf("%d: %s", s.BadRows, strings.Join(s.BadReasons, ", "))
		}
		tw.row(strconv.FormatInt(s.TeamID, 10), humanize.Comma(s.Flags), humanize.Comma(s.ActiveFlags), humanize.Comma(s.DeletedFlags),
			fmt.Sprintf("%d (%s)", s.Cohorts, humanize.IBytes(uint64(s.CohortBytes))), humanize.IBytes(uint64(s.FiltersBytes)),
			humanize.IBytes(uint64(s.LargestFilterBytes)), humanize.IBytes(uint64(s.FlagsPayloadBytes)), humanize.IBytes(uint64(s.DefinitionsPayloadBytes)),
			naive, ago(s.UpdatedAt, t.At), badCol)
	}
	if err := tw.flush(); err != nil {
		return err
	}
	o.more(n, len(list), "teams")
	return nil
}

// ago renders how long before now t was, in the largest sensible unit.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1fh ago", d.Hours())
	}
	return fmt.Sprintf("%.0fd ago", d.Hours()/24)
}

func inspectPods(ctx context.Context, cfg config.Config, o inspectOut) error {
	k := cfg.Kubernetes
	if !k.Enabled {
		return fmt.Errorf("kubernetes.enabled is false in the configuration: no pods to inspect")
	}
	inf, err := app.NewPodInformer(cfg)
	if err != nil {
		return err
	}
	pq, err := app.NewPromQL(cfg, o.sinks())
	if err != nil {
		return err
	}
	c, err := app.NewPodsCollector(cfg, inf, app.PodMemory(cfg, pq), o.sinks())
	if err != nil {
		return err
	}
	if err := inf.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = inf.Stop(context.WithoutCancel(ctx)) }()
	var p snapshot.Pods
	for {
		if p, err = c.Collect(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	var results map[string]promql.Result
	if pq != nil {
		if err := pq.RunOnce(ctx); err != nil {
			o.logger.Warn("some PromQL queries failed", "err", err)
		}
		results = pq.Results()
	}
	if o.structured() {
		return o.encode(struct {
			snapshot.Pods
			PromQL map[string]promql.Result `json:"promql,omitempty"`
		}{p, promqlJSON(results)})
	}
	f := pods.Summarize(p)
	fmt.Fprintf(o.w, "%d pods in %s (%s): %d ready, %d in CrashLoopBackOff\n\n", f.Total, k.Namespace, k.LabelSelector, f.Ready, f.CrashLooping)
	tw := o.table("POD", "PHASE", "READY", "RESTARTS", "WAITING", "LAST TERMINATION", "+WHEN", "+MEMORY LIMIT", "USAGE")
	n := o.limit(len(p.Pods))
	for _, x := range p.Pods[:n] {
		term := "-"
		if x.LastTermination != "" {
			term = fmt.Sprintf("%s (exit %d)", x.LastTermination, x.LastExitCode)
		}
		usage := "-"
		if x.MemoryUsage > 0 && x.MemoryLimit > 0 {
			usage = fmt.Sprintf("%s (%.0f%%)", humanize.IBytes(uint64(x.MemoryUsage)), 100*float64(x.MemoryUsage)/float64(x.MemoryLimit))
		}
		limit := "-"
		if x.MemoryLimit > 0 {
			limit = humanize.IBytes(uint64(x.MemoryLimit))
		}
		tw.row(x.Name, x.Phase, yesNo(x.Ready), strconv.Itoa(int(x.Restarts)), cmp.Or(x.Waiting, "-"), term,
			ago(x.LastTerminatedAt, p.At), limit, usage)
	}
	if err := tw.flush(); err != nil {
		return err
	}
	o.more(n, len(p.Pods), "pods")
	if len(results) > 0 {
		fmt.Fprintln(o.w)
		tw := tabwriter.NewWriter(o.w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROMQL\tVALUE\tSAMPLES")
		for _, name := range slices.Sorted(mapKeys(results)) {
			r := results[name]
			v := "no data"
			switch {
			case r.Error != "":
				v = "error: " + r.Error
			case r.Samples > 0:
				v = strconv.FormatFloat(r.Value, 'g', 6, 64)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\n", name, v, r.Samples)
		}
		return tw.Flush()
	}
	return nil
}

// promqlJSON replaces NaN (no data), which JSON cannot carry, by zero with Samples 0.
func promqlJSON(in map[string]promql.Result) map[string]promql.Result {
	for k, r := range in {
		if math.IsNaN(r.Value) {
			r.Value = 0
			in[k] = r
		}
	}
	return in
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func inspectCaches(ctx context.Context, cfg config.Config, o inspectOut) error {
	rdb, err := openRedis(cfg.Cache.URL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// Lag needs the teams' newest changes; without the flag database, sizes and build
	// times are still worth showing.
	var t snapshot.Teams
	if cfg.FlagDatabase.URL == "" {
		o.logger.Warn("no flag database configured: lag and missing caches cannot be computed")
	} else if t, err = collectTeams(ctx, cfg, o.logger); err != nil {
		o.logger.Warn("flag database unavailable: lag and missing caches cannot be computed", "err", err)
	}
	// flagwarden's caches are read whether or not this configuration builds them.
	cfg.Rebuild.Enabled = true
	c, err := app.NewCachesCollector(cfg, rdb, func() snapshot.Teams { return t }, o.sinks())
	if err != nil {
		return err
	}
	s, err := c.Collect(ctx)
	if err != nil {
		return err
	}
	if o.structured() {
		return o.encode(s)
	}
	for _, src := range []string{caches.SourceFlagwarden, caches.SourcePostHog} {
		if src == caches.SourcePostHog && !cfg.Cache.WatchPostHog {
			continue
		}
		f := caches.Summarize(s, src, cfg.Detectors.StaleAfter)
		fmt.Fprintf(o.w, "%s caches: %d found, %d missing, %d teams stale (lag > %s); lag p50 %s, p99 %s, max %s\n", src, f.Entries, f.Missing, f.Stale,
			cfg.Detectors.StaleAfter, f.LagP50.Round(time.Second), f.LagP99.Round(time.Second), f.LagMax.Round(time.Second))
	}
	fmt.Fprintln(o.w)
	tw := o.table("TEAM", "KIND", "SOURCE", "SIZE", "BUILT", "+DATA CHANGED", "LAG", "ETAG", "STATE")
	n := o.limit(len(s.Teams))
	// Missing caches first, then the worst lag: what a person looks for.
	rows := slices.Clone(s.Teams)
	slices.SortStableFunc(rows, func(a, b snapshot.CacheState) int {
		if a.Missing != b.Missing {
			if a.Missing {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.Lag, a.Lag)
	})
	wide := o.format == formatWide
	for _, x := range rows[:n] {
		state := o.colour.green("fresh")
		switch {
		case x.Missing:
			state = o.colour.red("MISSING")
		case x.Lag > cfg.Detectors.StaleAfter:
			state = o.colour.red("STALE")
		case x.Lag > 0:
			state = o.colour.yellow("behind")
		}
		etag := cmp.Or(x.ETag, "-")
		if len(etag) > 16 && !wide {
			etag = etag[:16]
		}
		size, lag := "-", "-"
		if x.Bytes > 0 {
			size = humanize.IBytes(uint64(x.Bytes))
		}
		if !x.Missing && !x.SourceUpdatedAt.IsZero() {
			lag = x.Lag.Round(time.Second).String()
		}
		tw.row(strconv.FormatInt(x.TeamID, 10), x.Kind, x.Source, size, ago(x.BuiltAt, s.At), ago(x.SourceUpdatedAt, s.At),
			lag, etag, state)
	}
	if err := tw.flush(); err != nil {
		return err
	}
	o.more(n, len(s.Teams), "caches")
	return nil
}
