package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/units"
	"github.com/flagwarden/flagwarden/rebuild"
)

func newRebuildCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rebuild --team N | --all [--dry-run] | --install-triggers [--config FILE]",
		Short: "rebuild one team's flag caches (or all) now, with progress",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	cfgPath := configFlag(fs, env)
	team := teamFlag(fs, "rebuild this team's caches")
	all := fs.Bool("all", false, "rebuild every team that has flags")
	dry := fs.Bool("dry-run", false, "build but publish nothing (measure only)")
	install := fs.Bool("install-triggers", false, "install the NOTIFY triggers (rebuild.notify.channel) in the flag database and exit")
	cmd.MarkFlagsMutuallyExclusive("team", "all", "install-triggers")
	cmd.RunE = runBody(func(ctx context.Context, _ []string) int {
		return runRebuild(ctx, env, *cfgPath, *team, *all, *dry, *install)
	})
	return cmd
}

func runRebuild(ctx context.Context, env Env, cfgPath string, team int64, all, dry, install bool) int {
	if (team > 0) == all && !install {
		fmt.Fprintln(env.Stderr, "flagwarden rebuild: give exactly one of --team N or --all (or --install-triggers)")
		return 2
	}
	uses := []config.Server{config.FlagDatabaseServer}
	if !dry && !install {
		uses = append(uses, config.CacheServer)
	}
	cfg, err := loadConfig(cfgPath, env, uses...)
	if err != nil {
		printConfigError(env.Stderr, err)
		return 1
	}
	pool, err := pgxpool.New(ctx, cfg.FlagDatabase.URL.Value())
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden rebuild: %v\n", err)
		return 1
	}
	defer pool.Close()
	if install {
		if err := posthog.InstallTriggers(ctx, pool, cfg.Rebuild.Notify.Channel); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden rebuild: %v\n", err)
			return 1
		}
		fmt.Fprintf(env.Stdout, "installed change triggers notifying channel %s\n", cfg.Rebuild.Notify.Channel)
		return 0
	}
	var teams []int64
	if all {
		if teams, err = posthog.TeamsWithFlags(ctx, pool); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden rebuild: list teams: %v\n", err)
			return 1
		}
	} else {
		teams = []int64{team}
	}

	var pub *rebuild.Publisher
	var shared rebuild.PredictionStore // a one-shot run predicts from the deployment's last builds
	if !dry {
		opt, err := redis.ParseURL(cfg.Cache.URL.Value())
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden rebuild: cache url: %v\n", err)
			return 1
		}
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		tier, err := app.NewS3Tier(ctx, cfg, nil)
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden rebuild: %v\n", err)
			return 1
		}
		pub = app.NewPublisher(cfg, rdb, app.Mirror(tier), nil)
		shared = app.SharedPredictions(cfg, rdb)
	}
	src := app.NewFlagSource(pool)
	failed := 0
	var totalBytes int64
	start := time.Now()
	p := env.newProgress("rebuild", "teams", int64(len(teams)))
	defer p.Finish()
	for _, id := range teams {
		t0 := time.Now()
		progress := func(bp rebuild.BuildProgress) {
			p.Describe(fmt.Sprintf("team %d: %s rows, %s", id, humanize.Comma(bp.Rows), units.Bytes(bp.Bytes)))
		}
		bo := app.BuilderOptions(cfg, progress)
		bo.Predictions = shared
		b := rebuild.NewBuilder(bo)
		var res rebuild.BuildResult
		if dry {
			var sink rebuild.CountSink
			st, err := b.Build(ctx, src, id, &sink)
			res = rebuild.BuildResult{TeamID: id, OK: err == nil, Flags: st.Flags, Cohorts: st.Cohorts, SkippedFlags: st.Skipped,
				FlagsBytes: sink.FlagsBytes, DefinitionsBytes: sink.DefinitionsBytes, Problems: st.Problems, Skipped: st.SkippedFlags,
				FirstPassSeconds: st.FirstPass.Seconds(), PredictionSource: st.PredictionSource}
			if err != nil {
				res.Error = err.Error()
			}
		} else {
			var err error
			if res, err = rebuild.NewRebuilder(src, b, pub).Rebuild(ctx, id); err != nil && res.Error == "" {
				res.OK, res.Error = false, err.Error()
			}
		}
		p.Add(1)
		totalBytes += res.FlagsBytes + res.DefinitionsBytes
		if !res.OK {
			failed++
			p.Print(env.Stderr, "team %d: %s: %s\n", id, palette(env.colour(env.Stderr)).red("FAILED"), res.Error)
			continue
		}
		state := "published"
		switch {
		case dry:
			state = "dry run"
		case res.Unchanged:
			state = "unchanged"
		}
		etag := res.FlagsETag
		if len(etag) > 16 {
			etag = etag[:16]
		}
		p.Print(env.Stdout, "team %d: %s: %d flags, %d cohorts, %d skipped; flags.json %s, flags_with_cohorts.json %s; etag %s; peak heap %s (live %s); %s (first pass %s, prediction: %s)\n",
			id, state, res.Flags, res.Cohorts, res.SkippedFlags, units.Bytes(res.FlagsBytes), units.Bytes(res.DefinitionsBytes), etag,
			units.Bytes(res.PeakHeapBytes), units.Bytes(res.PeakLiveHeapBytes), time.Since(t0).Round(time.Millisecond),
			time.Duration(res.FirstPassSeconds*float64(time.Second)).Round(time.Millisecond), cmp.Or(res.PredictionSource, "none"))
		if res.SharedPredictionError != "" {
			p.Print(env.Stderr, "  shared prediction: %s\n", res.SharedPredictionError)
		}
		for _, s := range res.Skipped {
			p.Print(env.Stdout, "  skipped flag %d (%s): %s: %s\n", s.ID, s.Key, s.Reason, s.Detail)
		}
		for _, pr := range res.Problems {
			p.Print(env.Stdout, "  problem: %s\n", pr)
		}
	}
	p.Finish()
	fmt.Fprintf(env.Stdout, "%d team(s), %d failed, %s written in %s\n", len(teams), failed, units.Bytes(totalBytes), time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		return 1
	}
	return 0
}

// countWriter discards what it is given and counts it.
type countWriter struct{ n int64 }

func (w *countWriter) Write(b []byte) (int, error) { w.n += int64(len(b)); return len(b), nil }

var _ io.Writer = (*countWriter)(nil)
