package posthog

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCloseCohorts(t *testing.T) {
	t.Parallel()
	all := map[int64]*cohort{
		1: {id: 1, bytes: 10, refs: []int64{2}},
		2: {id: 2, bytes: 20, refs: []int64{3, 1}}, // 2 -> 1 closes a cycle
		3: {id: 3, bytes: 30, static: true},
		4: {id: 4, bytes: 40, deleted: true, refs: []int64{5}},
		5: {id: 5, bytes: 50},
	}
	use := closeCohorts([]int64{1, 4, 99}, all)
	require.Equal(t, cohortUse{count: 3, bytes: 10 + 20 + 50, missing: 1, cycles: 1}, use)
}
