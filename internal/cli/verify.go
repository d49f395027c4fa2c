package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/rebuild"
	"github.com/flagwarden/flagwarden/rebuild/verify"
)

// Exit codes of verify beyond the usual 0 and 2.
const (
	exitWrongCaches = 1 // some cache is missing, undecodable, stale, different or has a wrong :etag
	exitUnverified  = 3 // nothing wrong found, but some checks (or the pass) could not be made
)

func newVerifyCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify [--team N | --every-team] [-o table|json|yaml] [--grace D] [--no-s3] [--config FILE]",
		Short: "compare the published caches in Redis (and S3) with a fresh build from the flag database",
		Long: `Compare the published caches in Redis (and S3) with a fresh build from the flag database.
Exit codes: 0 all verified, 1 some cache is missing, undecodable, stale, different or has a
wrong :etag, 2 usage, 3 nothing wrong found but some checks could not be made.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	f := verifyFlags{
		cfgPath:     configFlag(fs, env),
		team:        teamFlag(fs, "check this team only (default: every team that has ever had a flag)"),
		every:       fs.Bool("every-team", false, "also check teams that never had a flag (their caches hold the empty shapes)"),
		out:         outputFlags(cmd, fs),
		grace:       fs.Duration("grace", 0, "leave teams whose flag data changed this recently unjudged (their rebuild may be on its way)"),
		noS3:        fs.Bool("no-s3", false, "check Redis only, even when cache.s3 is enabled"),
		maxProblems: fs.Int("max-problems", 1000, "problems the JSON report lists in full (all are counted)"),
	}
	cmd.MarkFlagsMutuallyExclusive("team", "every-team")
	cmd.RunE = runBody(func(ctx context.Context, _ []string) int { return runVerify(ctx, env, f) })
	return cmd
}

// verifyFlags are verify's flags.
type verifyFlags struct {
	cfgPath     *string
	team        *int64
	every, noS3 *bool
	out         *output
	grace       *time.Duration
	maxProblems *int
}

func runVerify(ctx context.Context, env Env, f verifyFlags) int {
	cfgPath, team, every, grace, noS3, maxProblems := f.cfgPath, f.team, f.every, f.grace, f.noS3, f.maxProblems
	format, err := f.out.Format()
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden verify: %v\n", err)
		return 2
	}
	asJSON := new(structured(format))
	if *grace < 0 || *maxProblems < 1 {
		fmt.Fprintln(env.Stderr, "flagwarden verify: --grace must not be negative and --max-problems at least 1")
		return 2
	}
	cfg, err := loadConfig(*cfgPath, env, config.FlagDatabaseServer, config.CacheServer)
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
	v, err := app.NewVerifier(cfg, app.NewFlagSource(pool), rdb, tier, *grace)
	if err != nil {
		return fail("%v", err)
	}

	rep := &verify.Report{StartedAt: time.Now().UTC(), MaxProblems: *maxProblems}
	var lister verify.TeamLister = verify.NewPGTeams(pool, *every)
	total := int64(1)
	if *team == 0 {
		// Counting the teams first (ids only, in pages) gives the bar its ETA.
		if total, err = countTeams(ctx, lister); err != nil {
			return fail("%v", err)
		}
	}
	p := env.newProgress("verify", "teams", total)
	defer p.Finish()
	colour := palette(env.colour(env.Stdout))
	// Problems print as they are found, so a long run shows them at once; the report
	// keeps only the counts and the first max-problems of them.
	show := func(checks []verify.Check) {
		p.Set(int64(rep.Teams))
		p.Describe(fmt.Sprintf("%d problem(s)", rep.ProblemCount))
		if *asJSON {
			return
		}
		for _, c := range checks {
			if c.Wrong() {
				p.Print(env.Stdout, "%s\n", colour.red(c.Line()))
			}
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
		_, _, passErr = v.Pass(ctx, lister, 0, math.MaxInt, rep, show)
	}
	rep.FinishedAt = time.Now().UTC()
	p.Finish()
	if *asJSON {
		if err := writeData(env.Stdout, format, rep); err != nil {
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

// countTeams counts the teams lister lists, reading ids only, a page at a time.
func countTeams(ctx context.Context, lister verify.TeamLister) (int64, error) {
	const page = 10000
	var n int64
	after := int64(0)
	for {
		ids, err := lister.TeamIDs(ctx, after, page)
		if err != nil {
			return 0, err
		}
		n += int64(len(ids))
		if len(ids) < page {
			return n, nil
		}
		after = ids[len(ids)-1]
	}
}
