package posthog

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema is the DDL of the PostHog tables flagwarden reads. It is idempotent.
//
//go:embed schema.sql
var Schema string

// ApplySchema creates the PostHog tables (if missing) in the database behind pool.
func ApplySchema(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("apply flag schema: %w", err)
	}
	return nil
}
