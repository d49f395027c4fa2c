// Package robust holds the rank- and median-based statistics that flagwarden's
// detectors and API share: medians and quantiles, the Mann–Kendall trend statistic
// and the Theil–Sen slope. They are chosen because a burst or a few wild values barely
// move them.
package robust

import (
	"math"
	"slices"
)

// QuantileSorted is the type-7 (linear interpolation) quantile of sorted values.
func QuantileSorted(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n == 1 {
		return sorted[0]
	}
	h := q * float64(n-1)
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// Median of values; it works on a copy.
func Median(values []float64) float64 {
	return MedianInPlace(slices.Clone(values))
}

// MedianInPlace is the median by quickselect (expected linear time); it reorders v.
func MedianInPlace(v []float64) float64 {
	n := len(v)
	if n == 0 {
		return math.NaN()
	}
	hi := selectKth(v, n/2)
	if n%2 == 1 {
		return hi
	}
	// The lower middle is the largest value left of n/2 after selection.
	lo := v[0]
	for _, x := range v[1 : n/2] {
		lo = max(lo, x)
	}
	return (lo + hi) / 2
}

// selectKth places the k-th smallest value at v[k], smaller ones before it, and
// returns it (Hoare's selection with a middle pivot; deterministic).
func selectKth(v []float64, k int) float64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		pivot := v[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] < pivot {
				i++
			}
			for v[j] > pivot {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}

// MannKendallTau is Kendall's τ-a of the values against their order: +1 when every
// later value is above every earlier one, −1 for the reverse, near 0 for noise. Rank
// based, so one burst barely moves it.
func MannKendallTau(y []float64) float64 {
	n := len(y)
	if n < 2 {
		return 0
	}
	var s int
	for i := 0; i < n-1; i++ {
		for j := i + 1; j < n; j++ {
			switch {
			case y[j] > y[i]:
				s++
			case y[j] < y[i]:
				s--
			}
		}
	}
	return float64(s) / float64(n*(n-1)/2)
}

// TheilSen is the median of pairwise slopes (per unit of x) and the matching intercept
// (median of y − slope·x): a line that a burst or a few outliers cannot drag.
func TheilSen(x, y []float64) (slope, intercept float64) {
	n := len(y)
	if n < 2 {
		return 0, 0
	}
	slopes := make([]float64, 0, n*(n-1)/2)
	for i := 0; i < n-1; i++ {
		for j := i + 1; j < n; j++ {
			if dx := x[j] - x[i]; dx != 0 {
				slopes = append(slopes, (y[j]-y[i])/dx)
			}
		}
	}
	if len(slopes) == 0 {
		return 0, Median(y)
	}
	slope = MedianInPlace(slopes)
	res := slopes[:n] // reuse: the slopes are no longer needed
	for i := range y {
		res[i] = y[i] - slope*x[i]
	}
	return slope, MedianInPlace(res)
}
