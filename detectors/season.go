package detectors

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/flagwarden/flagwarden/internal/robust"
)

// How a queue's recent depth is compared with its past (seasonal_check in the
// evidence).
const (
	// tierNone: no comparable day in the history; growth pages only when the limit is
	// near.
	tierNone = 0
	// tierYesterday: one or two comparable days; the spread is measured on the
	// residuals of the past day.
	tierYesterday = 1
	// tierComparable: three or more comparable days; their own spread at this time of
	// day counts too.
	tierComparable = 2
)

// minComparableDays is the fewest days that make the comparable tier.
const minComparableDays = 3

// minCalibration is the fewest past residuals (three hours of buckets) the spread is
// measured on.
const minCalibration = 36

// shiftBuckets is how far (in buckets, either way) a comparable day may be moved to
// match today: a morning ramp that starts ten minutes earlier than last week's is the
// same ramp.
const shiftBuckets = 3

// steepRise is the rise of g (about 10 %) within shiftBuckets that makes a comparable
// day's window movable.
const steepRise = 0.1

// seasonal holds what a comparison with comparable days found for one window.
type seasonal struct {
	tier int
	// days are the offsets (in days) of the comparable days used.
	days []int
	// sameWeekday is true when only the same weekday of earlier weeks is used.
	sameWeekday bool
	// today and base are window means of g = ln(depth + c); resid = today − base.
	today, base, resid float64
	// spreadDays is how far one comparable day strays from the others around this time
	// of day (0 with fewer than two); spreadCal the spread of the same residual over the
	// past day at similar depths.
	spreadDays, spreadCal float64
	calN                          int
	// n is the window length in buckets.
	n int
}

// spread is the spread a residual is judged by: the largest of the past day's, the
// comparable days' and the noise floor at this level (all in g).
func (s seasonal) spread(level float64, opts BacklogOptions, c float64) float64 {
	return max(s.spreadCal, s.spreadDays, noiseFloor(level, opts.NoiseFloor)/(level+c))
}

// z is how many spreads the window stands above the comparable days.
func (s seasonal) z(level float64, opts BacklogOptions, c float64) float64 {
	if s.tier == tierNone {
		return 0
	}
	return s.resid / s.spread(level, opts, c)
}

// residualTau is the Mann–Kendall τ of the n-bucket residual over the last m
// positions: is the queue pulling away from its comparable days?
func (h *depthHistory) residualTau(i int64, n, m int, loc *time.Location, weeks int) float64 {
	v := make([]float64, 0, m)
	for j := i - int64(m) + 1; j <= i; j++ {
		if r, ok := h.residualAt(j, n, loc, weeks); ok {
			v = append(v, r)
		}
	}
	if len(v) < minBuckets {
		return 0
	}
	return robust.MannKendallTau(v)
}

// dayKind splits days into weekdays and weekend days in loc.
func dayKind(t time.Time, loc *time.Location) int {
	switch t.In(loc).Weekday() {
	case time.Saturday, time.Sunday:
		return 1
	}
	return 0
}

// refMean is the mean of g over the window of n buckets ending at j, taken on day k
// back. Where that day rose steeply just after this time (by more than steepRise
// within shiftBuckets), the highest of the windows up to shiftBuckets later is taken:
// a ramp that arrives a few minutes earlier than on that day is the same ramp, and a
// queue leaving zero a little earlier than usual is not growth. Elsewhere no shift is
// allowed, because the highest of several noisy windows would bias every comparison
// towards calling growth normal.
func (h *depthHistory) refMean(j int64, n, k int) (float64, bool) {
	back := j - int64(k)*h.perDay()
	v, ok := h.meanG(back, n)
	if !ok {
		return 0, false
	}
	if later, ok := h.meanG(back+shiftBuckets, n); ok && later-v > steepRise {
		for s := int64(1); s <= shiftBuckets; s++ {
			if w, ok := h.meanG(back+s, n); ok {
				v = max(v, w)
			}
		}
	}
	return v, true
}

// comparable picks the days the window (j−n, j] is compared with: the same weekday of
// up to `weeks` earlier weeks once three of them are in the history; before that the
// days of the last week of the same kind (weekday or weekend) and the same weekday a
// week or two back. Never a Sunday for a Monday.
func (h *depthHistory) comparable(j int64, n int, loc *time.Location, weeks int) (days []int, refs []float64, sameWeekday bool) {
	p := h.perDay()
	if p == 0 {
		return nil, nil, false
	}
	for w := 1; w <= weeks; w++ {
		if v, ok := h.refMean(j, n, 7*w); ok {
			days, refs = append(days, 7*w), append(refs, v)
		}
	}
	if len(days) >= minComparableDays {
		return days, refs, true
	}
	days, refs = days[:0], refs[:0]
	mid := h.bucketEnd(j).Add(-h.width / 2)
	kind := dayKind(mid, loc)
	for k := 1; k <= 14; k++ {
		if k < 7 && dayKind(mid.Add(-time.Duration(k)*24*time.Hour), loc) != kind || k > 7 && k != 14 {
			continue
		}
		if v, ok := h.refMean(j, n, k); ok {
			days, refs = append(days, k), append(refs, v)
		}
	}
	return days, refs, false
}

// residualAt is today's window mean minus the comparable days' (their median, or
// mean of two): the statistic whose past values calibrate the spread.
func (h *depthHistory) residualAt(j int64, n int, loc *time.Location, weeks int) (float64, bool) {
	m := h.memo[n]
	if m == nil {
		m = &residualMemo{first: j}
		h.memo[n] = m
	}
	if j < m.first {
		return h.computeResidual(j, n, loc, weeks)
	}
	for int64(len(m.v)) <= j-m.first {
		m.v = append(m.v, math.NaN())
	}
	if v := m.v[j-m.first]; !math.IsNaN(v) {
		return v, !math.IsInf(v, 0)
	}
	v, ok := h.computeResidual(j, n, loc, weeks)
	if !ok {
		m.v[j-m.first] = math.Inf(1) // computed: not computable
		return 0, false
	}
	m.v[j-m.first] = v
	return v, true
}

func (h *depthHistory) computeResidual(j int64, n int, loc *time.Location, weeks int) (float64, bool) {
	today, ok := h.meanG(j, n)
	if !ok {
		return 0, false
	}
	_, refs, _ := h.comparable(j, n, loc, weeks)
	if len(refs) == 0 {
		return 0, false
	}
	return today - robust.MedianInPlace(refs), true
}

// compare measures how far the window of n buckets ending at j stands above the
// comparable days.
func (h *depthHistory) compare(j int64, n int, loc *time.Location, weeks int) seasonal {
	var s seasonal
	today, ok := h.meanG(j, n)
	if !ok {
		return s
	}
	days, refs, same := h.comparable(j, n, loc, weeks)
	if len(refs) == 0 {
		return s
	}
	s.days, s.sameWeekday, s.today, s.n = slices.Clone(days), same, today, n
	s.tier = tierYesterday
	if len(refs) >= minComparableDays {
		s.tier = tierComparable
	}
	s.spreadDays = h.daysSpread(j, n, days)
	s.base = robust.Median(refs)
	s.resid = today - s.base
	// The same residual over the past day, up to an hour ago (so that growth that
	// began recently does not widen the spread it is judged by), where the depth was
	// the comparable days' depth was within a factor of three of what it is for now: a
	// queue that is quiet at night and busy by day varies more by day, and its nights
	// say nothing about that. Taken around zero, it
	// includes how far a whole day may run above its comparable days.
	p := h.perDay()
	cal := make([]float64, 0, p)
	for jj := j - p; jj <= j-12; jj++ {
		v, ok := h.residualAt(jj, n, loc, weeks)
		if !ok {
			continue
		}
		if g, _ := h.meanG(jj, n); math.Abs(g-v-s.base) > math.Log(3) {
			continue // the comparable days were at another depth then
		}
		cal = append(cal, math.Abs(v))
	}
	s.calN = len(cal)
	if len(cal) >= minCalibration {
		s.spreadCal = madScale * robust.MedianInPlace(cal)
	}
	return s
}

// daysSpread is how far one comparable day strays from the median of the others at
// this time of day (leaving it out), pooled over the hour either side: the spread
// today's residual is judged by when comparable days exist. Pooling makes it stable
// with as few as two days, where a MAD of two or three values is mostly chance; taken
// around zero, it includes how differently the days are shaped, not only their noise.
func (h *depthHistory) daysSpread(j int64, n int, days []int) float64 {
	if len(days) < 2 {
		return 0
	}
	vals := make([]float64, len(days))
	others := make([]float64, 0, len(days)-1)
	dev := make([]float64, 0, 25*len(days))
	for jj := j - 12; jj <= j+12; jj++ {
		ok := true
		for d, k := range days {
			if vals[d], ok = h.refMean(jj, n, k); !ok {
				break
			}
		}
		if !ok {
			continue
		}
		for d := range days {
			others = others[:0]
			for e, v := range vals {
				if e != d {
					others = append(others, v)
				}
			}
			dev = append(dev, math.Abs(vals[d]-robust.MedianInPlace(others)))
		}
	}
	if len(dev) < 12 {
		return 0
	}
	return madScale * robust.MedianInPlace(dev)
}

// noiseFloor is the least spread one bucket's depth is credited with at this level: a
// depth is a count (it moves in whole messages, and a queue of n messages moves by
// about √n on its own), and a measured spread of zero must not make every difference
// significant. relative is the share of the level that is always noise.
func noiseFloor(level, relative float64) float64 {
	level = max(level, 0)
	return max(1, relative*level, 0.5*math.Sqrt(level))
}

// daysText names the comparable days for a description.
func daysText(days []int, same bool) string {
	if same {
		return "the same weekday of the last " + itoa(int64(len(days))) + " weeks"
	}
	parts := make([]string, 0, len(days))
	for _, k := range days {
		switch {
		case k == 1:
			parts = append(parts, "yesterday")
		case k%7 == 0:
			parts = append(parts, "the same weekday "+itoa(int64(k/7))+" week(s) ago")
		default:
			parts = append(parts, itoa(int64(k))+" days ago")
		}
	}
	return strings.Join(parts, ", ")
}
