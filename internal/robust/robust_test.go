package robust

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMedianAndQuantile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{5}, 5}, {[]float64{2, 2, 2, 9}, 2}} {
		in := append([]float64(nil), tc.in...)
		require.Equal(t, tc.want, Median(tc.in), "median %v", tc.in)
		require.Equal(t, in, tc.in, "Median works on a copy")
	}
	require.True(t, math.IsNaN(Median(nil)))
	require.Equal(t, 2.5, QuantileSorted([]float64{1, 2, 3, 4}, 0.5))
	require.Equal(t, 4.0, QuantileSorted([]float64{1, 2, 3, 4}, 1))
	require.True(t, math.IsNaN(QuantileSorted(nil, 0.5)))
}

func TestTrendStatistics(t *testing.T) {
	t.Parallel()
	require.Equal(t, 1.0, MannKendallTau([]float64{1, 2, 3, 4}))
	require.Equal(t, -1.0, MannKendallTau([]float64{4, 3, 2, 1}))
	require.Equal(t, 0.0, MannKendallTau([]float64{7}))
	slope, icpt := TheilSen([]float64{0, 1, 2, 3, 4}, []float64{1, 3, 5, 7, 1000})
	require.Equal(t, 2.0, slope, "one wild point does not move the Theil–Sen slope")
	require.Equal(t, 1.0, icpt)
	slope, icpt = TheilSen([]float64{1, 1, 1}, []float64{4, 5, 6})
	require.Equal(t, 0.0, slope, "no spread in x: no slope")
	require.Equal(t, 5.0, icpt)
}
