package rebuild

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// PGSource reads PostHog's tables in the flag database through internal/posthog's queries. It implements FlagSource,
// SizeSource and StaleSource.
type PGSource struct {
	pool *pgxpool.Pool
	// snapshots, if set, answers TeamSize from the team-size collector's last pass.
	snapshots *snapshot.Store
}

// NewPGSource returns a source over pool; snapshots may be nil.
func NewPGSource(pool *pgxpool.Pool, snapshots *snapshot.Store) *PGSource {
	return &PGSource{pool: pool, snapshots: snapshots}
}

var (
	_ FlagSource  = (*PGSource)(nil)
	_ SizeSource  = (*PGSource)(nil)
	_ StaleSource = (*PGSource)(nil)
)

// Team reads the team and the watermark of its flag data.
func (s *PGSource) Team(ctx context.Context, teamID int64) (TeamInfo, error) {
	return posthog.ReadTeam(ctx, s.pool, teamID)
}

// TeamSize answers from the collector's snapshot when it has the team, else with one
// count query (posthog.CountTeam).
func (s *PGSource) TeamSize(ctx context.Context, teamID int64) (snapshot.TeamSize, error) {
	if s.snapshots != nil {
		if ts, ok := s.snapshots.Team(teamID); ok {
			return ts, nil
		}
	}
	return posthog.CountTeam(ctx, s.pool, teamID)
}

// ChangedSince lists teams whose flags or cohorts changed after since.
func (s *PGSource) ChangedSince(ctx context.Context, since time.Time, limit int) (map[int64]time.Time, error) {
	return posthog.ChangedTeams(ctx, s.pool, since, limit)
}
