package detectors

import (
	"math"

	"github.com/flagwarden/flagwarden/internal/robust"
)

// madScale turns a median absolute deviation into a standard-deviation estimate for
// normal data (1/Φ⁻¹(0.75)).
const madScale = 1.4826

// meanADScale does the same for a mean absolute deviation (√(π/2)), the fallback when
// more than half the values share one value and the MAD is zero.
const meanADScale = 1.2533

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
	if mad := robust.Median(dev); mad > 0 {
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
