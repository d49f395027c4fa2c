package rebuild

import (
	"context"
	"math"

	"github.com/RoaringBitmap/roaring/v2"
)

// idSetBudget bounds the memory of the ids the first pass keeps for evaluation_metadata.
// A compressed bitmap holds a team's ids in a few bytes each at worst and in a fraction
// of a byte when they are dense (flags created in bursts), so a million flags fit in
// well under this; a team beyond it has its ids sorted by the database instead.
// (A variable so that tests can force the fallback.)
var idSetBudget uint64 = 2 << 20

// idSet is the ids flags.json's evaluation_metadata lists, collected by the first pass
// so that the database need not sort them twice more. Once over budget, or given an
// id no bitmap holds, it gives up and the build asks the source instead.
type idSet struct {
	bm   *roaring.Bitmap
	adds int
}

func newIDSet() *idSet { return &idSet{bm: roaring.New()} }

// add records id; it reports false once the set has given up.
func (s *idSet) add(id int64) bool {
	if s.bm == nil {
		return false
	}
	if id < 1 || id > math.MaxInt32 {
		s.bm = nil // not an id a bitmap of int4 keys holds; the database sorts it
		return false
	}
	s.bm.Add(uint32(id))
	if s.adds++; s.adds%4096 == 0 {
		return s.fits()
	}
	return true
}

// fits reports whether the set is within its budget, giving up if not.
func (s *idSet) fits() bool {
	if s.bm == nil {
		return false
	}
	if s.bm.GetSizeInBytes() > idSetBudget {
		s.bm.RunOptimize() // dense ids take far less as runs
		if s.bm.GetSizeInBytes() > idSetBudget {
			s.bm = nil
			return false
		}
	}
	return true
}

// usable reports whether the set kept every id within its budget.
func (s *idSet) usable() bool { return s != nil && s.fits() }

// each calls fn with the ids in numeric order, then (byText) in the order of their
// decimal forms, as TeamReader.FlagIDs does.
func (s *idSet) each(ctx context.Context, fn func(id int64, byText bool) error) error {
	n := 0
	check := func() error {
		if n++; n%4096 == 0 {
			return ctx.Err()
		}
		return nil
	}
	it := s.bm.Iterator()
	for it.HasNext() {
		if err := check(); err != nil {
			return err
		}
		if err := fn(int64(it.Next()), false); err != nil {
			return err
		}
	}
	// Ids with the same number of digits sort as text as they sort as numbers, so the
	// text order is a merge of one numeric run per digit count.
	var runs []*digitRun
	lo := uint64(1)
	for digits := 1; digits <= 10; digits++ {
		hi := lo*10 - 1
		r := &digitRun{it: s.bm.Iterator(), hi: hi, digits: digits}
		r.it.AdvanceIfNeeded(uint32(min(lo, math.MaxUint32)))
		if r.load() {
			runs = append(runs, r)
		}
		lo *= 10
		if lo > math.MaxUint32 {
			break
		}
	}
	for len(runs) > 0 {
		best := 0
		for i := 1; i < len(runs); i++ {
			if textLess(runs[i].cur, runs[i].digits, runs[best].cur, runs[best].digits) {
				best = i
			}
		}
		if err := check(); err != nil {
			return err
		}
		r := runs[best]
		if err := fn(int64(r.cur), true); err != nil {
			return err
		}
		if !r.load() {
			runs = append(runs[:best], runs[best+1:]...)
		}
	}
	return nil
}

// digitRun walks the ids with one number of digits.
type digitRun struct {
	it     roaring.IntPeekable
	hi     uint64
	digits int
	cur    uint64
}

func (r *digitRun) load() bool {
	if !r.it.HasNext() || uint64(r.it.PeekNext()) > r.hi {
		return false
	}
	r.cur = uint64(r.it.Next())
	return true
}

// textLess compares a and b (of da and db digits) as decimal strings: the shorter is
// scaled to the longer's length; on a tie it is a prefix of the other and sorts first.
func textLess(a uint64, da int, b uint64, db int) bool {
	sa, sb := a, b
	for d := da; d < db; d++ {
		sa *= 10
	}
	for d := db; d < da; d++ {
		sb *= 10
	}
	if sa != sb {
		return sa < sb
	}
	return da < db
}
