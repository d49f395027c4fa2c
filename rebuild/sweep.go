package rebuild

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Sweep finds caches older than their data, or missing, and requests rebuilds: the
// safety net for changes no intake saw and for caches that vanished (a cache Redis
// restarted empty, evicted keys). Run it on the leader only, through internal/loop.
//
// A pass costs one query for the teams changed since the previous pass, the build
// index (one sorted set per kind) and the team list the team-size collector already
// holds; it never scans the cache Redis's keys.
type Sweep struct {
	src    StaleSource
	rdb    redis.UniversalClient
	layout cachekeys.Layout
	req    Requester
	// Limit bounds the teams one pass looks at.
	Limit int
	// Teams is the team list: the team-size collector's latest snapshot. With it a
	// pass also finds, among teams whose data did not change, caches missing from the
	// build index and caches built before the team's last change.
	Teams func() snapshot.Teams
	// Caches is the cache-freshness collector's latest look. With it a pass also
	// rebuilds caches still indexed but gone (an evicted payload).
	Caches func() snapshot.Caches
	// Quarantined, if set, lists the quarantined teams: their missing or older caches
	// are left to the quarantine (a change of their data, or the release, requests
	// them), so that a team whose build cannot succeed is not retried every pass.
	Quarantined func(context.Context) ([]Quarantine, error)
	// Clock is the clock the builds were stamped with and the data changes carry
	// (the demo's simulated one); default the wall clock.
	Clock clock.Clock
	last  time.Time
}

// NewSweep returns a sweep; the first pass looks at every team with data.
func NewSweep(src StaleSource, rdb redis.UniversalClient, layout cachekeys.Layout, req Requester) *Sweep {
	return &Sweep{src: src, rdb: rdb, layout: layout, req: req, Limit: 100_000}
}

// clockSkew is how far apart the flag database's clock and this process's may be:
// the changed-team query looks back that far, and a build is older than its data
// only when it is that much older, so that skew neither loses a change nor rebuilds a
// team on every pass.
const clockSkew = time.Minute

// SweepResult says what one pass requested, by why.
type SweepResult struct {
	// Changed are teams whose data changed after their caches' watermark.
	Changed int
	// Missing are teams with flag data and a cache absent from the index or gone.
	Missing int
	// Older are teams whose index entry is older than their last change.
	Older int
}

// Requested is how many rebuilds the pass requested.
func (r SweepResult) Requested() int { return r.Changed + r.Missing + r.Older }

// RunOnce requests a rebuild of every team whose caches are behind its data or
// missing, and returns how many rebuilds it requested.
func (s *Sweep) RunOnce(ctx context.Context) (int, error) {
	res, err := s.Run(ctx)
	return res.Requested(), err
}

// Run is RunOnce with the reasons counted.
func (s *Sweep) Run(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	started := clock.Or(s.Clock).Now()
	stale, err := s.changed(ctx)
	if err != nil {
		return res, err
	}
	why := make(map[int64]string, len(stale))
	for _, id := range stale {
		why[id] = "sweep: changed"
	}
	res.Changed = len(stale)
	held := map[int64]bool{} // marked seen so that the other paths skip them
	if s.Quarantined != nil && (s.Teams != nil || s.Caches != nil) {
		qs, err := s.Quarantined(ctx)
		if err != nil {
			return res, err
		}
		for _, q := range qs {
			if _, ok := why[q.TeamID]; !ok {
				why[q.TeamID], held[q.TeamID] = "", true
			}
		}
	}
	if s.Teams != nil {
		missing, older, err := s.fromIndex(ctx, s.Teams(), why)
		if err != nil {
			return res, err
		}
		res.Missing, res.Older = missing, older
	}
	if s.Caches != nil {
		// A look taken before the previous pass was acted on by that pass.
		if c := s.Caches(); c.At.After(s.last) {
			for _, cs := range c.Teams {
				if _, seen := why[cs.TeamID]; !seen && cs.Missing && cs.Source != "posthog" {
					why[cs.TeamID] = "sweep: missing"
					res.Missing++
				}
			}
		}
	}
	ids := make([]int64, 0, len(why))
	for id := range why {
		if !held[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		if _, err := s.req.Request(ctx, id, why[id]); err != nil && !errors.Is(err, ErrUnknownTeam) {
			return res, fmt.Errorf("request team %d: %w", id, err)
		}
	}
	s.last = started
	return res, nil
}

// changed returns the recently changed teams whose caches' source watermark is behind
// the change (or that have no cache).
func (s *Sweep) changed(ctx context.Context) ([]int64, error) {
	since := time.Time{} // the first pass looks at every team with data
	if !s.last.IsZero() {
		since = s.last.Add(-clockSkew)
	}
	changed, err := s.src.ChangedSince(ctx, since, s.Limit)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(changed))
	for id := range changed {
		ids = append(ids, id)
	}
	var stale []int64
	for batch := range slices.Chunk(ids, 1000) {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(batch)*len(cachekeys.Kinds))
		for i, id := range batch {
			for k, kind := range cachekeys.Kinds {
				cmds[i*len(cachekeys.Kinds)+k] = pipe.HMGet(ctx, s.layout.Meta(id, kind), "source_watermark")
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read cache watermarks: %w", err)
		}
		for i, id := range batch {
			for k := range cachekeys.Kinds {
				wm, _ := cmds[i*len(cachekeys.Kinds)+k].Val()[0].(string)
				t, err := time.Parse(time.RFC3339Nano, wm)
				if wm == "" || err != nil || t.Before(changed[id].Truncate(time.Microsecond)) {
					stale = append(stale, id)
					break
				}
			}
		}
	}
	return stale, nil
}

// fromIndex adds to why the teams of the list that need a cache of some kind and have
// none in the build index, or one built before their last change; it returns how
// many of each it added.
func (s *Sweep) fromIndex(ctx context.Context, teams snapshot.Teams, why map[int64]string) (missing, older int, err error) {
	if len(teams.Teams) == 0 {
		return 0, 0, nil
	}
	for _, kind := range cachekeys.Kinds {
		built := make(map[int64]time.Time, len(teams.Teams))
		for offset := int64(0); ; {
			const page = 10000
			entries, err := cachekeys.ReadIndex(ctx, s.rdb, s.layout, kind, offset, page)
			if err != nil {
				return missing, older, err
			}
			for _, e := range entries {
				built[e.TeamID] = e.BuiltAt
			}
			if len(entries) < page {
				break
			}
			offset += page
		}
		for id, t := range teams.Teams {
			if _, seen := why[id]; seen || !kind.Needed(t.ActiveFlags, t.Flags-t.DeletedFlags) {
				continue
			}
			at, ok := built[id]
			switch {
			case !ok:
				why[id] = "sweep: missing"
				missing++
			case at.Add(clockSkew).Before(t.UpdatedAt):
				why[id] = "sweep: older than its data"
				older++
			}
		}
	}
	return missing, older, nil
}
