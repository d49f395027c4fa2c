package rebuild

import (
	"container/list"
	"maps"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"

	"github.com/flagwarden/flagwarden/rebuild/defaults"
)

// A team's next build finds the references its last build found, but for the flags
// changed since. So a builder keeps each team's last exact index, and the next build
// has the database extract the references of the changed flags only (every flag's is
// the first pass's costly part, about a quarter of a large team's build, nearly all of
// it database CPU) and predicts the last index with those flags replaced. The
// streaming pass checks the prediction against every row as it checks the first
// pass's; a wrong one (a cohort that only a changed flag named before, a flag the
// streaming pass rejects again) costs a second pass, after which the exact index is
// kept again. So the payloads are the same either way; only the time differs.

// DefaultPredictionCacheBytes bounds the indexes a builder keeps by default.
const DefaultPredictionCacheBytes = defaults.PredictionCache

type predictionKey struct {
	team     int64
	contract Contract
}

type prediction struct {
	key  predictionKey
	last lastBuild
	size int64
}

// predictionCache holds teams' last exact indexes, the least recently used going first
// beyond the byte budget. The indexes are never modified once stored, so builds share
// them without copying.
type predictionCache struct {
	mu     sync.Mutex
	budget int64
	used   int64
	order  *list.List // front: most recent
	byKey  map[predictionKey]*list.Element
}

func newPredictionCache(budget int64) *predictionCache {
	return &predictionCache{budget: budget, order: list.New(), byKey: map[predictionKey]*list.Element{}}
}

func (c *predictionCache) get(k predictionKey) *lastBuild {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return &e.Value.(*prediction).last
}

// put keeps b for k; an index larger than the whole budget is not kept.
func (c *predictionCache) put(k predictionKey, b lastBuild) {
	if c == nil {
		return
	}
	size := b.index.size()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		c.remove(e)
	}
	if size > c.budget {
		return
	}
	c.byKey[k] = c.order.PushFront(&prediction{key: k, last: b, size: size})
	c.used += size
	for c.used > c.budget {
		c.remove(c.order.Back())
	}
}

// forget drops k's index.
func (c *predictionCache) forget(k predictionKey) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		c.remove(e)
	}
}

// remove drops an entry; the caller holds mu.
func (c *predictionCache) remove(e *list.Element) {
	p := e.Value.(*prediction)
	c.order.Remove(e)
	delete(c.byKey, p.key)
	c.used -= p.size
}

// size estimates the index's memory: its slices' bytes and about 64 bytes per map
// entry, with the entries' strings.
func (x *teamIndex) size() int64 {
	n := int64(256)
	for _, s := range x.skip {
		n += 64 + int64(len(s.key)+len(s.code)+len(s.detail))
	}
	for _, d := range x.drop {
		n += 64 + int64(len(d))
	}
	n += 8 * int64(len(x.fjCohorts)+len(x.defCohortsAll)+len(x.defCohortsKept))
	t := &x.deps
	n += 8*int64(len(t.ids)) + int64(len(t.flags)) + 4*int64(len(t.keyEnd)+len(t.refEnd)+len(t.refLen)) +
		int64(len(t.keys)+len(t.refs))
	return n
}

// lastBuild is what a team's previous build leaves for its next: its exact index, and
// the newest change of any flag it saw.
type lastBuild struct {
	index   *teamIndex
	changed time.Time
}

// refreshed is x with the flags in changed (those changed since x was built, deleted
// ones included) replaced by fresh, the index of those flags alone as they are now.
// What a changed flag added (a cohort, a dependency) is exact; a cohort only it named
// before stays listed, and the streaming pass finds that and builds again.
func (x *teamIndex) refreshed(changed *roaring64.Bitmap, fresh *teamIndex) *teamIndex {
	out := &teamIndex{skip: replaced(x.skip, changed, fresh.skip), drop: replaced(x.drop, changed, fresh.drop)}
	out.fjCohorts = unionSorted(x.fjCohorts, fresh.fjCohorts)
	out.defCohortsAll = unionSorted(x.defCohortsAll, fresh.defCohortsAll)
	out.defCohortsKept = unionSorted(x.defCohortsKept, fresh.defCohortsKept)
	for i := range x.deps.len() {
		if !changed.Contains(uint64(x.deps.ids[i])) {
			out.deps.addFrom(&x.deps, i)
		}
	}
	for i := range fresh.deps.len() {
		out.deps.addFrom(&fresh.deps, i)
	}
	out.deps.sortByID()
	return out
}

// replaced is old without the changed flags' entries, plus fresh's.
func replaced[V any](old map[int64]V, changed *roaring64.Bitmap, fresh map[int64]V) map[int64]V {
	out := make(map[int64]V, len(old)+len(fresh))
	for id, v := range old {
		if !changed.Contains(uint64(id)) {
			out[id] = v
		}
	}
	maps.Copy(out, fresh)
	return out
}

// unionSorted merges two sorted lists of distinct ids into one.
func unionSorted(a, b []int64) []int64 {
	out := make([]int64, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			out, a = append(out, a[0]), a[1:]
		case a[0] > b[0]:
			out, b = append(out, b[0]), b[1:]
		default:
			out, a, b = append(out, a[0]), a[1:], b[1:]
		}
	}
	return append(append(out, a...), b...)
}
