package rebuild

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"

	"github.com/stretchr/testify/require"
)

func indexOfSize(cohorts int) *teamIndex {
	x := newIndex()
	for i := range cohorts {
		x.fjCohorts = append(x.fjCohorts, int64(i))
	}
	return x
}

// TestPredictionCacheBudget: the cache keeps the most recently used indexes within its
// budget, never one larger than the whole budget, and keys them by team and contract.
func TestPredictionCacheBudget(t *testing.T) {
	small := indexOfSize(100) // 256 + 800 bytes by size()
	require.EqualValues(t, 1056, small.size())
	c := newPredictionCache(3 * small.size())
	k := func(team int64) predictionKey { return predictionKey{team: team, contract: NewestContract} }
	at := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for team := int64(1); team <= 3; team++ {
		c.put(k(team), lastBuild{index: small, changed: at})
	}
	require.NotNil(t, c.get(k(1)), "1 is now the most recent")
	c.put(k(4), lastBuild{index: small, changed: at})
	require.Nil(t, c.get(k(2)), "the least recently used went")
	for _, team := range []int64{1, 3, 4} {
		require.Same(t, small, c.get(k(team)).index)
		require.Equal(t, at, c.get(k(team)).changed)
	}
	require.Nil(t, c.get(predictionKey{team: 1, contract: Contract202602}), "another contract's index is another index")
	require.LessOrEqual(t, c.used, c.budget)

	c.put(k(5), lastBuild{index: indexOfSize(1000)})
	require.Nil(t, c.get(k(5)), "larger than the budget")
	c.put(k(1), lastBuild{index: indexOfSize(1000)})
	require.Nil(t, c.get(k(1)), "replaced by one too large: the old one is gone too")
	c.forget(k(3))
	require.Nil(t, c.get(k(3)))
	require.Same(t, small, c.get(k(4)).index)
	require.Equal(t, small.size(), c.used)

	var none *predictionCache // a builder that keeps none
	none.put(k(1), lastBuild{index: small})
	require.Nil(t, none.get(k(1)))
	none.forget(k(1))
}

// TestRefreshedReplacesChangedFlags: the changed flags' old entries go, their new ones
// come in, the others stay; cohort lists are unions, sorted without repeats.
func TestRefreshedReplacesChangedFlags(t *testing.T) {
	last := newIndex()
	last.skip[1] = skipInfo{key: "one", code: SkipShape}
	last.skip[2] = skipInfo{key: "two", code: SkipShape}
	last.drop[3] = "three"
	last.drop[4] = "four"
	last.fjCohorts, last.defCohortsAll, last.defCohortsKept = []int64{10, 30}, []int64{10, 30}, []int64{10}
	last.deps.add(5, "five", depActive, []string{"a"})
	last.deps.add(6, "six", depActive, []string{"b"})
	last.deps.add(9, "nine", depActive, []string{"c"})

	fresh := newIndex() // flags 2, 4, 6 and 7 as they are now; 8 was deleted
	fresh.drop[7] = "seven"
	fresh.fjCohorts, fresh.defCohortsAll, fresh.defCohortsKept = []int64{20, 30}, []int64{5}, []int64{5, 40}
	fresh.deps.add(6, "six", depActive, []string{"b", "x"})
	fresh.deps.add(7, "seven", 0, []string{"y"})
	changed := roaring64.BitmapOf(2, 4, 6, 7, 8)

	got := last.refreshed(changed, fresh)
	require.Equal(t, []int64{1}, slices.Sorted(maps.Keys(got.skip)))
	require.Equal(t, map[int64]string{3: "three", 7: "seven"}, got.drop)
	require.Equal(t, []int64{10, 20, 30}, got.fjCohorts)
	require.Equal(t, []int64{5, 10, 30}, got.defCohortsAll)
	require.Equal(t, []int64{5, 10, 40}, got.defCohortsKept)
	var want depTable
	want.add(5, "five", depActive, []string{"a"})
	want.add(6, "six", depActive, []string{"b", "x"})
	want.add(7, "seven", 0, []string{"y"})
	want.add(9, "nine", depActive, []string{"c"})
	require.True(t, got.deps.equal(&want), "%+v", got.deps)
	require.Len(t, last.skip, 2, "the kept index is not modified")
	require.Equal(t, 3, last.deps.len())
	require.Equal(t, []int64{10, 30}, last.fjCohorts)
}

func TestUnionSorted(t *testing.T) {
	require.Empty(t, unionSorted(nil, nil))
	require.Equal(t, []int64{1, 2, 3, 5, 8}, unionSorted([]int64{1, 3, 5}, []int64{2, 3, 8}))
	require.Equal(t, []int64{4}, unionSorted(nil, []int64{4}))
}
