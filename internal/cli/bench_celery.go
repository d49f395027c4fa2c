package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/flagwarden/flagwarden/internal/dedupbench"
)

// benchDedupCelery is bench dedup --intake celery: the burst through real Celery and
// the consumer, beside the in-process figure.
func benchDedupCelery(ctx context.Context, env Env, dsn string, requests, teams int, coalesce time.Duration, format string) int {
	rs, err := dedupbench.Run(ctx, dedupbench.Options{DSN: dsn, Requests: requests, Teams: teams, CoalesceDelay: coalesce, Log: env.Stderr})
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden bench dedup: %v\n", err)
		return 1
	}
	if structured(format) {
		if err := writeData(env.Stdout, format, rs); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden bench dedup: %v\n", err)
			return 1
		}
		return 0
	}
	dedupbench.Write(env.Stdout, rs, false)
	return 0
}
