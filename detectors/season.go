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
	// tierYesterday: one or two comparable days.
	tierYesterday = 1
	// tierComparable: three or more comparable days.
	tierComparable = 2
)

const (
	// minComparableDays is the fewest days that make the comparable tier.
	minComparableDays = 3
	// minCalibration is the fewest past values (three hours of buckets) a spread is
	// measured on.
	minCalibration = 36
	// shiftBuckets is how far (in buckets) a comparable day may be moved to match
	// today where it rises steeply: a morning ramp that starts ten minutes earlier than
	// last week's is the same ramp, and a queue leaving zero a little earlier than usual
	// is not growth.
	shiftBuckets = 3
	// steepRise is the rise of g (about 10 %) within shiftBuckets that makes a
	// comparable day's bucket movable.
	steepRise = 0.1
	// calibrationGap keeps the last hour out of the spread: growth that began recently
	// must not widen the spread it is judged by.
	calibrationGap = 12
	// calibrationDays is how many days before the past one the spread also looks at,
	// around this time of day.
	calibrationDays = 13
	// daysPool is how many buckets either side of now the across-days spread pools.
	daysPool = 12
	// uncalibratedSigma is the spread of one bucket's residual (about 10 %) assumed
	// before there is enough history at this depth to measure it.
	uncalibratedSigma = 0.1
	// residualClip bounds one bucket's residual (a factor of about 7 either way), so
	// that a burst counts as one large bucket, not as hours of growth in the windows
	// that hold it.
	residualClip = 2.0
)

// refWiden are the half-widths (in buckets: two hours, one, half an hour) a comparable
// day is smoothed over, widest first.
var refWiden = []int64{24, 12, 6}

// seasonStats are the statistics of today's residual (g minus the comparable days')
// that growth is judged on: the mean of the last half hour and hour, which catch a
// level that has left its usual range, and ramp-weighted sums over the last hour and
// two (weights rising linearly to now: the matched filter for growth that began within
// the window), which catch a steady ramp sooner than a mean does.
var seasonStats = []seasonStat{{"level", 6, false}, {"level", 12, false}, {"ramp", 12, true}, {"ramp", 24, true}}

type seasonStat struct {
	name string
	m    int // buckets
	ramp bool
}

// seasonal holds what a comparison with comparable days found.
type seasonal struct {
	tier int
	// days are the offsets (in days) of the comparable days used.
	days []int
	// sameWeekday is true when only the same weekday of earlier weeks is used.
	sameWeekday bool
	// statResult is the statistic that stood out most; all holds every statistic that
	// could be computed.
	statResult
	all []statResult
	// today and base are the mean g of the last half hour and of the comparable days.
	today, base float64
}

// statResult is one statistic of seasonStats: z is how many spreads it stands above
// the comparable days, spread that spread and its parts — the past day's spread of
// the same statistic at similar depths (calN values), the comparable days' own spread
// around now, and the noise floor.
type statResult struct {
	stat                         seasonStat
	value, z, spread             float64
	spreadCal, spreadDays, floor float64
	calN                         int
}

// dayKind splits days into weekdays and weekend days in loc.
func dayKind(t time.Time, loc *time.Location) int {
	switch t.In(loc).Weekday() {
	case time.Saturday, time.Sunday:
		return 1
	}
	return 0
}

// smoothG is bucket b's g smoothed over up to two hours either side — what today is
// compared with, so smoothing it takes most of a comparable day's own noise out of
// the comparison. The widest mean of refWiden that does not stray from the mean of the
// middle five by more than noise explains is used (a symmetric mean is unbiased on a
// slope; a peak or a kink would be blurred), else the middle five. Computed once per
// bucket.
func (h *depthHistory) smoothG(b int64) (float64, bool) {
	if !h.has(b) || b+2 >= h.end() {
		return 0, false
	}
	k := b - h.first
	if v := float64(h.smooth[k]); !math.IsNaN(v) {
		return v, !math.IsInf(v, -1)
	}
	mid, ok := h.meanG(b+2, 5)
	if !ok {
		h.smooth[k] = float32(math.Inf(-1))
		return 0, false
	}
	v := mid
	for _, w := range refWiden {
		if b+w >= h.end() {
			continue
		}
		wide, ok := h.meanG(b+w, 2*int(w)+1)
		if !ok {
			continue
		}
		noise := h.noiseG(b+w, 2*int(w)+1)
		if math.Abs(wide-mid) <= 2*noise*math.Sqrt(1.0/5-1.0/float64(2*w+1)) {
			v = wide
			break
		}
	}
	h.smooth[k] = float32(v)
	return v, true
}

// noiseG is the robust spread of one bucket's g over the m buckets ending at j: the
// MAD of bucket-to-bucket differences, scaled, over √2 (a trend shifts the differences
// but not their spread).
func (h *depthHistory) noiseG(j int64, m int) float64 {
	d := make([]float64, 0, m)
	prev := math.NaN()
	for k := j - int64(m) + 1; k <= j; k++ {
		v := h.value(k)
		if math.IsNaN(v) {
			continue
		}
		g := h.g(v)
		if !math.IsNaN(prev) {
			d = append(d, g-prev)
		}
		prev = g
	}
	if len(d) < 3 {
		return 0
	}
	med := robust.Median(d)
	for i := range d {
		d[i] = math.Abs(d[i] - med)
	}
	return madScale * robust.MedianInPlace(d) / math.Sqrt2
}

// refBucket is what day k back says bucket j should be: its smoothed g, or where that
// day rose steeply just after this time, the highest of the next shiftBuckets.
// Elsewhere no shift is allowed: the highest of several noisy values would bias every
// comparison towards calling growth normal.
func (h *depthHistory) refBucket(j int64, k int) (float64, bool) {
	b := j - int64(k)*h.perDay()
	v, ok := h.smoothG(b)
	if !ok {
		return 0, false
	}
	if later, ok := h.smoothG(b + shiftBuckets); ok && later-v > steepRise {
		for s := int64(1); s <= shiftBuckets; s++ {
			if w, ok := h.smoothG(b + s); ok {
				v = max(v, w)
			}
		}
	}
	return v, true
}

// comparable picks the days bucket j is compared with: the same weekday of up to
// `weeks` earlier weeks once three of them are in the history; before that the days
// of the last week of the same kind (weekday or weekend) and the same weekday one and
// two weeks back. Never a Sunday for a Monday.
func (h *depthHistory) comparable(j int64) (days []int, sameWeekday bool) {
	p := h.perDay()
	if p == 0 {
		return nil, false
	}
	for w := 1; w <= h.weeks; w++ {
		if _, ok := h.refBucket(j, 7*w); ok {
			days = append(days, 7*w)
		}
	}
	if len(days) >= minComparableDays {
		return days, true
	}
	days = days[:0]
	mid := h.bucketEnd(j).Add(-h.width / 2)
	kind := dayKind(mid, h.loc)
	for k := 1; k <= 14; k++ {
		if k < 7 && dayKind(mid.Add(-time.Duration(k)*24*time.Hour), h.loc) != kind || k > 7 && k != 14 {
			continue
		}
		if _, ok := h.refBucket(j, k); ok {
			days = append(days, k)
		}
	}
	return days, false
}

// ensureResiduals computes today's residual for every bucket up to j that does not
// have one yet: g minus the median of its comparable days.
func (h *depthHistory) ensureResiduals(j int64) {
	refs := make([]float64, 0, 8)
	for idx := h.first + int64(h.resN); idx <= j && idx < h.end(); idx++ {
		r, base := math.NaN(), math.NaN()
		if v := h.value(idx); !math.IsNaN(v) {
			days, _ := h.comparable(idx)
			refs = refs[:0]
			for _, k := range days {
				if b, ok := h.refBucket(idx, k); ok {
					refs = append(refs, b)
				}
			}
			if len(refs) > 0 {
				base = robust.MedianInPlace(refs)
				r = min(max(h.g(v)-base, -residualClip), residualClip)
			}
		}
		h.res, h.base = append(h.res, float32(r)), append(h.base, float32(base))
		s0, s1, c := h.rs0[h.resN], h.rs1[h.resN], h.rcnt[h.resN]
		if !math.IsNaN(r) {
			s0 += r
			s1 += float64(idx-h.anchor) * r
			c++
		}
		h.rs0, h.rs1, h.rcnt = append(h.rs0, s0), append(h.rs1, s1), append(h.rcnt, c)
		h.resN++
	}
}

// statAt is statistic st of the residuals of the m buckets ending at j; ok is false
// unless two thirds of them have one.
func (h *depthHistory) statAt(j int64, st seasonStat) (float64, bool) {
	a, b := j-int64(st.m)+1-h.first, j-h.first+1
	if a < 0 || b > int64(h.resN) {
		return 0, false
	}
	c := h.rcnt[b] - h.rcnt[a]
	if int(c)*3 < 2*st.m {
		return 0, false
	}
	s0 := h.rs0[b] - h.rs0[a]
	if !st.ramp {
		return s0 / float64(c), true
	}
	s1 := h.rs1[b] - h.rs1[a]
	origin := float64(j - int64(st.m) - h.anchor)
	return (s1 - origin*s0) / rampNorm(st.m), true
}

// rampNorm is √(1² + 2² + … + m²), so a ramp statistic has the spread of one bucket.
func rampNorm(m int) float64 {
	n := float64(m)
	return math.Sqrt(n * (n + 1) * (2*n + 1) / 6)
}

// statOf is statistic st of the last st.m values of v (NaN values left out).
func statOf(v []float64, st seasonStat) (float64, bool) {
	if len(v) < st.m {
		return 0, false
	}
	v = v[len(v)-st.m:]
	var s0, s1 float64
	var c int
	for i, x := range v {
		if math.IsNaN(x) {
			continue
		}
		s0 += x
		s1 += float64(i+1) * x
		c++
	}
	if c*3 < 2*st.m {
		return 0, false
	}
	if !st.ramp {
		return s0 / float64(c), true
	}
	return s1 / rampNorm(st.m), true
}

// compare measures how far the buckets ending at i stand above the comparable days:
// every statistic of seasonStats, each against its own spread — the largest of the
// past day's spread of that statistic where the comparable days were at a similar
// depth (a queue that is quiet at night and busy by day varies more by day, and its
// nights say nothing about that; taken around zero, it includes how far a whole day
// may run above its comparable days), how far one comparable day strays from the
// others around this time of day, and the noise floor at this depth. The statistic
// that stands out most is returned.
func (h *depthHistory) compare(i int64, opts BacklogOptions) seasonal {
	// Every pass within one bucket judges the same completed buckets: compare once.
	if h.cmpValid && h.cmpIdx == i {
		return h.cmp
	}
	s := h.compareAt(i, opts)
	h.cmp, h.cmpIdx, h.cmpValid = s, i, true
	return s
}

func (h *depthHistory) compareAt(i int64, opts BacklogOptions) seasonal {
	var s seasonal
	level := max(h.value(i), 0)
	days, same := h.comparable(i)
	if len(days) == 0 || h.perDay() == 0 {
		return s
	}
	h.ensureResiduals(i)
	baseNow := float64(h.base[i-h.first])
	if math.IsNaN(baseNow) {
		return s
	}
	s.days, s.sameWeekday = days, same
	s.tier = tierYesterday
	if len(days) >= minComparableDays {
		s.tier = tierComparable
	}
	s.today, _ = h.meanG(i, minBuckets)
	var bsum float64
	var bn int
	for j := i - minBuckets + 1; j <= i; j++ {
		if h.has(j) && j-h.first < int64(h.resN) {
			if b := float64(h.base[j-h.first]); !math.IsNaN(b) {
				bsum += b
				bn++
			}
		}
	}
	s.base = bsum / float64(max(bn, 1))
	floor := noiseFloor(level, opts.NoiseFloor) / (level + h.logOffset)
	sp := h.spreadsAt(i - i%spreadEvery)
	s.z = math.Inf(-1)
	for k, st := range seasonStats {
		v, ok := h.statAt(i, st)
		if !ok {
			continue
		}
		spread := max(sp.cal[k], sp.days[k], floor)
		r := statResult{stat: st, value: v, z: v / spread, spread: spread, spreadCal: sp.cal[k], spreadDays: sp.days[k], floor: floor, calN: sp.calN[k]}
		s.all = append(s.all, r)
		if r.z > s.z {
			s.statResult = r
		}
	}
	if len(s.all) == 0 {
		s.tier, s.z = tierNone, 0
	}
	return s
}

// spreadEvery is how often (in buckets) the spreads are measured again: a day of
// calibration hardly changes in half an hour, and measuring it is most of the cost of
// a comparison.
const spreadEvery = 6

// spreads are the calibrated spreads of each of seasonStats at one bucket.
type spreads struct {
	at         int64
	cal, days  []float64
	calN       []int
	calculated bool
}

// spreadsAt measures, for bucket i0, each statistic's spread over the past day where
// the comparable days were at a similar depth (calibration), and the comparable days'
// own spread around i0.
func (h *depthHistory) spreadsAt(i0 int64) spreads {
	if h.sp.calculated && h.sp.at == i0 {
		return h.sp
	}
	sp := spreads{at: i0, calculated: true, cal: make([]float64, len(seasonStats)), days: make([]float64, len(seasonStats)),
		calN: make([]int, len(seasonStats))}
	days, _ := h.comparable(i0)
	h.ensureResiduals(i0)
	baseNow := math.NaN()
	if h.has(i0) && i0-h.first < int64(h.resN) {
		baseNow = float64(h.base[i0-h.first])
	}
	loo := h.leaveOneOut(i0, days)
	// The calibration positions: the past day up to an hour ago, and two hours either
	// side of this time of day on the days before it (how differently whole days run at
	// this hour), wherever the comparable days were at a similar depth.
	var positions []int64
	add := func(from, to int64) {
		for j := max(from, h.first); j <= to && j-h.first < int64(h.resN); j++ {
			if b := float64(h.base[j-h.first]); !math.IsNaN(b) && math.Abs(b-baseNow) <= math.Log(3) {
				positions = append(positions, j)
			}
		}
	}
	p := h.perDay()
	add(i0-p, i0-calibrationGap)
	for k := int64(1); k <= calibrationDays; k++ {
		add(i0-k*p-2*calibrationGap, min(i0-k*p+2*calibrationGap, i0-p-1))
	}
	sigma, rho := h.residualNoise(positions)
	cal := make([]float64, 0, len(positions))
	for k, st := range seasonStats {
		cal = cal[:0]
		for _, j := range positions {
			if x, ok := h.statAt(j, st); ok {
				cal = append(cal, math.Abs(x))
			}
		}
		// The measured spread of the statistic, and what the buckets' own noise and
		// autocorrelation imply for it: a few calm hours must not make the spread look
		// smaller than the noise says it is. Until three hours of residuals at this depth
		// exist, a bucket is assumed to vary by uncalibratedSigma.
		sp.cal[k] = uncalibratedSigma * statScale(st, 0.5)
		if len(cal) >= minCalibration {
			sp.cal[k] = max(madScale*robust.MedianInPlace(cal), sigma*statScale(st, rho))
		}
		sp.calN[k] = len(cal)
		sp.days[k] = daysSpread(loo, st)
	}
	h.sp = sp
	return sp
}

// residualNoise is the robust spread of one bucket's residual at the given positions
// and the lag-one autocorrelation of the residuals, from the spread of their
// differences (var(r_t − r_{t−1}) = 2σ²(1 − ρ)).
func (h *depthHistory) residualNoise(positions []int64) (sigma, rho float64) {
	var v, d []float64
	for _, j := range positions {
		r := float64(h.res[j-h.first])
		if math.IsNaN(r) {
			continue
		}
		v = append(v, r)
		if j > h.first {
			if p := float64(h.res[j-1-h.first]); !math.IsNaN(p) {
				d = append(d, r-p)
			}
		}
	}
	if len(v) < minCalibration || len(d) < minCalibration/2 {
		return 0, 0
	}
	center := func(x []float64) float64 {
		m := robust.Median(x)
		for i := range x {
			x[i] = math.Abs(x[i] - m)
		}
		return madScale * robust.MedianInPlace(x)
	}
	sigma, sd := center(v), center(d)
	if sigma <= 0 {
		return 0, 0
	}
	rho = 1 - sd*sd/(2*sigma*sigma)
	return sigma, min(max(rho, 0), 0.9)
}

// statScale is the spread of statistic st for residuals of unit spread and lag-one
// autocorrelation rho (an AR(1) model: correlation rho^k at lag k).
func statScale(st seasonStat, rho float64) float64 {
	c := statLags[st]
	v, p := c[0], 1.0
	for k := 1; k < len(c); k++ {
		p *= rho
		v += 2 * c[k] * p
	}
	return math.Sqrt(max(v, 0))
}

// statLags holds lagSums for each of seasonStats.
var statLags = func() map[seasonStat][]float64 {
	out := map[seasonStat][]float64{}
	for _, st := range seasonStats {
		out[st] = st.lagSums()
	}
	return out
}()

// lagSums are Σ_a w_a·w_{a+k} of the statistic's weights, for each lag k.
func (st seasonStat) lagSums() []float64 {
	w := make([]float64, st.m)
	for i := range w {
		w[i] = 1 / float64(st.m)
		if st.ramp {
			w[i] = float64(i+1) / rampNorm(st.m)
		}
	}
	c := make([]float64, st.m)
	for k := range c {
		for a := 0; a+k < st.m; a++ {
			c[k] += w[a] * w[a+k]
		}
	}
	return c
}

// leaveOneOut is, for each comparable day, how far it strays from the median of the
// others at every bucket from an hour and a half before i to an hour after it.
func (h *depthHistory) leaveOneOut(i int64, days []int) [][]float64 {
	if len(days) < 2 {
		return nil
	}
	from, to := i-int64(daysPool)-24+1, i+int64(daysPool)
	out := make([][]float64, len(days))
	vals := make([]float64, len(days))
	others := make([]float64, 0, len(days)-1)
	for d := range days {
		out[d] = make([]float64, 0, to-from+1)
	}
	for t := from; t <= to; t++ {
		ok := true
		for d, k := range days {
			if vals[d], ok = h.refBucket(t, k); !ok {
				break
			}
		}
		for d := range days {
			if !ok {
				out[d] = append(out[d], math.NaN())
				continue
			}
			others = others[:0]
			for e, v := range vals {
				if e != d {
					others = append(others, v)
				}
			}
			out[d] = append(out[d], vals[d]-robust.MedianInPlace(others))
		}
	}
	return out
}

// daysSpread is the spread of statistic st over the comparable days' leave-one-out
// residuals, pooled over the windows ending within an hour of now and taken around
// zero: with as few as two days it measures how differently the days run at this
// time, not only their noise.
func daysSpread(loo [][]float64, st seasonStat) float64 {
	var dev []float64
	for _, series := range loo {
		for end := len(series) - 2*daysPool - 1; end <= len(series); end++ {
			if end < st.m {
				continue
			}
			if x, ok := statOf(series[:end], st); ok {
				dev = append(dev, math.Abs(x))
			}
		}
	}
	if len(dev) < 12 {
		return 0
	}
	return madScale * robust.MedianInPlace(dev)
}

// residualTau is the Mann–Kendall τ of the per-bucket residual over the m buckets
// ending at i: is the queue pulling away from its comparable days?
func (h *depthHistory) residualTau(i int64, m int) float64 {
	h.ensureResiduals(i)
	v := make([]float64, 0, m)
	for j := i - int64(m) + 1; j <= i; j++ {
		if j >= h.first && j-h.first < int64(h.resN) {
			if r := float64(h.res[j-h.first]); !math.IsNaN(r) {
				v = append(v, r)
			}
		}
	}
	if len(v) < minBuckets {
		return 0
	}
	return robust.MannKendallTau(v)
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
	for _, k := range slices.Sorted(slices.Values(days)) {
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
