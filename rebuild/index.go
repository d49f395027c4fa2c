package rebuild

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// teamIndex is what a build must know before it writes the first byte, because sorted
// keys put cohorts and evaluation metadata ahead of the flags: which flags are left
// out, which cohorts the flags name, and the flags that depend on other flags. Only
// those are held; every other flag is streamed from the database.
//
// The first attempt's index is a prediction from a cheap first pass (the database
// extracts the flag and cohort properties; filters are not transferred). The streaming
// pass computes the exact index from every row it reads; when the two differ (a flag
// the Rust reader would reject, say), the attempt is discarded and the build runs
// again on the same snapshot with the exact index, so the payloads are always
// consistent.
type teamIndex struct {
	// skip are flags left out of both payloads, with why.
	skip map[int64]skipInfo
	// drop are flags PostHog's serializer leaves out of the definitions (a cohort
	// reference int() refuses, properties that are null, a cohort definition that
	// cannot be parsed), with why.
	drop map[int64]string
	// fjCohorts are the cohorts the active flags of flags.json name directly.
	fjCohorts []int64
	// defCohortsAll are the cohorts the definitions' flags name directly (dropped flags
	// included, for the walk that finds broken cohorts); defCohortsKept those of the
	// flags that stay.
	defCohortsAll, defCohortsKept []int64
	// deps are the flags holding flag properties, sorted by id.
	deps depTable
}

type skipInfo struct {
	key, code, detail string
}

func newIndex() *teamIndex {
	return &teamIndex{skip: map[int64]skipInfo{}, drop: map[int64]string{}}
}

// sameAs reports whether two indexes lead to the same payloads.
func (x *teamIndex) sameAs(y *teamIndex) bool {
	return sameKeys(x.skip, y.skip) && sameKeys(x.drop, y.drop) && slices.Equal(x.fjCohorts, y.fjCohorts) &&
		slices.Equal(x.defCohortsAll, y.defCohortsAll) && slices.Equal(x.defCohortsKept, y.defCohortsKept) &&
		x.deps.equal(&y.deps)
}

func sameKeys[V any](a, b map[int64]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// depTable holds the flags with flag properties compactly: a team of a million flags
// with tens of thousands of dependencies stays within a few MiB.
type depTable struct {
	ids    []int64
	flags  []uint8 // depActive, depEncrypted, depRemote
	keyEnd []uint32
	keys   []byte
	refEnd []uint32 // end of this flag's refs in refLen
	refLen []uint32 // end offset of each ref in refs
	refs   []byte
}

const (
	depActive uint8 = 1 << iota
	depEncrypted
	depRemote
)

// add appends a flag; ids must arrive in increasing order (sort afterwards otherwise).
func (t *depTable) add(id int64, key string, flags uint8, refs []string) {
	t.ids = append(t.ids, id)
	t.flags = append(t.flags, flags)
	t.keys = append(t.keys, key...)
	t.keyEnd = append(t.keyEnd, uint32(len(t.keys)))
	for _, r := range refs {
		t.refs = append(t.refs, r...)
		t.refLen = append(t.refLen, uint32(len(t.refs)))
	}
	t.refEnd = append(t.refEnd, uint32(len(t.refLen)))
}

func (t *depTable) len() int { return len(t.ids) }

func (t *depTable) key(i int) string {
	start := uint32(0)
	if i > 0 {
		start = t.keyEnd[i-1]
	}
	return string(t.keys[start:t.keyEnd[i]])
}

// eachRef calls fn with flag i's flag-property keys, in document order.
func (t *depTable) eachRef(i int, fn func(string)) {
	first := uint32(0)
	if i > 0 {
		first = t.refEnd[i-1]
	}
	for j := first; j < t.refEnd[i]; j++ {
		start := uint32(0)
		if j > 0 {
			start = t.refLen[j-1]
		}
		fn(string(t.refs[start:t.refLen[j]]))
	}
}

func (t *depTable) find(id int64) (int, bool) { return slices.BinarySearch(t.ids, id) }

// entryEquals compares flag i with the given values.
func (t *depTable) entryEquals(i int, key string, flags uint8, refs []string) bool {
	if t.flags[i] != flags || t.key(i) != key {
		return false
	}
	k, same := 0, true
	t.eachRef(i, func(r string) {
		if k >= len(refs) || refs[k] != r {
			same = false
		}
		k++
	})
	return same && k == len(refs)
}

// sortByID orders a table filled in any order.
func (t *depTable) sortByID() {
	if slices.IsSorted(t.ids) {
		return
	}
	idx := make([]int, len(t.ids))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return t.ids[idx[a]] < t.ids[idx[b]] })
	var out depTable
	for _, i := range idx {
		out.addFrom(t, i)
	}
	*t = out
}

// addFrom appends u's entry i, under add's rule on the order of ids.
func (t *depTable) addFrom(u *depTable, i int) {
	var refs []string
	u.eachRef(i, func(r string) { refs = append(refs, r) })
	t.add(u.ids[i], u.key(i), u.flags[i], refs)
}

func (t *depTable) equal(u *depTable) bool {
	return slices.Equal(t.ids, u.ids) && slices.Equal(t.flags, u.flags) && slices.Equal(t.keyEnd, u.keyEnd) &&
		slices.Equal(t.keys, u.keys) && slices.Equal(t.refEnd, u.refEnd) && slices.Equal(t.refLen, u.refLen) &&
		slices.Equal(t.refs, u.refs)
}

// flagRefs are what one flag's release conditions reference, read with PostHog's
// Python semantics from the list of its flag and cohort properties.
type flagRefs struct {
	flagKeys  []string // flag properties' keys, in order
	badKey    string   // a flag property key that is not a string (the Rust reader refuses it)
	cohorts   []int64  // cohort ids int() accepts
	badCohort string   // a cohort value int() refuses (PostHog drops the flag from the definitions)
}

func (r *flagRefs) reset() {
	r.flagKeys, r.cohorts, r.badKey, r.badCohort = r.flagKeys[:0], r.cohorts[:0], "", ""
}

// readRefs reads properties (flag and cohort ones; others are ignored) into r.
func readRefs(props []pyjson.Node, r *flagRefs) {
	var m [3]pyjson.Node
	for _, p := range props {
		p.Lookup(refFields, m[:])
		switch t := m[0]; {
		case t.Equal("flag"):
			k := m[1]
			if s, ok := k.Str(); ok {
				r.flagKeys = append(r.flagKeys, s)
			} else if r.badKey == "" {
				r.badKey = "(none)"
				if k.Valid() {
					r.badKey = string(k.Raw())
				}
			}
		case t.Equal("cohort"):
			v := m[2]
			if id, ok := pyInt(v); ok {
				if id != noID {
					r.cohorts = append(r.cohorts, id)
				}
			} else if r.badCohort == "" {
				r.badCohort = "(none)"
				if v.Valid() {
					r.badCohort = string(v.Raw())
				}
			}
		}
	}
}

var refFields = []string{"type", "key", "value"}

// canonicalID is str(id) for a positive id, the only form flag_id_to_key matches.
func canonicalID(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || strconv.FormatInt(v, 10) != s {
		return 0, false
	}
	return v, true
}

// indexer accumulates an index from flags, in the first pass or the streaming one.
type indexer struct {
	c       Contract
	surveys []int64 // sorted
	x       *teamIndex
	fj, all map[int64]struct{}
	kept    map[int64]struct{}
	// prior, in the streaming pass, is the index the attempt writes with: dependency
	// entries equal to its own are only ticked off (matched), so that a correct
	// prediction costs no second copy; the others go to extra.
	prior    *teamIndex
	matched  []bool
	nMatched int
	extra    depTable
}

func newIndexer(c Contract, surveys []int64, prior *teamIndex) *indexer {
	ix := &indexer{c: c, surveys: surveys, x: newIndex(), fj: map[int64]struct{}{}, all: map[int64]struct{}{},
		kept: map[int64]struct{}{}, prior: prior}
	if prior != nil {
		ix.matched = make([]bool, prior.deps.len())
	}
	return ix
}

func (ix *indexer) survey(id int64) bool { _, ok := slices.BinarySearch(ix.surveys, id); return ok }

// inFlags: the flag belongs in flags.json (skip aside).
func (c Contract) inFlags(active, encrypted bool) bool {
	if c.flagsActiveOnly() && !active {
		return false
	}
	return !c.excludeEncryptedEverywhere() || !encrypted
}

// inDefinitions: the flag belongs in the definitions (skip, drop and surveys aside).
func (c Contract) inDefinitions(encrypted, remote bool) bool {
	if c.excludeEncryptedEverywhere() {
		return !encrypted
	}
	return !remote || !encrypted
}

// addFlag records one flag's references. skipped and dropped say what the caller
// decided for it (dropReason is the definitions drop, "" for none).
func (ix *indexer) addFlag(id int64, key string, active, encrypted, remote bool, r *flagRefs, skipped bool, dropReason string) {
	if skipped {
		return
	}
	if len(r.flagKeys) > 0 {
		f := depFlags(active, encrypted, remote)
		switch i, ok := ix.priorDep(id); {
		case ix.prior == nil:
			ix.x.deps.add(id, key, f, r.flagKeys)
		case ok && !ix.matched[i] && ix.prior.deps.entryEquals(i, key, f, r.flagKeys):
			ix.matched[i] = true
			ix.nMatched++
		default:
			ix.extra.add(id, key, f, r.flagKeys)
		}
	}
	if ix.c.flagsWrapped() && active && ix.c.inFlags(active, encrypted) {
		for _, c := range r.cohorts {
			ix.fj[c] = struct{}{}
		}
	}
	if !ix.c.inDefinitions(encrypted, remote) || ix.survey(id) {
		return
	}
	if dropReason != "" {
		ix.x.drop[id] = dropReason
		if r.badCohort != "" || dropReason == dropNullProperties {
			return // get_cohort_ids raised before naming any cohort
		}
		for _, c := range r.cohorts {
			ix.all[c] = struct{}{}
		}
		return
	}
	for _, c := range r.cohorts {
		ix.all[c] = struct{}{}
		ix.kept[c] = struct{}{}
	}
}

func (ix *indexer) priorDep(id int64) (int, bool) {
	if ix.prior == nil {
		return 0, false
	}
	return ix.prior.deps.find(id)
}

func (ix *indexer) finish() *teamIndex {
	ix.x.fjCohorts = sortedKeys(ix.fj)
	ix.x.defCohortsAll = sortedKeys(ix.all)
	ix.x.defCohortsKept = sortedKeys(ix.kept)
	if ix.prior != nil {
		p := &ix.prior.deps
		if ix.extra.len() == 0 && ix.nMatched == p.len() {
			ix.x.deps = *p
			return ix.x
		}
		for i := range p.len() {
			if ix.matched[i] {
				ix.x.deps.addFrom(p, i)
			}
		}
		for i := range ix.extra.len() {
			ix.x.deps.addFrom(&ix.extra, i)
		}
	}
	ix.x.deps.sortByID()
	return ix.x
}

func sortedKeys(m map[int64]struct{}) []int64 { return slices.Sorted(maps.Keys(m)) }

// Definitions drop reasons that decide which cohorts the dropped flag names.
const dropNullProperties = "a condition group's properties are null (PostHog's get_cohort_ids raises)"

// predict builds the first attempt's index from the source's reference rows: no
// filters are read, so flags the Rust reader would reject and flags dropped for a
// broken cohort are learnt in the streaming pass. Given the team's last build (the
// reader then extracts the references of the flags changed since it only), it
// predicts that build's exact index with those flags replaced by what they are now.
// It also collects the ids evaluation_metadata lists, as long as they fit their budget,
// and the newest change of any flag, deleted ones included.
func predict(ctx context.Context, rd TeamReader, c Contract, surveys []int64, last *lastBuild) (*teamIndex, *idSet, time.Time, error) {
	ix := newIndexer(c, surveys, nil)
	var since time.Time
	var changedIDs *roaring64.Bitmap // the flags changed since the last build, deleted ones too
	if last != nil {
		since, changedIDs = last.changed, roaring64.New()
	}
	ids := newIDSet()
	filter := c.idFilter()
	var changed time.Time
	var doc pyjson.Doc
	var props []pyjson.Node
	var r flagRefs
	err := rd.References(ctx, func(row *RefRow) error {
		if row.Changed.After(changed) {
			changed = row.Changed
		}
		if last != nil && row.Changed.After(since) {
			changedIDs.Add(uint64(row.ID))
		}
		if row.Deleted {
			return nil
		}
		if (!filter.ActiveOnly || row.Active) && (!filter.ExcludeEncrypted || !row.Encrypted) {
			ids.add(row.ID)
		}
		if row.Refs == nil {
			return nil
		}
		if err := doc.Parse(row.Refs); err != nil {
			return fmt.Errorf("flag %d: references from the source: %w", row.ID, err)
		}
		props = props[:0]
		doc.Root().Elems(func(p pyjson.Node) bool { props = append(props, p); return true })
		r.reset()
		readRefs(props, &r)
		skipped := false
		if r.badKey != "" {
			ix.x.skip[row.ID] = skipInfo{key: row.Key, code: SkipShape, detail: "a flag property key " + r.badKey + " is not a string"}
			skipped = true
		}
		drop := ""
		if r.badCohort != "" {
			drop = "cohort value " + r.badCohort + " is not an id int() accepts"
		}
		ix.addFlag(row.ID, row.Key, row.Active, row.Encrypted, row.Remote, &r, skipped, drop)
		return nil
	})
	if err != nil {
		return nil, nil, changed, err
	}
	switch {
	case last == nil:
		return ix.finish(), ids, changed, nil
	case changedIDs.IsEmpty():
		return last.index, ids, changed, nil
	default:
		return last.index.refreshed(changedIDs, ix.finish()), ids, changed, nil
	}
}
