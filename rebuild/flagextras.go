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

// readFlagExtras reads the team's tags and experiment flags into bitmaps, or returns nil
// when they do not fit them (too many distinct names, ids beyond int4, over budget): the
// streaming query then reads them per flag.
func (r *pgReader) readFlagExtras(ctx context.Context) (*flagExtras, error) {
	x := &flagExtras{exps: roaring.New()}
	index := map[string]int{} // name → its bitmap in x.byName, until the database orders them
	fits, err := r.eachFlagID(ctx, posthog.FlagTagsSQL, "evaluation tags", func(id uint32, v [][]byte) bool {
		i, ok := index[string(v[1])]
		if !ok {
			if len(x.byName) == maxExtraTagNames {
				return false
			}
			i = len(x.byName)
			index[string(v[1])] = i
			x.byName = append(x.byName, roaring.New())
		}
		x.byName[i].Add(id)
		return true
	}, x.fits)
	if err != nil || !fits {
		return nil, err
	}
	if r.hasExperiment {
		fits, err = r.eachFlagID(ctx, posthog.FlagExperimentsSQL, "experiments", func(id uint32, _ [][]byte) bool {
			x.exps.Add(id)
			return true
		}, x.fits)
		if err != nil || !fits {
			return nil, err
		}
	}
	if len(index) == 0 {
		x.byName = nil
		return x, nil
	}
	if err := r.orderTagNames(ctx, x, index); err != nil {
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

// eachFlagID runs a query whose first column is a flag id and calls add with each
// row; it stops early, reporting false, when add refuses a row, an id is beyond
// what a bitmap of int4 keys holds, or fits fails (checked every few thousand rows).
func (r *pgReader) eachFlagID(ctx context.Context, sql, what string, add func(uint32, [][]byte) bool, fits func() bool) (bool, error) {
	rows, err := r.tx.Query(ctx, sql, pgx.QueryExecModeExec, r.team.ID)
	if err != nil {
		return false, fmt.Errorf("read %s of team %d: %w", what, r.team.ID, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		v := rows.RawValues()
		id, err := textInt(v[0])
		if err != nil {
			return false, fmt.Errorf("read %s of team %d: %w", what, r.team.ID, err)
		}
		if id < 1 || id > math.MaxInt32 || !add(uint32(id), v) {
			return false, nil
		}
		if n++; n%4096 == 0 && !fits() {
			return false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read %s of team %d: %w", what, r.team.ID, err)
	}
	return fits(), nil
}
