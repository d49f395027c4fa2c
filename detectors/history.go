package detectors

import (
	"math"
	"slices"
	"time"

	"github.com/flagwarden/flagwarden/internal/series"
)

// depthHistory is a queue's depth at bucket resolution: for each width-wide bucket
// (t−width, t], aligned to multiples of width since the Unix epoch (so a bucket and the
// one a day earlier are the same time of day), a trimmed mean of its samples (the
// middle 60 %: a spike does not move it, noise averages out), the lowest sample and
// how often the depth went down. Weeks of it fit in a few tens of kilobytes, which is
// what lets growth be compared with the same hours of comparable days without keeping
// every sample. It is filled in time order; the open (last) bucket is finalized when
// a later sample arrives or the clock passes its end.
type depthHistory struct {
	width time.Duration
	// maxBuckets bounds the history; older buckets are dropped.
	maxBuckets int

	// first is the absolute index (buckets since the epoch) of med[0].
	first int64
	med   []float32 // NaN when the bucket holds no sample
	lo    []float32
	n     []uint16 // samples in the bucket
	dec   []uint16 // samples lower than the sample before them
	// run is the longest run without a decrease (at a depth above zero) that ended
	// with a decrease in the bucket, in seconds: how long this queue sits still and
	// then drains by itself.
	run []float32

	// sumG and cntG are running sums of g (the log depth) and of non-empty buckets,
	// one past each bucket, for window means in constant time.
	sumG []float64
	cntG []int32
	// logOffset is the c of g = ln(depth + c): the floor, so that changes far below it
	// count for little and changes far above it count by their ratio.
	logOffset float64

	// open bucket
	openIdx int64
	openBuf []float64
	openDec int
	openRun float64
	prev    float64
	hasPrev bool
	started bool
	// runFrom is when the current run without a decrease began.
	runFrom time.Time

	// What season.go derives, per bucket and computed once: the bucket's smoothed g
	// (NaN until computed, −Inf when it cannot be), today's residual against the
	// comparable days and their g (NaN where there is none), and running sums of the
	// residuals (plain and weighted by the bucket index since anchor) for window
	// statistics in constant time. resN buckets from first have residuals.
	loc    *time.Location
	weeks  int
	smooth []float32
	res    []float32
	base   []float32
	rs0    []float64
	rs1    []float64
	rcnt   []int32
	resN   int
	anchor int64
	// the last comparison, for the passes within one bucket
	cmp      seasonal
	cmpIdx   int64
	cmpValid bool
	sp       spreads
}

func newDepthHistory(width time.Duration, span time.Duration, logOffset float64, loc *time.Location, weeks int) *depthHistory {
	if loc == nil {
		loc = time.UTC
	}
	return &depthHistory{
		width:      width,
		maxBuckets: int(span/width) + 1,
		logOffset:  max(logOffset, 1),
		loc:        loc,
		weeks:      max(weeks, 1),
		rs0:        []float64{0},
		rs1:        []float64{0},
		rcnt:       []int32{0},
	}
}

// bucketOf is the absolute index of the bucket (t−width, t] holding t.
func bucketOf(t time.Time, width time.Duration) int64 {
	ns, w := t.UnixNano(), int64(width)
	q := ns / w // truncated toward zero: the ceiling for negative times
	if ns%w > 0 {
		q++
	}
	return q - 1
}

// bucketEnd is the end of bucket j.
func (h *depthHistory) bucketEnd(j int64) time.Time {
	return time.Unix(0, (j+1)*int64(h.width)).UTC()
}

// end is one past the last finalized bucket.
func (h *depthHistory) end() int64 { return h.first + int64(len(h.med)) }

// perDay is the number of buckets in 24 hours; 0 when the width does not divide a day.
func (h *depthHistory) perDay() int64 {
	day := 24 * time.Hour
	if h.width > day || day%h.width != 0 {
		return 0
	}
	return int64(day / h.width)
}

// add appends one sample; samples must come in time order (an earlier one is ignored).
func (h *depthHistory) add(p series.Point) {
	j := bucketOf(p.T, h.width)
	if !h.started {
		h.started = true
		h.first, h.anchor = j, j
		h.openIdx = j
		h.sumG, h.cntG = []float64{0}, []int32{0}
	}
	if j < h.openIdx {
		return
	}
	if j > h.openIdx {
		h.closeThrough(j - 1)
		h.openIdx = j
	}
	h.openBuf = append(h.openBuf, p.V)
	if h.hasPrev && p.V < h.prev {
		h.openDec++
		h.openRun = max(h.openRun, p.T.Sub(h.runFrom).Seconds())
	}
	if !h.hasPrev || p.V < h.prev || p.V <= 0 {
		h.runFrom = p.T // a run without a decrease, at a depth above zero, starts here
	}
	h.prev, h.hasPrev = p.V, true
}

// completeAt finalizes every bucket that ends at or before now.
func (h *depthHistory) completeAt(now time.Time) {
	if !h.started {
		return
	}
	last := bucketOf(now, h.width)
	if !h.bucketEnd(last).Equal(now) {
		last-- // the bucket holding now is still open
	}
	if last >= h.openIdx {
		h.closeThrough(last)
		h.openIdx = last + 1
	}
}

// closeThrough finalizes the open bucket and leaves empty buckets up to j.
func (h *depthHistory) closeThrough(j int64) {
	for idx := h.end(); idx <= j; idx++ {
		med, lo := float32(math.NaN()), float32(math.NaN())
		var n, dec uint16
		var run float32
		if idx == h.openIdx && len(h.openBuf) > 0 {
			lo = float32(slices.Min(h.openBuf))
			med = float32(trimmedMean(h.openBuf))
			n = uint16(min(len(h.openBuf), math.MaxUint16))
			dec = uint16(min(h.openDec, math.MaxUint16))
			run = float32(h.openRun)
			h.openBuf, h.openDec, h.openRun = h.openBuf[:0], 0, 0
		}
		h.med, h.lo, h.n, h.dec = append(h.med, med), append(h.lo, lo), append(h.n, n), append(h.dec, dec)
		h.run = append(h.run, run)
		h.smooth = append(h.smooth, float32(math.NaN()))
		s, c := h.sumG[len(h.sumG)-1], h.cntG[len(h.cntG)-1]
		if n > 0 {
			s += math.Log(float64(med) + h.logOffset)
			c++
		}
		h.sumG, h.cntG = append(h.sumG, s), append(h.cntG, c)
	}
	h.trim()
}

func (h *depthHistory) trim() {
	if h.maxBuckets <= 0 || len(h.med) <= 2*h.maxBuckets {
		return
	}
	drop := len(h.med) - h.maxBuckets
	h.med = slices.Clone(h.med[drop:])
	h.lo = slices.Clone(h.lo[drop:])
	h.n = slices.Clone(h.n[drop:])
	h.dec = slices.Clone(h.dec[drop:])
	h.run = slices.Clone(h.run[drop:])
	h.smooth = slices.Clone(h.smooth[drop:])
	h.sumG = slices.Clone(h.sumG[drop:])
	h.cntG = slices.Clone(h.cntG[drop:])
	if drop <= h.resN {
		h.res = slices.Clone(h.res[drop:])
		h.base = slices.Clone(h.base[drop:])
		h.rs0 = slices.Clone(h.rs0[drop:])
		h.rs1 = slices.Clone(h.rs1[drop:])
		h.rcnt = slices.Clone(h.rcnt[drop:])
		h.resN -= drop
	} else {
		h.res, h.base, h.resN = nil, nil, 0
		h.rs0, h.rs1, h.rcnt = []float64{0}, []float64{0}, []int32{0}
	}
	h.first += int64(drop)
}

// trimmedMean is the mean of the middle 60 % of v (it reorders v): as robust to a
// spike as a median, and nearly as efficient as a mean on noise.
func trimmedMean(v []float64) float64 {
	slices.Sort(v)
	k := len(v) / 5
	var sum float64
	for _, x := range v[k : len(v)-k] {
		sum += x
	}
	return sum / float64(len(v)-2*k)
}

func (h *depthHistory) has(j int64) bool { return j >= h.first && j < h.end() }

// value is the median of bucket j (NaN when empty or unknown).
func (h *depthHistory) value(j int64) float64 {
	if !h.has(j) {
		return math.NaN()
	}
	return float64(h.med[j-h.first])
}

// lowest is the lowest sample in bucket j (NaN when empty or unknown).
func (h *depthHistory) lowest(j int64) float64 {
	if !h.has(j) {
		return math.NaN()
	}
	return float64(h.lo[j-h.first])
}

// meanG is the mean of g over buckets (j−n, j]; ok is false unless at least two
// thirds of them hold samples.
func (h *depthHistory) meanG(j int64, n int) (float64, bool) {
	lo := j - int64(n) + 1
	if lo < h.first || j >= h.end() {
		return 0, false
	}
	a, b := lo-h.first, j-h.first+1
	cnt := h.cntG[b] - h.cntG[a]
	if int(cnt)*3 < 2*n {
		return 0, false
	}
	return (h.sumG[b] - h.sumG[a]) / float64(cnt), true
}

// g is the transform residuals are measured in.
func (h *depthHistory) g(v float64) float64 { return math.Log(v + h.logOffset) }

// buckets returns the non-empty buckets (j−n, j] as bucket values with x in hours
// from the window start, the form the trend statistics take.
func (h *depthHistory) buckets(j int64, n int) []bucket {
	out := make([]bucket, 0, n)
	for k := j - int64(n) + 1; k <= j; k++ {
		if v := h.value(k); !math.IsNaN(v) {
			out = append(out, bucket{x: (float64(k-(j-int64(n)+1)) + 0.5) * h.width.Hours(), v: v})
		}
	}
	return out
}

// historyFromPoints builds a history from points in time order, finalized up to now.
func historyFromPoints(points []series.Point, width time.Duration, opts BacklogOptions, now time.Time) *depthHistory {
	h := newDepthHistory(width, opts.History(), opts.Floor, opts.Location, opts.Weeks)
	for _, p := range points {
		if p.T.After(now) {
			break
		}
		h.add(p)
	}
	h.completeAt(now)
	return h
}

// seasonalWidth rounds a bucket width up to a whole number of seconds that divides a
// day, so that the same bucket index a day earlier is the same time of day.
func seasonalWidth(d time.Duration) time.Duration {
	const day = 24 * 60 * 60
	for s := max(1, int64((d+time.Second-1)/time.Second)); s <= day; s++ {
		if day%s == 0 {
			return time.Duration(s) * time.Second
		}
	}
	return d
}
