package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/statedb"
)

func newMigrateCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate [--config FILE]",
		Short: "apply flagwarden's own migrations to the state database",
		Args:  noArgs,
	}
	cfgPath := configFlag(cmd.Flags(), env)
	cmd.RunE = runBody(func(ctx context.Context, _ []string) int {
		cfg, err := loadConfig(*cfgPath, env, config.StateDatabaseServer)
		if err != nil {
			printConfigError(env.Stderr, err)
			return 1
		}
		pool, err := app.OpenDatabase(ctx, cfg.StateDatabase)
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden migrate: %v\n", err)
			return 1
		}
		defer pool.Close()
		applied, err := statedb.Migrate(ctx, pool)
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden migrate: %v\n", err)
			return 1
		}
		if err := migrateExtra(ctx, pool); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden migrate: %v\n", err)
			return 1
		}
		if len(applied) == 0 {
			fmt.Fprintln(env.Stdout, "state database is up to date")
			return 0
		}
		fmt.Fprintf(env.Stdout, "applied migrations %v\n", applied)
		return 0
	})
	return cmd
}
