package teams

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Source is where team sizes come from. posthog.TeamSizes reads a PostHog flag
// database; the demo supplies a simulated one.
type Source interface {
	// TeamIDBounds returns the lowest and highest team id; ok is false with no teams.
	TeamIDBounds(ctx context.Context) (lo, hi int64, ok bool, err error)
	// MeasureRange measures every team with lo <= id < hi that has flag data.
	MeasureRange(ctx context.Context, lo, hi int64) ([]snapshot.TeamSize, error)
	// MeasureTeams measures the given teams; teams without flag data are left out.
	MeasureTeams(ctx context.Context, ids []int64) ([]snapshot.TeamSize, error)
	// ChangedSince lists the teams with a flag or cohort created or updated at or after
	// since.
	ChangedSince(ctx context.Context, since time.Time) ([]int64, error)
}

var _ Source = (*posthog.TeamSizes)(nil)

// NewPostgres returns the source reading a PostHog flag database through pool; timeout
// bounds every statement (0: the pool's own statement_timeout).
func NewPostgres(pool *pgxpool.Pool, timeout time.Duration) *posthog.TeamSizes {
	return posthog.NewTeamSizes(pool, timeout)
}
