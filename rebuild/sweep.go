package rebuild

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
)

// Sweep finds caches older than their data and requests rebuilds: the safety net for
// changes no intake saw. Run it on the leader only, through internal/loop.
type Sweep struct {
	src    StaleSource
	rdb    redis.UniversalClient
	layout cachekeys.Layout
	req    Requester
	// Limit bounds the teams one pass looks at.
	Limit int
	last  time.Time
}

// NewSweep returns a sweep; the first pass looks at every team with data.
func NewSweep(src StaleSource, rdb redis.UniversalClient, layout cachekeys.Layout, req Requester) *Sweep {
	return &Sweep{src: src, rdb: rdb, layout: layout, req: req, Limit: 100_000}
}

// RunOnce compares each recently changed team's data watermark with the watermark its
// caches were built from and requests a rebuild where a cache is behind or missing.
// It returns how many rebuilds it requested.
func (s *Sweep) RunOnce(ctx context.Context) (int, error) {
	started := time.Now()
	// Look back a little before the last pass so that clock skew loses nothing.
	since := s.last.Add(-time.Minute)
	if s.last.IsZero() {
		since = time.Time{}
	}
	changed, err := s.src.ChangedSince(ctx, since, s.Limit)
	if err != nil {
		return 0, err
	}
	ids := make([]int64, 0, len(changed))
	for id := range changed {
		ids = append(ids, id)
	}
	requested := 0
	for start := 0; start < len(ids); start += 1000 {
		batch := ids[start:min(start+1000, len(ids))]
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(batch)*len(cachekeys.Kinds))
		for i, id := range batch {
			for k, kind := range cachekeys.Kinds {
				cmds[i*len(cachekeys.Kinds)+k] = pipe.HMGet(ctx, s.layout.Meta(id, kind), "source_watermark")
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return requested, fmt.Errorf("read cache watermarks: %w", err)
		}
		for i, id := range batch {
			stale := false
			for k := range cachekeys.Kinds {
				v := cmds[i*len(cachekeys.Kinds)+k].Val()
				wm, _ := v[0].(string)
				t, err := time.Parse(time.RFC3339Nano, wm)
				if wm == "" || err != nil || t.Before(changed[id].Truncate(time.Microsecond)) {
					stale = true
				}
			}
			if !stale {
				continue
			}
			if _, err := s.req.Request(ctx, id, "sweep"); err != nil && !errors.Is(err, ErrUnknownTeam) {
				return requested, fmt.Errorf("request team %s: %w", strconv.FormatInt(id, 10), err)
			}
			requested++
		}
	}
	s.last = started
	return requested, nil
}
