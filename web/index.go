package web

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/rebuild"
)

// teamSortKeys are the orders GET /api/v1/teams accepts, each a comparison ascending.
var teamSortKeys = map[string]func(a, b snapshot.TeamSize) int{
	"payload_bytes": func(a, b snapshot.TeamSize) int { return cmp.Compare(a.PayloadBytes(), b.PayloadBytes()) },
	"flags":         func(a, b snapshot.TeamSize) int { return cmp.Compare(a.Flags, b.Flags) },
	"active_flags":  func(a, b snapshot.TeamSize) int { return cmp.Compare(a.ActiveFlags, b.ActiveFlags) },
	"cohorts":       func(a, b snapshot.TeamSize) int { return cmp.Compare(a.Cohorts, b.Cohorts) },
	"cohort_bytes":  func(a, b snapshot.TeamSize) int { return cmp.Compare(a.CohortBytes, b.CohortBytes) },
	"filters_bytes": func(a, b snapshot.TeamSize) int { return cmp.Compare(a.FiltersBytes, b.FiltersBytes) },
	"bad_rows":      func(a, b snapshot.TeamSize) int { return cmp.Compare(a.BadRows, b.BadRows) },
	"updated_at":    func(a, b snapshot.TeamSize) int { return a.UpdatedAt.Compare(b.UpdatedAt) },
	"team_id":       func(a, b snapshot.TeamSize) int { return 0 },
}

// teamIndex is one team snapshot sorted every way a client asked for, built lazily: with
// 250k teams a sort per request would cost more than the rest of the request together.
type teamIndex struct {
	at     time.Time
	n      int
	teams  map[int64]snapshot.TeamSize
	mu     sync.Mutex
	sorted map[string][]snapshot.TeamSize
}

// sortedBy returns the teams ascending by key, ties broken by team id.
func (ix *teamIndex) sortedBy(key string) []snapshot.TeamSize {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s, ok := ix.sorted[key]; ok {
		return s
	}
	less := teamSortKeys[key]
	s := make([]snapshot.TeamSize, 0, len(ix.teams))
	for id, t := range ix.teams {
		t.TeamID = cmp.Or(t.TeamID, id)
		s = append(s, t)
	}
	slices.SortFunc(s, func(a, b snapshot.TeamSize) int {
		return cmp.Or(less(a, b), cmp.Compare(a.TeamID, b.TeamID))
	})
	ix.sorted[key] = s
	return s
}

// teamIndexCache keeps the index of the latest team snapshot. A collector replaces the
// snapshot whole with a new time, so the time and count identify it.
type teamIndexCache struct {
	mu  sync.Mutex
	cur *teamIndex
}

func (c *teamIndexCache) get(t snapshot.Teams) *teamIndex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || !c.cur.at.Equal(t.At) || c.cur.n != len(t.Teams) {
		c.cur = &teamIndex{at: t.At, n: len(t.Teams), teams: t.Teams, sorted: map[string][]snapshot.TeamSize{}}
	}
	return c.cur
}

// cacheIndexCache groups the cache snapshot by team for the team page.
type cacheIndexCache struct {
	mu     sync.Mutex
	at     time.Time
	n      int
	byTeam map[int64][]snapshot.CacheState
}

func (c *cacheIndexCache) forTeam(s snapshot.Caches, team int64) []snapshot.CacheState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byTeam == nil || !c.at.Equal(s.At) || c.n != len(s.Teams) {
		c.byTeam = make(map[int64][]snapshot.CacheState)
		for _, cs := range s.Teams {
			c.byTeam[cs.TeamID] = append(c.byTeam[cs.TeamID], cs)
		}
		c.at, c.n = s.At, len(s.Teams)
	}
	return c.byTeam[team]
}

// decorations are the per-team marks the team list shows next to sizes: which teams are
// outliers and which are quarantined. They come from the detectors and the engine, whose
// answers are held for a second so that a page of teams costs no database round trip
// per request under load; a write through this API drops them at once.
type decorations struct {
	outliers    map[int64]detectors.Finding
	quarantined map[int64]rebuild.Quarantine
}

type decorationCache struct {
	ttl time.Duration
	// sem is held while one request fetches; others wait for it or their deadline.
	sem chan struct{}
	mu  sync.Mutex
	at  time.Time
	cur *decorations
	// gen counts invalidations, so that a fetch begun before a write never stores
	// what it read as current.
	gen int
}

func (c *decorationCache) invalidate() {
	c.mu.Lock()
	c.cur = nil
	c.gen++
	c.mu.Unlock()
}

func (c *decorationCache) fresh() *decorations {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && time.Since(c.at) < c.ttl {
		return c.cur
	}
	return nil
}

func (a *API) decorations(ctx context.Context) (*decorations, error) {
	c := &a.decor
	if d := c.fresh(); d != nil {
		return d, nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	if d := c.fresh(); d != nil {
		return d, nil
	}
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	d := &decorations{outliers: map[int64]detectors.Finding{}, quarantined: map[int64]rebuild.Quarantine{}}
	if a.opts.Findings != nil {
		active, err := a.opts.Findings.Active(ctx)
		if err != nil {
			return nil, err
		}
		for _, f := range active {
			if f.Kind != kindOutlierTeam {
				continue
			}
			if id, ok := findingTeam(f); ok {
				d.outliers[id] = f
			}
		}
	}
	if a.opts.Engine != nil {
		qs, err := a.opts.Engine.Quarantined(ctx)
		if err != nil {
			return nil, err
		}
		for _, q := range qs {
			d.quarantined[q.TeamID] = q
		}
	}
	c.mu.Lock()
	if c.gen == gen {
		c.cur, c.at = d, time.Now()
	}
	c.mu.Unlock()
	return d, nil
}

// kindOutlierTeam is the finding kind of a team far bigger than the rest.
const kindOutlierTeam = "outlier_team"

// findingTeam returns the team a finding is about, from its team label or, for the
// team kinds, its subject.
func findingTeam(f detectors.Finding) (int64, bool) {
	if v, ok := f.Labels["team"]; ok {
		if id, err := posthog.ParseTeamID(v); err == nil {
			return id, true
		}
	}
	if v, ok := f.Labels["team_id"]; ok {
		if id, err := posthog.ParseTeamID(v); err == nil {
			return id, true
		}
	}
	switch f.Kind {
	case kindOutlierTeam, "team_growth", "cache_stale", "team_quarantined":
		if id, err := posthog.ParseTeamID(f.Subject); err == nil {
			return id, true
		}
	}
	return 0, false
}
