package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/term"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/units"
	"github.com/flagwarden/flagwarden/rebuild"
)

func runRebuild(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet("rebuild", env, "rebuild --team N | --all [--dry-run] | --install-triggers [--config FILE]")
	cfgPath := configFlag(fs, env)
	team := fs.Int64("team", 0, "rebuild this team's caches")
	all := fs.Bool("all", false, "rebuild every team that has flags")
	dry := fs.Bool("dry-run", false, "build but publish nothing (measure only)")
	install := fs.Bool("install-triggers", false, "install the NOTIFY triggers (rebuild.notify.channel) in the flag database and exit")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if (*team > 0) == *all && !*install {
		fmt.Fprintln(env.Stderr, "flagwarden rebuild: give exactly one of --team N or --all (or --install-triggers)")
		fs.Usage()
		return 2
	}
	cfg, err := loadConfig(*cfgPath, env)
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
	if *install {
		if err := posthog.InstallTriggers(ctx, pool, cfg.Rebuild.Notify.Channel); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden rebuild: %v\n", err)
			return 1
		}
		fmt.Fprintf(env.Stdout, "installed change triggers notifying channel %s\n", cfg.Rebuild.Notify.Channel)
		return 0
	}
	var teams []int64
	if *all {
		if teams, err = posthog.TeamsWithFlags(ctx, pool); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden rebuild: list teams: %v\n", err)
			return 1
		}
	} else {
		teams = []int64{*team}
	}

	var pub *rebuild.Publisher
	if !*dry {
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
	}
	src := rebuild.NewPGSource(pool, nil)
	tty := false
	if f, ok := env.Stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	failed := 0
	var totalBytes int64
	start := time.Now()
	for i, id := range teams {
		t0 := time.Now()
		progress := func(p rebuild.BuildProgress) {
			if !tty {
				return
			}
			el := time.Since(t0).Seconds()
			fmt.Fprintf(env.Stdout, "\r team %d (%d/%d): %d rows, %s, %.0f rows/s, %.1fs   ", id, i+1, len(teams),
				p.Rows, units.Bytes(p.Bytes), float64(p.Rows)/max(el, 1e-9), el)
		}
		b := rebuild.NewBuilder(rebuild.BuilderOptions{PageSize: cfg.Rebuild.PageSize, FailOnMalformed: cfg.Rebuild.OnMalformed == "fail",
			Progress: progress, Contract: rebuild.Contract(cfg.Cache.PostHogContract)})
		var res rebuild.BuildResult
		if *dry {
			var sink rebuild.CountSink
			st, err := b.Build(ctx, src, id, &sink)
			res = rebuild.BuildResult{TeamID: id, OK: err == nil, Flags: st.Flags, Cohorts: st.Cohorts, SkippedFlags: st.Skipped,
				FlagsBytes: sink.FlagsBytes, DefinitionsBytes: sink.DefinitionsBytes, Problems: st.Problems, Skipped: st.SkippedFlags}
			if err != nil {
				res.Error = err.Error()
			}
		} else {
			var err error
			if res, err = rebuild.NewRebuilder(src, b, pub).Rebuild(ctx, id); err != nil && res.Error == "" {
				res.OK, res.Error = false, err.Error()
			}
		}
		if tty {
			fmt.Fprint(env.Stdout, "\r\033[K")
		}
		totalBytes += res.FlagsBytes + res.DefinitionsBytes
		if !res.OK {
			failed++
			fmt.Fprintf(env.Stderr, "team %d: FAILED: %s\n", id, res.Error)
			continue
		}
		state := "published"
		switch {
		case *dry:
			state = "dry run"
		case res.Unchanged:
			state = "unchanged"
		}
		etag := res.FlagsETag
		if len(etag) > 16 {
			etag = etag[:16]
		}
		fmt.Fprintf(env.Stdout, "team %d: %s: %d flags, %d cohorts, %d skipped; flags.json %s, flags_with_cohorts.json %s; etag %s; peak heap %s; %s\n",
			id, state, res.Flags, res.Cohorts, res.SkippedFlags, units.Bytes(res.FlagsBytes), units.Bytes(res.DefinitionsBytes), etag,
			units.Bytes(res.PeakHeapBytes), time.Since(t0).Round(time.Millisecond))
		for _, s := range res.Skipped {
			fmt.Fprintf(env.Stdout, "  skipped flag %d (%s): %s: %s\n", s.ID, s.Key, s.Reason, s.Detail)
		}
		for _, p := range res.Problems {
			fmt.Fprintf(env.Stdout, "  problem: %s\n", p)
		}
	}
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
