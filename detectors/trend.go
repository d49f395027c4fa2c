package detectors

import (
	"math"
	"slices"
	"time"

	"github.com/flagwarden/flagwarden/internal/robust"
	"github.com/flagwarden/flagwarden/internal/series"
)

// MaxTrendPoints bounds the points the Theil–Sen fit sees: it compares every pair, so
// a 14-day series at 15 s would be 10^10 pairs. Longer series are thinned to the
// median of equal time buckets first.
const MaxTrendPoints = 240

// Trend is a robust straight-line fit of a series and what it predicts: what the API
// shows for a queue's depth, from the same package that pages on it.
type Trend struct {
	// Points is how many (thinned) points the fit used.
	Points int `json:"points"`
	// SlopePerHour is the Theil–Sen slope: the median of the pairwise slopes, so a
	// short burst barely moves it.
	SlopePerHour float64 `json:"slope_per_hour"`
	// Intercept is the fitted value at Anchor; the line is Intercept + slope × (t - Anchor).
	Intercept float64   `json:"intercept"`
	Anchor    time.Time `json:"anchor"`
	// Tau is the Mann–Kendall τ: +1 when every later point is higher, −1 when lower.
	Tau float64 `json:"tau"`
	// ETAToLimitSeconds is when the fitted line reaches the limit (growing only);
	// ETAToEmptySeconds when it reaches zero (draining only). Null when it never does.
	ETAToLimitSeconds *float64 `json:"eta_to_limit_seconds"`
	ETAToEmptySeconds *float64 `json:"eta_to_empty_seconds"`
}

// FitTrend fits points and predicts from the last point's level. It returns nil for
// fewer than three points or a series that spans no time.
func FitTrend(points []series.Point, limit float64) *Trend {
	points = finitePoints(points)
	if len(points) == 0 {
		return nil
	}
	pts := Thin(points, MaxTrendPoints)
	if len(pts) < 3 || !pts[len(pts)-1].T.After(pts[0].T) {
		return nil
	}
	anchor := pts[0].T
	x := make([]float64, len(pts))
	y := make([]float64, len(pts))
	for i, p := range pts {
		x[i], y[i] = p.T.Sub(anchor).Hours(), p.V
	}
	slope, intercept := robust.TheilSen(x, y)
	tr := &Trend{
		Points:       len(pts),
		SlopePerHour: slope,
		Intercept:    intercept,
		Anchor:       anchor,
		Tau:          robust.MannKendallTau(y),
	}
	level := points[len(points)-1].V
	switch {
	case slope > 0 && limit > level:
		eta := (limit - level) / slope * 3600
		tr.ETAToLimitSeconds = &eta
	case slope < 0 && level > 0:
		eta := level / -slope * 3600
		tr.ETAToEmptySeconds = &eta
	}
	return tr
}

// Thin reduces points to at most n by taking the median of each of n equal time
// buckets (at the bucket's median time), which keeps the shape and drops spikes.
func Thin(points []series.Point, n int) []series.Point {
	points = finitePoints(points)
	if len(points) <= n {
		return points
	}
	first, last := points[0].T, points[len(points)-1].T
	span := last.Sub(first)
	if span <= 0 {
		return points[len(points)-1:]
	}
	out := make([]series.Point, 0, n)
	var vals []float64
	var times []time.Time
	bucket := 0
	flush := func() {
		if len(vals) == 0 {
			return
		}
		out = append(out, series.Point{T: times[len(times)/2], V: robust.Median(vals)})
		vals, times = vals[:0], times[:0]
	}
	for _, p := range points {
		b := min(int(float64(p.T.Sub(first))/float64(span)*float64(n)), n-1)
		if b != bucket {
			flush()
			bucket = b
		}
		vals = append(vals, p.V)
		times = append(times, p.T)
	}
	flush()
	return out
}

// finitePoints drops NaN and ±Inf samples (a PromQL source can produce them): JSON
// cannot encode them and they would poison every median.
func finitePoints(points []series.Point) []series.Point {
	for i, p := range points {
		if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
			out := slices.Clone(points[:i])
			for _, q := range points[i+1:] {
				if !math.IsNaN(q.V) && !math.IsInf(q.V, 0) {
					out = append(out, q)
				}
			}
			return out
		}
	}
	return points
}
