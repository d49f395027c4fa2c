package rebuild

import (
	"container/list"
	"sync"

	"github.com/flagwarden/flagwarden/rebuild/defaults"
)

// A team's next build usually finds the references its last build found: a flag
// change seldom adds or removes a cohort or flag condition. So a builder keeps each
// team's last exact index and the next build predicts from it instead of asking the
// database to extract every flag's references (the first pass's costly part, about a
// quarter of a large team's build, nearly all of it database CPU). The streaming pass
// checks the prediction against every row as it checks the first pass's; a wrong one
// costs a second pass, after which the exact index is kept again. So the payloads are
// the same either way, and only the time differs.

// DefaultPredictionCacheBytes bounds the indexes a builder keeps by default.
const DefaultPredictionCacheBytes = defaults.PredictionCache

type predictionKey struct {
	team     int64
	contract Contract
}

type prediction struct {
	key   predictionKey
	index *teamIndex
	size  int64
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

func (c *predictionCache) get(k predictionKey) *teamIndex {
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
	return e.Value.(*prediction).index
}

// put keeps x for k; an index larger than the whole budget is not kept.
func (c *predictionCache) put(k predictionKey, x *teamIndex) {
	if c == nil {
		return
	}
	size := x.size()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		c.used -= e.Value.(*prediction).size
		c.order.Remove(e)
		delete(c.byKey, k)
	}
	if size > c.budget {
		return
	}
	c.byKey[k] = c.order.PushFront(&prediction{key: k, index: x, size: size})
	c.used += size
	for c.used > c.budget {
		last := c.order.Back()
		p := last.Value.(*prediction)
		c.order.Remove(last)
		delete(c.byKey, p.key)
		c.used -= p.size
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
		c.used -= e.Value.(*prediction).size
		c.order.Remove(e)
		delete(c.byKey, k)
	}
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
