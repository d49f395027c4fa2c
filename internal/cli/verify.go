package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/term"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/rebuild"
	"github.com/flagwarden/flagwarden/rebuild/verify"
)

// Exit codes of verify beyond the usual 0 and 2.
const (
	exitWrongCaches = 1 // some cache is missing, undecodable, stale, different or has a wrong :etag
	exitUnverified  = 3 // nothing wrong found, but some checks (or the pass) could not be made
)

func runVerify(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet("verify", env, "verify [--team N | --every-team] [--json] [--grace D] [--no-s3] [--config FILE]")
	cfgPath := configFlag(fs, env)
	team := fs.Int64("team", 0, "check this team only (default: every team that has ever had a flag)")
	every := fs.Bool("every-team", false, "also check teams that never had a flag (their caches hold the empty shapes)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	grace := fs.Duration("grace", 0, "leave teams whose flag data changed this recently unjudged (their rebuild may be on its way)")
	noS3 := fs.Bool("no-s3", false, "check Redis only, even when cache.s3 is enabled")
	maxProblems := fs.Int("max-problems", 1000, "problems the JSON report lists in full (all are counted)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *team < 0 || *grace < 0 || *maxProblems < 1 || fs.NArg() > 0 {
		fmt.Fprintln(env.Stderr, "flagwarden verify: --team must be positive, --grace not negative, --max-problems at least 1, and no arguments")
		fs.Usage()
		return 2
	}
	cfg, err := loadConfig(*cfgPath, env)
	if err != nil {
		printConfigError(env.Stderr, err)
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "flagwarden verify: "+format+"\n", a...)
		return exitUnverified
	}
	pool, err := pgxpool.New(ctx, cfg.FlagDatabase.URL.Value())
	if err != nil {
		return fail("flag database: %v", err)
	}
	defer pool.Close()
	opt, err := redis.ParseURL(cfg.Cache.URL.Value())
	if err != nil {
		return fail("cache url: %v", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if *noS3 {
		cfg.Cache.S3.Enabled = false
	}
	tier, err := app.NewS3Tier(ctx, cfg, nil)
	if err != nil {
		return fail("%v", err)
	}
	v, err := app.NewVerifier(cfg, rebuild.NewPGSource(pool, nil), rdb, tier, *grace)
	if err != nil {
		return fail("%v", err)
	}

	tty := false
	if f, ok := env.Stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	rep := &verify.Report{StartedAt: time.Now().UTC(), MaxProblems: *maxProblems}
	// Problems print as they are found, so a long run shows them at once; the report
	// keeps only the counts and the first max-problems of them.
	show := func(checks []verify.Check) {
		if *asJSON {
			return
		}
		if tty {
			fmt.Fprint(env.Stdout, "\r\033[K")
		}
		for _, c := range checks {
			if c.Wrong() {
				fmt.Fprintln(env.Stdout, c.Line())
			}
		}
		if tty {
			fmt.Fprintf(env.Stdout, "\r checked %d team(s), %d problem(s)", rep.Teams, rep.ProblemCount)
		}
	}
	var passErr error
	if *team > 0 {
		checks, err := v.Team(ctx, *team)
		if errors.Is(err, rebuild.ErrUnknownTeam) {
			fmt.Fprintf(env.Stderr, "flagwarden verify: team %d does not exist in posthog_team\n", *team)
			return 2
		}
		passErr = err
		if err == nil {
			rep.Add(checks)
			show(checks)
		}
	} else {
		_, _, passErr = v.Pass(ctx, verify.NewPGTeams(pool, *every), 0, math.MaxInt, rep, show)
	}
	rep.FinishedAt = time.Now().UTC()
	if tty && !*asJSON {
		fmt.Fprint(env.Stdout, "\r\033[K")
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail("write report: %v", err)
		}
	} else {
		rep.WriteTable(env.Stdout)
		fmt.Fprintf(env.Stdout, "%d team(s) checked in %s (tiers: %v): %d problem(s), %d check(s) could not be made\n",
			rep.Teams, rep.FinishedAt.Sub(rep.StartedAt).Round(time.Millisecond), v.Tiers(), rep.ProblemCount-rep.Failures, rep.Failures)
	}
	switch {
	case rep.Wrong():
		if passErr != nil {
			fmt.Fprintf(env.Stderr, "flagwarden verify: stopped early: %v\n", passErr)
		}
		return exitWrongCaches
	case passErr != nil:
		return fail("stopped early: %v", passErr)
	case rep.Failures > 0:
		return exitUnverified
	}
	return 0
}
