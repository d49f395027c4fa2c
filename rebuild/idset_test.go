package rebuild

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIDSetOrders: the kept ids come back in numeric order and then in the order of
// their decimal text, across every digit count up to int4's largest id.
func TestIDSetOrders(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	want := map[int64]bool{1: true, 9: true, 10: true, 99: true, 100: true, 101: true, math.MaxInt32: true, 1_000_000_000: true, 999_999_999: true}
	for range 20000 {
		digits := 1 + r.IntN(10)
		id := r.Int64N(int64(math.Pow10(digits))) + 1
		if id <= math.MaxInt32 {
			want[id] = true
		}
	}
	s := newIDSet()
	for id := range want {
		require.True(t, s.add(id))
	}
	require.True(t, s.usable())
	var numeric, text []int64
	require.NoError(t, s.each(context.Background(), func(id int64, byText bool) error {
		if byText {
			text = append(text, id)
		} else {
			numeric = append(numeric, id)
		}
		return nil
	}))
	sorted := slices.Sorted(func(yield func(int64) bool) {
		for id := range want {
			if !yield(id) {
				return
			}
		}
	})
	require.Equal(t, sorted, numeric)
	byText := slices.Clone(sorted)
	slices.SortFunc(byText, func(a, b int64) int {
		return cmpStrings(strconv.FormatInt(a, 10), strconv.FormatInt(b, 10))
	})
	require.Equal(t, byText, text)
}

func cmpStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestIDSetGivesUp: an id no int4 bitmap holds, or ids beyond the budget, make the set
// unusable, so that the build asks the source for the id streams instead.
func TestIDSetGivesUp(t *testing.T) {
	for _, bad := range []int64{0, -5, math.MaxInt32 + 1} {
		s := newIDSet()
		s.add(7)
		require.False(t, s.add(bad))
		require.False(t, s.usable(), "id %d", bad)
	}
	saved := idSetBudget
	idSetBudget = 64
	t.Cleanup(func() { idSetBudget = saved })
	s := newIDSet()
	for id := int64(1); id < 100_000; id += 37 { // sparse: no runs to shrink into
		s.add(id)
	}
	require.False(t, s.usable())
	s = newIDSet()
	s.add(3)
	require.True(t, s.usable(), "a few ids stay within even a tiny budget")
}

// TestBytesEqualPostHogsWriterWithSourceIDs: the same as PostHog's writer when the ids
// outgrow the first pass's budget and come from the database's id streams.
func TestBytesEqualPostHogsWriterWithSourceIDs(t *testing.T) {
	pool, url, teams := randomTeamsDB(t, 91, 9200, func(i int) int { return 50 + i*20 })
	saved := idSetBudget
	idSetBudget = 0
	t.Cleanup(func() { idSetBudget = saved })
	requireSameAsPostHog(t, pool, url, teams)
}
