package detectors

import (
	"math"
	"slices"
)

// madScale turns a median absolute deviation into a standard-deviation estimate for
// normal data (1/Φ⁻¹(0.75)).
const madScale = 1.4826

// meanADScale does the same for a mean absolute deviation (√(π/2)), the fallback when
// more than half the values share one value and the MAD is zero.
const meanADScale = 1.2533

// quantileSorted is the type-7 (linear interpolation) quantile of sorted values.
func quantileSorted(sorted []float64, q float64) float64 {
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

// median of values; it works on a copy.
func median(values []float64) float64 {
	return medianInPlace(slices.Clone(values))
}

// medianInPlace is the median by quickselect (expected linear time); it reorders v.
func medianInPlace(v []float64) float64 {
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

// upperScale is the robust spread of the values above m: 1.4826 × the median of the
// upper deviations (the upper half of a double MAD), falling back to 1.2533 × their mean
// when that median is zero. It returns 0 when every value above m equals m.
func upperScale(sorted []float64, m float64) (scale float64, fallback bool) {
	var dev []float64
	for _, v := range sorted {
		if v >= m {
			dev = append(dev, v-m)
		}
	}
	if len(dev) == 0 {
		return 0, false
	}
	if mad := median(dev); mad > 0 {
		return madScale * mad, false
	}
	var sum float64
	for _, d := range dev {
		sum += d
	}
	if sum == 0 {
		return 0, false
	}
	return meanADScale * sum / float64(len(dev)), true
}

// normalQuantile is Φ⁻¹(p).
func normalQuantile(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }

// mannKendallTau is Kendall's τ-a of the values against their order: +1 when every
// later value is above every earlier one, −1 for the reverse, near 0 for noise. Rank
// based, so one burst barely moves it.
func mannKendallTau(y []float64) float64 {
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

// theilSen is the median of pairwise slopes (per unit of x) and the matching intercept
// (median of y − slope·x): a line that a burst or a few outliers cannot drag.
func theilSen(x, y []float64) (slope, intercept float64) {
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
		return 0, median(y)
	}
	slope = medianInPlace(slopes)
	res := slopes[:n] // reuse: the slopes are no longer needed
	for i := range y {
		res[i] = y[i] - slope*x[i]
	}
	return slope, medianInPlace(res)
}
