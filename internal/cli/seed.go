package cli

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
)

func newSeedCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seed --config FILE | --url URL [--teams N] [--giant-flags N] [--seed N] [--bad-data]",
		Short: "fill a Postgres with the PostHog flag schema and realistic test data",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	cfgPath := configFlag(fs, env)
	url := fs.String("url", "", "flag database `URL` (overrides flag_database.url from the config)")
	teams := fs.Int("teams", 1000, "ordinary teams to create")
	giant := fs.Int("giant-flags", 0, "also create one team with exactly this many flags (0: none)")
	seedN := fs.Int64("seed", 1, "random seed; the same seed gives the same data")
	share := fs.Float64("flag-team-share", 0.3, "share of teams that have flags")
	maxFlags := fs.Int("max-flags", 20000, "most flags an ordinary team gets")
	bad := fs.Bool("bad-data", false, "add bad rows: non-object filters, NULL filters, a cohort cycle")
	cmd.RunE = runBody(func(ctx context.Context, _ []string) int {
		dsn := *url
		if dsn == "" {
			cfg, err := loadConfig(*cfgPath, env, config.FlagDatabaseServer)
			if err != nil {
				printConfigError(env.Stderr, err)
				return 1
			}
			dsn = cfg.FlagDatabase.URL.Value()
		}
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden seed: connect: %v\n", err)
			return 1
		}
		defer pool.Close()
		// The seeder reports each table once it is loaded: the count is rows, the
		// total unknown until the end.
		p := env.newProgress("seed", "rows", 0)
		p.Describe("generating posthog_team")
		res, err := seed.Fleet(ctx, pool, seed.Options{
			Teams: *teams, Seed: *seedN, GiantFlags: *giant, FlagTeamShare: *share, MaxFlags: *maxFlags, BadData: *bad,
			Progress: func(table string, rows int64) {
				p.Print(env.Stderr, "loaded %-34s %d rows\n", table, rows)
				p.Describe("loaded " + table)
				p.Add(rows)
			},
		})
		p.Finish()
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden seed: %v\n", err)
			return 1
		}
		fmt.Fprintf(env.Stdout, "seeded %d teams (ids %d..%d), %d flags, %d cohorts in %s\n",
			res.Teams, res.FirstTeamID, max(res.LastTeamID, res.GiantTeamID), res.Flags, res.Cohorts, res.Elapsed.Round(1e6))
		if res.GiantTeamID != 0 {
			fmt.Fprintf(env.Stdout, "giant team: %d (%d flags)\n", res.GiantTeamID, *giant)
		}
		for team, kind := range res.BadTeams {
			fmt.Fprintf(env.Stdout, "bad data: team %d has %s\n", team, kind)
		}
		return 0
	})
	return cmd
}
