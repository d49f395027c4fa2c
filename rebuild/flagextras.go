package rebuild

import (
	"context"
	"fmt"
	"math"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/jackc/pgx/v5"

	"github.com/flagwarden/flagwarden/internal/posthog"
)

// flagExtrasBudget bounds the bitmaps of one build's flagExtras, in bytes. A quarter
// of a million tagged flags take a few hundred KiB; a team beyond the budget has its
// tags and experiments read per flag by the streaming query instead. (A variable so
// that tests can force the fallback.)
var flagExtrasBudget uint64 = 1 << 20

// maxExtraTagNames bounds the distinct tag names flagExtras holds: every tagged flag
// is looked up in one bitmap per name.
const maxExtraTagNames = 32

// unionAbove is how many tag names a flag is looked up in before one more bitmap, of
// every tagged flag, is worth its memory: a lookup costs tens of nanoseconds, and a
// bitmap of a quarter of a million flags a few hundred KiB.
const unionAbove = 4

// flagExtras are a team's evaluation tags and experiment flags, read by two joins on
// the flags' ids before the streaming pass. The streaming query would otherwise probe
// both tables once per flag in key order, which costs the database more than reading
// the flags' filters does; the joins cost it a few percent of that.
type flagExtras struct {
	tagged *roaring.Bitmap   // flags with a tag, when there are more than unionAbove names
	names  []string          // the tag names, in the order the database sorts them
	byName []*roaring.Bitmap // the flags with names[i]
	exps   *roaring.Bitmap   // flags a live experiment uses
}

// tags appends the flag's tag names to dst in the database's order.
func (x *flagExtras) tags(id int64, dst []string) []string {
	if id < 1 || id > math.MaxUint32 || x.tagged != nil && !x.tagged.Contains(uint32(id)) {
		return dst
	}
	for i, bm := range x.byName {
		if bm.Contains(uint32(id)) {
			dst = append(dst, x.names[i])
		}
	}
	return dst
}

// experiment reports whether a live experiment uses the flag.
func (x *flagExtras) experiment(id int64) bool {
	return id >= 1 && id <= math.MaxUint32 && x.exps.Contains(uint32(id))
}

// bitmaps are every bitmap the extras hold.
func (x *flagExtras) bitmaps() []*roaring.Bitmap {
	all := append([]*roaring.Bitmap{x.exps}, x.byName...)
	if x.tagged != nil {
		all = append(all, x.tagged)
	}
	return all
}

func (x *flagExtras) size() uint64 {
	var n uint64
	for _, bm := range x.bitmaps() {
		n += bm.GetSizeInBytes()
	}
	return n
}

// fits shrinks the bitmaps into runs when they outgrow the budget and reports whether
// they then fit.
func (x *flagExtras) fits() bool {
	if x.size() <= flagExtrasBudget {
		return true
	}
	for _, bm := range x.bitmaps() {
		bm.RunOptimize()
	}
	return x.size() <= flagExtrasBudget
}

// extrasCollector gathers flagExtras as (flag id, tag name) pairs and experiment flags
// arrive, from the tag join or along the first pass, until they outgrow the bitmaps.
type extrasCollector struct {
	x     *flagExtras
	index map[string]int // name → its bitmap in x.byName, until the database orders them
	added int
	full  bool // too many names, an id beyond int4, or over budget: read per flag instead
}

func newExtrasCollector() *extrasCollector {
	return &extrasCollector{x: &flagExtras{exps: roaring.New()}, index: map[string]int{}}
}

// inRange reports whether id fits the bitmaps (int4 keys, as the schema's ids are).
func (c *extrasCollector) inRange(id int64) bool {
	if id < 1 || id > math.MaxInt32 {
		c.full = true
	}
	return !c.full
}

// counted checks the budget every few thousand additions.
func (c *extrasCollector) counted() bool {
	if c.added++; c.added%4096 == 0 && !c.x.fits() {
		c.full = true
	}
	return !c.full
}

// tag records that flag id has the tag name; false once the extras gave up.
func (c *extrasCollector) tag(id int64, name []byte) bool {
	if !c.inRange(id) {
		return false
	}
	i, ok := c.index[string(name)]
	if !ok {
		if len(c.x.byName) == maxExtraTagNames {
			c.full = true
			return false
		}
		i = len(c.x.byName)
		c.index[string(name)] = i
		c.x.byName = append(c.x.byName, roaring.New())
	}
	c.x.byName[i].Add(uint32(id))
	return c.counted()
}

// experiment records a flag a live experiment uses; false once the extras gave up.
func (c *extrasCollector) experiment(id int64) bool {
	if !c.inRange(id) {
		return false
	}
	c.x.exps.Add(uint32(id))
	return c.counted()
}

// readFlagExtras reads the team's tags and experiment flags into bitmaps, or returns nil
// when they do not fit them (too many distinct names, ids beyond int4, over budget): the
// streaming query then reads them per flag.
func (r *pgReader) readFlagExtras(ctx context.Context) (*flagExtras, error) {
	c := newExtrasCollector()
	if err := r.eachRow(ctx, posthog.FlagTagsSQL, "evaluation tags", func(id int64, v [][]byte) bool { return c.tag(id, v[1]) }); err != nil {
		return nil, err
	}
	return r.completeFlagExtras(ctx, c)
}

// completeFlagExtras adds the experiment flags to the tags c gathered, has the database
// order the names, and returns the extras, or nil when they did not fit.
func (r *pgReader) completeFlagExtras(ctx context.Context, c *extrasCollector) (*flagExtras, error) {
	if !c.full && r.hasExperiment {
		if err := r.eachRow(ctx, posthog.FlagExperimentsSQL, "experiments", func(id int64, _ [][]byte) bool { return c.experiment(id) }); err != nil {
			return nil, err
		}
	}
	x := c.x
	if c.full || !x.fits() {
		return nil, nil
	}
	if len(c.index) == 0 {
		x.byName = nil
		return x, nil
	}
	if err := r.orderTagNames(ctx, x, c.index); err != nil {
		return nil, err
	}
	if len(x.byName) > unionAbove {
		x.tagged = roaring.FastOr(x.byName...)
	}
	if !x.fits() {
		return nil, nil
	}
	return x, nil
}

// orderTagNames has the database sort the names as the streaming query's aggregate
// would (the column's collation, which need not be byte order).
func (r *pgReader) orderTagNames(ctx context.Context, x *flagExtras, index map[string]int) error {
	names := make([]string, 0, len(index))
	for n := range index {
		names = append(names, n)
	}
	rows, err := r.tx.Query(ctx, posthog.TagNamesOrderSQL, names)
	if err != nil {
		return fmt.Errorf("order evaluation tags of team %d: %w", r.team.ID, err)
	}
	sorted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("order evaluation tags of team %d: %w", r.team.ID, err)
	}
	if len(sorted) != len(index) {
		return fmt.Errorf("order evaluation tags of team %d: %d names came back sorted, %d were read", r.team.ID, len(sorted), len(index))
	}
	read := x.byName
	x.names, x.byName = sorted, make([]*roaring.Bitmap, 0, len(read))
	for _, n := range sorted {
		i, ok := index[n]
		if !ok {
			return fmt.Errorf("order evaluation tags of team %d: the database sorted back a name it was not given", r.team.ID)
		}
		x.byName = append(x.byName, read[i])
	}
	return nil
}

// eachRow runs a query whose first column is a flag id and calls add with each row
// until add refuses one.
func (r *pgReader) eachRow(ctx context.Context, sql, what string, add func(int64, [][]byte) bool) error {
	rows, err := r.tx.Query(ctx, sql, pgx.QueryExecModeExec, r.team.ID)
	if err != nil {
		return fmt.Errorf("read %s of team %d: %w", what, r.team.ID, err)
	}
	defer rows.Close()
	for rows.Next() {
		v := rows.RawValues()
		id, err := textInt(v[0])
		if err != nil {
			return fmt.Errorf("read %s of team %d: %w", what, r.team.ID, err)
		}
		if !add(id, v) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s of team %d: %w", what, r.team.ID, err)
	}
	return nil
}
