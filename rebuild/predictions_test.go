package rebuild

import (
	"testing"

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
	for team := int64(1); team <= 3; team++ {
		c.put(k(team), small)
	}
	require.NotNil(t, c.get(k(1)), "1 is now the most recent")
	c.put(k(4), small)
	require.Nil(t, c.get(k(2)), "the least recently used went")
	for _, team := range []int64{1, 3, 4} {
		require.Same(t, small, c.get(k(team)))
	}
	require.Nil(t, c.get(predictionKey{team: 1, contract: Contract202602}), "another contract's index is another index")
	require.LessOrEqual(t, c.used, c.budget)

	c.put(k(5), indexOfSize(1000))
	require.Nil(t, c.get(k(5)), "larger than the budget")
	c.put(k(1), indexOfSize(1000))
	require.Nil(t, c.get(k(1)), "replaced by one too large: the old one is gone too")
	c.forget(k(3))
	require.Nil(t, c.get(k(3)))
	require.Same(t, small, c.get(k(4)))
	require.Equal(t, small.size(), c.used)

	var none *predictionCache // a builder that keeps none
	none.put(k(1), small)
	require.Nil(t, none.get(k(1)))
	none.forget(k(1))
}
