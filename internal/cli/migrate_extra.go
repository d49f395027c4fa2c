package cli

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/rebuild"
)

// migrateExtra applies migrations owned by other components (River's, for the rebuild
// engine) after flagwarden's own.
func migrateExtra(ctx context.Context, pool *pgxpool.Pool) error {
	return rebuild.MigratePostgres(ctx, pool)
}
