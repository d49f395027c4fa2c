package cli

import (
	"context"
	"fmt"

	"github.com/flagwarden/flagwarden/internal/statedb"
)

func runMigrate(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet("migrate", env, "migrate [--config FILE]")
	cfgPath := configFlag(fs, env)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(*cfgPath, env)
	if err != nil {
		printConfigError(env.Stderr, err)
		return 1
	}
	pool, err := statedb.Open(ctx, cfg.StateDatabase)
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
}
