package rebuild

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// depResolver answers, for the flags named by dependencies, whether they are in each
// payload and what their keys are. It holds only the dependency-bearing flags (the
// index) and the flags they name (heads), both in compact sorted tables.
type depResolver struct {
	c       Contract
	x       *teamIndex
	surveys []int64
	heads   headTable
	depKeys []int32 // deps indices sorted by key
}

// headTable is the flags dependencies name: sorted by id, with an index by key.
type headTable struct {
	ids    []int64
	flags  []uint8 // depActive, depEncrypted, depRemote
	keyEnd []uint32
	keys   []byte
	byKey  []int32
}

func (h *headTable) key(i int) string {
	start := uint32(0)
	if i > 0 {
		start = h.keyEnd[i-1]
	}
	return string(h.keys[start:h.keyEnd[i]])
}

func (h *headTable) findID(id int64) (int, bool) { return slices.BinarySearch(h.ids, id) }

func (h *headTable) findKey(key string) (int, bool) {
	k, ok := slices.BinarySearchFunc(h.byKey, key, func(i int32, key string) int { return strings.Compare(h.key(int(i)), key) })
	if !ok {
		return 0, false
	}
	return int(h.byKey[k]), true
}

func newDepResolver(ctx context.Context, rd TeamReader, c Contract, x *teamIndex, surveys []int64) (*depResolver, error) {
	r := &depResolver{c: c, x: x, surveys: surveys}
	n := x.deps.len()
	if n == 0 {
		return r, nil
	}
	r.depKeys = make([]int32, n)
	for i := range r.depKeys {
		r.depKeys[i] = int32(i)
	}
	slices.SortFunc(r.depKeys, func(a, b int32) int { return strings.Compare(x.deps.key(int(a)), x.deps.key(int(b))) })
	ids := map[int64]struct{}{}
	keys := map[string]struct{}{}
	for i := range n {
		ids[x.deps.ids[i]] = struct{}{} // the flag itself: its own membership counts too
		x.deps.eachRef(i, func(ref string) {
			keys[ref] = struct{}{}
			if id, ok := canonicalID(ref); ok {
				ids[id] = struct{}{}
			}
			if v, ok := pyIntString(ref); ok && v != noID {
				ids[v] = struct{}{}
			}
		})
	}
	idList := sortedKeys(ids)
	keyList := make([]string, 0, len(keys))
	for k := range keys {
		keyList = append(keyList, k)
	}
	clear(keys)
	slices.Sort(keyList)
	type head struct {
		id    int64
		key   string
		flags uint8
	}
	var hs []head
	err := rd.FlagHeads(ctx, idList, keyList, func(h *FlagHead) error {
		hs = append(hs, head{h.ID, h.Key, depFlags(h.Active, h.Encrypted, h.Remote)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(hs, func(a, b head) int { return cmp.Compare(a.id, b.id) })
	hs = slices.CompactFunc(hs, func(a, b head) bool { return a.id == b.id })
	for i, h := range hs {
		r.heads.ids = append(r.heads.ids, h.id)
		r.heads.flags = append(r.heads.flags, h.flags)
		r.heads.keys = append(r.heads.keys, h.key...)
		r.heads.keyEnd = append(r.heads.keyEnd, uint32(len(r.heads.keys)))
		r.heads.byKey = append(r.heads.byKey, int32(i))
	}
	slices.SortFunc(r.heads.byKey, func(a, b int32) int { return strings.Compare(r.heads.key(int(a)), r.heads.key(int(b))) })
	return r, nil
}

func depFlags(active, encrypted, remote bool) uint8 {
	var f uint8
	if active {
		f |= depActive
	}
	if encrypted {
		f |= depEncrypted
	}
	if remote {
		f |= depRemote
	}
	return f
}

func (r *depResolver) skipped(id int64) bool { _, ok := r.x.skip[id]; return ok }

// inFlags: flag id is in flags.json.
func (r *depResolver) inFlags(id int64) bool {
	i, ok := r.heads.findID(id)
	if !ok {
		return false
	}
	f := r.heads.flags[i]
	return r.c.inFlags(f&depActive != 0, f&depEncrypted != 0) && !r.skipped(id)
}

// inDefs: head i is in the definitions.
func (r *depResolver) inDefs(i int) bool {
	id, f := r.heads.ids[i], r.heads.flags[i]
	if !r.c.inDefinitions(f&depEncrypted != 0, f&depRemote != 0) || r.skipped(id) {
		return false
	}
	if _, ok := slices.BinarySearch(r.surveys, id); ok {
		return false
	}
	_, dropped := r.x.drop[id]
	return !dropped
}

// depByKey finds a dependency-bearing flag by key.
func (r *depResolver) depByKey(key string) (int, bool) {
	k, ok := slices.BinarySearchFunc(r.depKeys, key, func(i int32, key string) int { return strings.Compare(r.x.deps.key(int(i)), key) })
	if !ok {
		return 0, false
	}
	return int(r.depKeys[k]), true
}

// evalMeta is _compute_flag_dependencies for the flags that have dependencies; every
// other flag of flags.json is in stage 0 with no transitive dependencies.
type evalMeta struct {
	// stage per dependency-bearing flag (deps index): notInner for flags in stage 0,
	// cycle for those in (or behind) a cycle, else 1...
	stage []int32
	// known are each flag's dependencies inside flags.json: known[knownEnd[i-1]:knownEnd[i]].
	known    []int64
	knownEnd []uint32
	stages   [][]int64 // stages 1.. (stage 0 is streamed)
	missing  []int64
	r        *depResolver
}

const (
	notInner int32 = -2
	cycle    int32 = -1
)

func (m *evalMeta) knownOf(i int) []int64 {
	start := uint32(0)
	if i > 0 {
		start = m.knownEnd[i-1]
	}
	return m.known[start:m.knownEnd[i]]
}

func computeEvalMeta(r *depResolver) *evalMeta {
	t := &r.x.deps
	n := t.len()
	m := &evalMeta{stage: make([]int32, n), knownEnd: make([]uint32, n), r: r}
	hasMissing := make([]bool, n)
	var deps []int64
	for i := range n {
		m.stage[i] = notInner
		if t.flags[i]&depActive != 0 && r.inFlags(t.ids[i]) {
			deps = deps[:0]
			t.eachRef(i, func(ref string) {
				if d, ok := pyIntString(ref); ok && d != noID && !slices.Contains(deps, d) {
					deps = append(deps, d)
				}
			})
			for _, d := range deps {
				if r.inFlags(d) {
					m.known = append(m.known, d)
				} else {
					hasMissing[i] = true
				}
			}
		}
		m.knownEnd[i] = uint32(len(m.known))
		if len(m.knownOf(i)) > 0 {
			m.stage[i] = cycle // until Kahn's layering places it
		}
	}
	// Kahn's layering over the inner flags; every other flag is already in stage 0.
	indeg := make([]int32, n)
	var edges [][2]int32 // (dependency, dependent), both inner
	for i := range n {
		if m.stage[i] == notInner {
			continue
		}
		for _, d := range m.knownOf(i) {
			if j, ok := t.find(d); ok && m.stage[j] != notInner {
				indeg[i]++
				edges = append(edges, [2]int32{int32(j), int32(i)})
			}
		}
	}
	slices.SortFunc(edges, func(a, b [2]int32) int { return cmp.Compare(a[0], b[0]) })
	var layer []int
	for i := range n {
		if m.stage[i] != notInner && indeg[i] == 0 {
			layer = append(layer, i)
		}
	}
	for stage := int32(1); len(layer) > 0; stage++ {
		ids := make([]int64, len(layer))
		var next []int
		for k, i := range layer {
			ids[k] = t.ids[i]
			m.stage[i] = stage
			for _, d := range m.knownOf(i) {
				if j, ok := t.find(d); ok && hasMissing[j] {
					hasMissing[i] = true
				}
			}
		}
		for _, i := range layer {
			e, _ := slices.BinarySearchFunc(edges, int32(i), func(e [2]int32, i int32) int { return cmp.Compare(e[0], i) })
			for ; e < len(edges) && edges[e][0] == int32(i); e++ {
				dep := edges[e][1]
				if indeg[dep]--; indeg[dep] == 0 {
					next = append(next, int(dep))
				}
			}
		}
		m.stages = append(m.stages, ids) // layer is in id order: deps indices follow ids
		slices.Sort(next)
		layer = next
	}
	for i := range n {
		if m.stage[i] == cycle {
			hasMissing[i] = true
		}
		if hasMissing[i] {
			m.missing = append(m.missing, t.ids[i])
		}
	}
	return m
}

// cycled lists the flags whose dependencies never resolve.
func (m *evalMeta) cycled() []int64 {
	var out []int64
	for i, s := range m.stage {
		if s == cycle {
			out = append(out, m.r.x.deps.ids[i])
		}
	}
	return out
}

// isInner: the flag is not in stage 0.
func (m *evalMeta) isInner(id int64) bool {
	i, ok := m.r.x.deps.find(id)
	return ok && m.stage[i] != notInner
}

// appendTransitive prints a flag's transitive dependencies (sorted ids).
func (m *evalMeta) appendTransitive(dst []byte, id int64) []byte {
	t := &m.r.x.deps
	i, ok := t.find(id)
	if !ok || m.stage[i] < 1 {
		return append(dst, "[]"...)
	}
	seen := map[int64]struct{}{}
	stack := slices.Clone(m.knownOf(i))
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[d]; ok {
			continue
		}
		seen[d] = struct{}{}
		if j, ok := t.find(d); ok {
			stack = append(stack, m.knownOf(j)...)
		}
	}
	return appendIDList(dst, sortedKeys(seen))
}

func appendIDList(dst []byte, ids []int64) []byte {
	dst = append(dst, '[')
	for k, id := range ids {
		if k > 0 {
			dst = append(dst, ", "...)
		}
		dst = strconv.AppendInt(dst, id, 10)
	}
	return append(dst, ']')
}

// chainer computes the definitions' dependency_chain of a flag key: the keys a
// flag-property's target needs evaluated first, in topological order (a depth-first
// post-order), or [] for a missing target, a self-dependency or a cycle.
type chainer struct {
	r    *depResolver
	memo map[string][]byte
}

func newChainer(r *depResolver) *chainer { return &chainer{r: r, memo: map[string][]byte{}} }

// resolve is flag_id_to_key.get(ref, ref): an id of a definitions flag becomes its key.
func (ch *chainer) resolve(ref string) string {
	if id, ok := canonicalID(ref); ok {
		if i, ok := ch.r.heads.findID(id); ok && ch.r.inDefs(i) {
			return ch.r.heads.key(i)
		}
	}
	return ref
}

func (ch *chainer) exists(key string) bool {
	i, ok := ch.r.heads.findKey(key)
	return ok && ch.r.inDefs(i)
}

func (ch *chainer) deps(key string) []string {
	i, ok := ch.r.depByKey(key)
	if !ok {
		return nil
	}
	var out []string
	ch.r.x.deps.eachRef(i, func(ref string) { out = append(out, ch.resolve(ref)) })
	return out
}

// maxChainMemo bounds the memoized chains; past it the memo starts over.
const maxChainMemo = 1024

// chain returns the printed dependency_chain of key.
func (ch *chainer) chain(key string) []byte {
	if c, ok := ch.memo[key]; ok {
		return c
	}
	if len(ch.memo) >= maxChainMemo {
		clear(ch.memo)
	}
	var keys []string
	if ch.exists(key) && !slices.Contains(ch.deps(key), key) {
		visited, temp := map[string]bool{}, map[string]bool{}
		var dfs func(cur string) bool
		dfs = func(cur string) bool {
			if temp[cur] {
				return false
			}
			if visited[cur] {
				return true
			}
			temp[cur] = true
			if !ch.exists(cur) {
				return false
			}
			for _, d := range ch.deps(cur) {
				if d == cur {
					continue
				}
				if !ch.exists(d) || !dfs(d) {
					return false
				}
			}
			delete(temp, cur)
			visited[cur] = true
			keys = append(keys, cur)
			return true
		}
		if !dfs(key) {
			keys = nil
		}
	}
	out := []byte{'['}
	for k, s := range keys {
		if k > 0 {
			out = append(out, ", "...)
		}
		out = pyjson.AppendString(out, s)
	}
	out = append(out, ']')
	ch.memo[key] = out
	return out
}

// flagPropOverrides rewrites, in the definitions, each flag property's key from the
// referenced flag's id to its key and adds its dependency_chain
// (_apply_flag_dependency_transformation).
type flagPropOverrides struct {
	members map[pyjson.Node][]pyjson.Member
}

func (o *flagPropOverrides) Members(n pyjson.Node) []pyjson.Member { return o.members[n] }

// build fills the overrides for one flag's filters; false when it has no flag
// properties.
func (o *flagPropOverrides) build(root pyjson.Node, ch *chainer) bool {
	clear(o.members)
	eachConditionProperty(root, func(p pyjson.Node) {
		if !p.Get("type").Equal("flag") {
			return
		}
		ref, _ := p.Get("key").Str()
		key := ch.resolve(ref)
		if o.members == nil {
			o.members = map[pyjson.Node][]pyjson.Member{}
		}
		o.members[p] = []pyjson.Member{
			{Key: "dependency_chain", Value: ch.chain(key)},
			{Key: "key", Value: pyjson.AppendString(nil, key)},
		}
	})
	return len(o.members) > 0
}

// eachConditionProperty walks filters.groups[*].properties[*] as PostHog's reference
// readers do ((groups or []), (properties or [])), calling fn for each property object.
func eachConditionProperty(root pyjson.Node, fn func(pyjson.Node)) {
	root.Get("groups").Elems(func(g pyjson.Node) bool {
		g.Get("properties").Elems(func(p pyjson.Node) bool {
			if p.Kind() == pyjson.Object {
				fn(p)
			}
			return true
		})
		return true
	})
}
