package detectors

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/flagwarden/flagwarden/internal/robust"

	"github.com/flagwarden/flagwarden/internal/series"
)

// BacklogOptions tunes the backlog detectors. Zero values take the defaults.
type BacklogOptions struct {
	// Limit is the depth the ETA is computed against.
	Limit float64
	// Floor: below this depth a queue is never called growing.
	Floor float64
	// NearZero: a queue whose depth touched this or less in the window is draining
	// (Burrow's rule: a consumer that catches up is healthy). Default max(1, Floor/10).
	NearZero float64
	// Bucket is the resolution trends are computed at (default 5m); each bucket is the
	// median of its samples, so a spike moves one bucket at most.
	Bucket time.Duration
	// ShortWindow (default 2h) is where growth must be steady; LongWindow (default 6h)
	// backs it up while less than a Season of history exists.
	ShortWindow time.Duration
	LongWindow  time.Duration
	// Season (default 24h): with a season of history, growth that merely repeats the same
	// hours of the previous day (a daily cycle) does not count.
	Season time.Duration
	// EnterTau is the Mann–Kendall τ a short window needs to start a finding (default
	// 0.4); ExitTau the τ below which an active finding clears (default 0.2): hysteresis.
	EnterTau float64
	ExitTau  float64
	// SeasonSigmas: how many noise deviations the last half hour must stand above the
	// same half hour of the previous day while also rising against it (twice as many
	// when it is not rising against it) (default 2).
	SeasonSigmas float64
	// MinGrowth is the least growth per hour, relative to the level, that counts unless
	// the ETA is under WarnETA (default 0.02: 2 %/h).
	MinGrowth float64
	// WarnETA and CritETA: an ETA to Limit under CritETA is critical; under WarnETA even
	// slow growth counts. Defaults 24h and 4h.
	WarnETA time.Duration
	CritETA time.Duration
	// For is how long growth must hold before it fires (the detectors.for setting,
	// default 5m). A pending finding must meet the entry conditions throughout: a noise
	// excursion satisfies them for minutes, growth keeps satisfying them.
	For time.Duration
	// StallAfter is how long a non-empty queue may go without its depth decreasing
	// before it is stalled (default 15m).
	StallAfter time.Duration
}

func (o BacklogOptions) withDefaults() BacklogOptions {
	o.Limit = cmp.Or(o.Limit, 100000)
	o.Floor = cmp.Or(o.Floor, 100)
	o.NearZero = cmp.Or(o.NearZero, max(1, o.Floor/10))
	o.Bucket = cmp.Or(o.Bucket, 5*time.Minute)
	o.ShortWindow = cmp.Or(o.ShortWindow, 2*time.Hour)
	o.LongWindow = cmp.Or(o.LongWindow, 6*time.Hour)
	o.Season = cmp.Or(o.Season, 24*time.Hour)
	o.EnterTau = cmp.Or(o.EnterTau, 0.4)
	o.ExitTau = cmp.Or(o.ExitTau, 0.2)
	o.SeasonSigmas = cmp.Or(o.SeasonSigmas, 2)
	o.MinGrowth = cmp.Or(o.MinGrowth, 0.02)
	o.WarnETA = cmp.Or(o.WarnETA, 24*time.Hour)
	o.CritETA = cmp.Or(o.CritETA, 4*time.Hour)
	o.StallAfter = cmp.Or(o.StallAfter, 15*time.Minute)
	o.For = cmp.Or(o.For, 5*time.Minute)
	return o
}

// History is how far back the backlog detector reads.
func (o BacklogOptions) History() time.Duration {
	o = o.withDefaults()
	return max(o.LongWindow, o.Season+o.ShortWindow) + o.Bucket
}

// BacklogStatus is what one evaluation of one queue measured, findings or not: the API
// shows it, and Insufficient says when the history is too short to judge.
type BacklogStatus struct {
	Queue        string  `json:"queue"`
	Depth        float64 `json:"depth"`
	Tau          float64 `json:"tau"`
	SlopePerHour float64 `json:"slope_per_hour"`
	// ETASeconds is the time to the limit at the current slope; -1 when not growing.
	ETASeconds   float64 `json:"eta_seconds"`
	Growing      bool    `json:"growing"`
	Stalled      bool    `json:"stalled"`
	Insufficient bool    `json:"insufficient_data"`
	Note         string  `json:"note,omitempty"`
}

type bucket struct {
	x float64 // hours since the window start
	v float64
}

// bucketize groups points in (from, to] into width-wide buckets ending at to, each the
// median of its samples, so a spike moves one bucket at most; empty buckets are left
// out.
func bucketize(points []series.Point, from, to time.Time, width time.Duration) []bucket {
	medians := slots(points, from, to, width)
	out := make([]bucket, 0, len(medians))
	for i, v := range medians {
		if !math.IsNaN(v) {
			out = append(out, bucket{x: (float64(i) + 0.5) * width.Hours(), v: v})
		}
	}
	return out
}

func split(b []bucket) (x, y []float64) {
	x, y = make([]float64, len(b)), make([]float64, len(b))
	for i, v := range b {
		x[i], y[i] = v.x, v.v
	}
	return x, y
}

// sampleInterval is the median spacing of the points.
func sampleInterval(points []series.Point) time.Duration {
	if len(points) < 2 {
		return 0
	}
	points = points[max(0, len(points)-64):] // the recent spacing is what matters
	d := make([]float64, 0, len(points)-1)
	for i := 1; i < len(points); i++ {
		d = append(d, float64(points[i].T.Sub(points[i-1].T)))
	}
	return time.Duration(robust.Median(d))
}

// minStallSamples is the fewest samples a stall is judged on.
const minStallSamples = 20

// headAging reports whether the oldest message's age grew by at least 80 % of the
// window across it (the head did not move); ok is false without age samples covering
// the window.
func headAging(ages []series.Point, from, now time.Time, window time.Duration) (aged, ok bool) {
	i, _ := slices.BinarySearchFunc(ages, from, func(p series.Point, t time.Time) int { return p.T.Compare(t) })
	win := ages[i:]
	if len(win) < 2 || win[0].T.Sub(from) > window/10 || now.Sub(win[len(win)-1].T) > window/10 {
		return false, false
	}
	for j := 1; j < len(win); j++ {
		if win[j].V < win[j-1].V {
			return false, true // the head moved: something consumed it
		}
	}
	grew := win[len(win)-1].V - win[0].V
	span := win[len(win)-1].T.Sub(win[0].T).Seconds()
	return span > 0 && grew >= 0.8*span, true
}

// minBuckets is the fewest buckets a window needs before τ means anything.
const minBuckets = 6

// EvaluateBacklog judges one queue's depth history (points in time order, ending at or
// before now). active reports whether a finding of the given kind is already firing for
// this queue (for hysteresis). It is pure: the same points, now and active give the
// same answer, live or replayed.
func EvaluateBacklog(queue string, points []series.Point, now time.Time, active func(kind string) bool, opts BacklogOptions) ([]Observation, BacklogStatus) {
	return EvaluateBacklogAge(queue, points, nil, now, active, opts)
}

// EvaluateBacklogAge is EvaluateBacklog with the age of the oldest waiting message
// (queue_oldest_age_seconds), where the collector measures it: a head of queue that
// ages as fast as the clock is not being consumed, the surest sign of a stall.
func EvaluateBacklogAge(queue string, points, ages []series.Point, now time.Time, active func(kind string) bool, opts BacklogOptions) ([]Observation, BacklogStatus) {
	opts = opts.withDefaults()
	st := BacklogStatus{Queue: queue, ETASeconds: -1}
	if len(points) == 0 {
		st.Insufficient, st.Note = true, "insufficient data: no samples yet"
		return nil, st
	}
	st.Depth = points[len(points)-1].V
	var out []Observation
	if o, stalled := evaluateStall(queue, points, ages, now, active("backlog_stalled"), opts); stalled {
		st.Stalled = true
		out = append(out, o)
	}

	// Sparse samples (an hourly CSV) widen the bucket and the windows so that a window
	// always holds enough buckets.
	width := max(opts.Bucket, sampleInterval(points))
	short := max(opts.ShortWindow, time.Duration(2*minBuckets)*width)
	long := max(opts.LongWindow, 3*short)
	first := points[0].T
	// Growth is judged on completed buckets: every pass within one bucket sees the same
	// windows, so passing every 30 s gives noise no more chances than passing once per
	// bucket, and a finding's `for` counts whole buckets.
	now = now.Truncate(width)
	if now.Sub(first) < short-width {
		st.Insufficient = true
		st.Note = fmt.Sprintf("insufficient data: %s of history, %s needed to judge growth", now.Sub(first).Round(time.Minute), short)
		return out, st
	}
	wasActive := active("backlog_growth")
	st2 := windowTrend(points, now, short, width, opts.Limit)
	if st2.n < minBuckets {
		st.Insufficient = true
		st.Note = fmt.Sprintf("insufficient data: %d of %d sample buckets in the last %s", st2.n, int(short/width), short)
		return out, st
	}
	// The short window catches fast growth early; the long one slow growth that is
	// steady over hours but too gentle to stand out of two hours of noise.
	tr := st2
	if now.Sub(first) >= long-width && !st2.growing(opts, wasActive) {
		if lt := windowTrend(points, now, long, width, opts.Limit); lt.growing(opts, wasActive) {
			tr = lt
		}
	}
	st.Tau, st.SlopePerHour = round3(tr.tau), round3(tr.slope)
	if tr.slope > 0 {
		st.ETASeconds = math.Round(tr.eta * 3600)
	}
	growing := tr.growing(opts, wasActive)
	tau, slope, level, eta, minDepth := tr.tau, tr.slope, tr.level, tr.eta, tr.minDepth
	// A burst that is already draining is not growth, however steep its climb was.
	if growing && st2.fallingNow() {
		growing = false
	}

	// Rule out the daily cycle. With a season of history, the last half hour must stand
	// clearly above the same half hour yesterday (a cycle repeats; growth does not).
	// Without it, growth pages only if it reaches the limit within WarnETA; slower
	// growth is reported as insufficient data.
	noise := st2.noise
	seasonal := 0.0
	var vsYesterday, dTau float64
	if growing {
		if now.Sub(first) >= opts.Season+short {
			seasonal = 1
			yb := bucketize(points, now.Add(-opts.Season-short), now.Add(-opts.Season), width)
			d := seasonDiff(st2.buckets, yb)
			vsYesterday = tailMedian(d, minBuckets)
			// How much "the last half hour minus the same half hour yesterday" varies on
			// its own: measured over the past day where two days of history exist (it
			// then includes autocorrelation and day-to-day differences), else estimated
			// from the spread of today-minus-yesterday buckets.
			if sd, ok := seasonalSpread(points, now, width, opts.Season); ok {
				noise = max(sd, max(1, 0.005*level))
			} else {
				noise = residualNoise(d, level)
			}
			_, dy := split(d)
			dTau = robust.MannKendallTau(dy)
			// Far above yesterday (growth that has gone on for a day or more), or above it
			// and pulling away (growth that began today).
			far := vsYesterday >= 2*opts.SeasonSigmas*noise
			pulling := vsYesterday >= opts.SeasonSigmas*noise && dTau >= opts.EnterTau
			if wasActive {
				far, pulling = vsYesterday >= noise, false
			}
			growing = len(d) >= minBuckets && (far || pulling)
		} else if eta >= opts.WarnETA.Hours() && !wasActive {
			growing = false
			st.Insufficient = true
			st.Note = fmt.Sprintf("insufficient data: growing at %+.0f/h but less than %s of history, so a daily cycle "+
				"cannot be ruled out; it pages now only if the limit is less than %s away", slope, opts.Season+short, opts.WarnETA)
		}
	}
	st.Growing = growing
	if !growing {
		return out, st
	}
	window, sb := tr.window, tr.buckets
	sev := SeverityWarning
	if eta < opts.CritETA.Hours() {
		sev = SeverityCritical
	}
	etaText := "more than a year"
	if eta < 24*365 {
		etaText = "about " + humanHours(eta)
	}
	desc := fmt.Sprintf("Queue %s has grown steadily for the last %s: Mann–Kendall τ %.2f over %d five-minute medians "+
		"(1 would be growth in every step), Theil–Sen slope %+.0f messages/hour, depth now %.0f (floor %.0f) and it never "+
		"dropped to %.0f or below in the window, so workers are not catching up. At this rate it reaches the limit of %.0f "+
		"in %s.", queue, window, tau, len(sb), slope, st.Depth, opts.Floor, opts.NearZero, opts.Limit, etaText)
	if seasonal == 0 {
		desc += " Less than a day of history: a daily cycle cannot be ruled out yet, but the limit is near."
	} else {
		desc += fmt.Sprintf(" The last half hour is %.0f messages above the same half hour yesterday (noise ±%.0f), so this is not the daily cycle.", vsYesterday, noise)
	}
	ev := map[string]float64{
		"depth": st.Depth, "level": math.Round(level), "tau": round3(tau), "slope_per_hour": round3(slope),
		"eta_hours": round3(min(eta, 1e6)), "limit": opts.Limit, "floor": opts.Floor, "min_depth_in_window": minDepth,
		"window_hours": window.Hours(), "short_window_tau": round3(st2.tau), "buckets": float64(len(sb)), "seasonal_check": seasonal,
	}
	if seasonal == 1 {
		ev["above_yesterday"] = math.Round(vsYesterday)
		ev["tau_vs_yesterday"] = round3(dTau)
	}
	ev["noise"] = math.Round(noise)
	out = append(out, Observation{
		Kind: "backlog_growth", Severity: sev, Subject: queue, Labels: map[string]string{"queue": queue},
		Summary:     fmt.Sprintf("Queue %s is growing steadily (%+.0f/h, depth %.0f); limit %.0f in %s", queue, slope, st.Depth, opts.Limit, etaText),
		Description: desc, Evidence: ev, For: opts.For, Link: queueLink(queue),
	})
	return out, st
}

// trend is one window's Mann–Kendall and Theil–Sen summary.
type trend struct {
	window            time.Duration
	buckets           []bucket
	n                 int
	tau, slope, level float64
	eta               float64 // hours to the limit; +Inf when not growing
	minDepth, noise   float64
}

func windowTrend(points []series.Point, now time.Time, window, width time.Duration, limit float64) trend {
	b := bucketize(points, now.Add(-window), now, width)
	t := trend{window: window, buckets: b, n: len(b), eta: math.Inf(1), minDepth: math.Inf(1)}
	if len(b) < minBuckets {
		return t
	}
	x, y := split(b)
	t.tau = robust.MannKendallTau(y)
	var intercept float64
	t.slope, intercept = robust.TheilSen(x, y)
	t.level = max(points[len(points)-1].V, intercept+t.slope*window.Hours())
	t.noise = bucketNoise(y, t.level)
	if t.slope > 0 {
		t.eta = max(0, (limit-t.level)/t.slope)
	}
	from := now.Add(-window)
	i, _ := slices.BinarySearchFunc(points, from, func(p series.Point, at time.Time) int { return p.T.Compare(at) })
	for _, p := range points[i:] {
		if !p.T.After(now) {
			t.minDepth = min(t.minDepth, p.V)
		}
	}
	return t
}

// fallingNow reports whether the last half hour falls significantly: its Theil–Sen
// slope is more than three standard errors below zero.
func (t trend) fallingNow() bool {
	if len(t.buckets) < minBuckets {
		return false
	}
	x, y := split(t.buckets[len(t.buckets)-minBuckets:])
	slope, _ := robust.TheilSen(x, y)
	var mx, sxx float64
	for _, v := range x {
		mx += v / float64(len(x))
	}
	for _, v := range x {
		sxx += (v - mx) * (v - mx)
	}
	return slope < -3*t.noise/math.Sqrt(sxx)
}

// growing applies the trend gate: τ, slope fast enough (or near enough the limit),
// level above the floor, and never near zero in the window. An active finding clears
// only at the looser exit thresholds.
func (t trend) growing(opts BacklogOptions, wasActive bool) bool {
	if t.n < minBuckets || t.slope <= 0 {
		return false
	}
	needTau, floor := opts.EnterTau, opts.Floor
	if wasActive {
		needTau, floor = opts.ExitTau, 0.8*opts.Floor
	}
	fastEnough := t.slope >= opts.MinGrowth*max(t.level, opts.Floor) || t.eta < opts.WarnETA.Hours()
	return t.tau >= needTau && fastEnough && t.level >= floor && t.minDepth > opts.NearZero
}

// tailMedian is the median of the last n buckets.
func tailMedian(b []bucket, n int) float64 {
	if len(b) == 0 {
		return math.NaN()
	}
	_, y := split(b[max(0, len(b)-n):])
	return robust.Median(y)
}

// bucketNoise is the robust standard deviation of one bucket around the trend: the MAD
// of bucket-to-bucket differences, scaled, over √2. A trend shifts the differences but
// not their spread. Floored at 0.5 % of the level so a perfectly smooth series does not
// make any difference significant.
func bucketNoise(y []float64, level float64) float64 {
	if len(y) < 3 {
		return max(1, 0.005*level)
	}
	d := make([]float64, len(y)-1)
	for i := range d {
		d[i] = y[i+1] - y[i]
	}
	m := robust.Median(d)
	for i := range d {
		d[i] = math.Abs(d[i] - m)
	}
	return max(madScale*robust.Median(d)/math.Sqrt2, 1, 0.005*level)
}

// slots is bucketize with fixed positions: slot i covers (from+i·width, from+(i+1)·width]
// and is NaN when it holds no sample.
func slots(points []series.Point, from, to time.Time, width time.Duration) []float64 {
	n := int(to.Sub(from) / width)
	if n <= 0 {
		return nil
	}
	groups := make([][]float64, n)
	lo, _ := slices.BinarySearchFunc(points, from, func(p series.Point, t time.Time) int { return p.T.Compare(t) })
	for _, p := range points[lo:] {
		if p.T.After(to) {
			break
		}
		if !p.T.After(from) {
			continue
		}
		i := min(int(p.T.Sub(from)/width), n-1)
		groups[i] = append(groups[i], p.V)
	}
	out := make([]float64, n)
	for i, g := range groups {
		out[i] = math.NaN()
		if len(g) > 0 {
			out[i] = robust.MedianInPlace(g)
		}
	}
	return out
}

// seasonalSpread is the robust standard deviation of the statistic the daily-cycle
// check uses — median of six buckets minus the median of the same six a season earlier
// — measured at every half hour of the past season. ok is false without two seasons of
// history.
func seasonalSpread(points []series.Point, now time.Time, width, season time.Duration) (float64, bool) {
	if len(points) == 0 || now.Sub(points[0].T) < 2*season {
		return 0, false
	}
	today := slots(points, now.Add(-season), now, width)
	before := slots(points, now.Add(-2*season), now.Add(-season), width)
	n := len(today)
	var stats []float64
	for end := n - 1 - minBuckets; end >= minBuckets-1; end -= minBuckets {
		var a, b []float64
		for i := end - minBuckets + 1; i <= end; i++ {
			if !math.IsNaN(today[i]) {
				a = append(a, today[i])
			}
			if !math.IsNaN(before[i]) {
				b = append(b, before[i])
			}
		}
		if len(a) > 0 && len(b) > 0 {
			stats = append(stats, robust.MedianInPlace(a)-robust.MedianInPlace(b))
		}
	}
	if len(stats) < 12 {
		return 0, false
	}
	m := robust.Median(stats)
	for i := range stats {
		stats[i] = math.Abs(stats[i] - m)
	}
	return madScale * robust.MedianInPlace(stats), true
}

// residualNoise is the robust standard deviation of buckets around their Theil–Sen
// line: the spread of single buckets, autocorrelation included, that a trend does not
// inflate.
func residualNoise(b []bucket, level float64) float64 {
	floor := max(1, 0.005*level)
	if len(b) < 3 {
		return floor
	}
	x, y := split(b)
	slope, intercept := robust.TheilSen(x, y)
	res := make([]float64, len(y))
	for i := range y {
		res[i] = y[i] - (intercept + slope*x[i])
	}
	m := robust.Median(res)
	for i := range res {
		res[i] = math.Abs(res[i] - m)
	}
	return max(madScale*robust.Median(res), floor)
}

// seasonDiff pairs today's buckets with yesterday's at the same offset.
func seasonDiff(today, yesterday []bucket) []bucket {
	byX := make(map[float64]float64, len(yesterday))
	for _, b := range yesterday {
		byX[b.x] = b.v
	}
	var out []bucket
	for _, b := range today {
		if v, ok := byX[b.x]; ok {
			out = append(out, bucket{x: b.x, v: b.v - v})
		}
	}
	return out
}

// evaluateStall: a queue is stalled when it held messages for the whole window and
// nothing took them off. With the oldest message's age, that is a head of queue whose
// age grew with the clock across the window. Without it, it is a depth that did not go
// down once in the window (at least minStallSamples samples, so that a fast-filling but
// consumed queue rarely passes by chance). While the finding is active it clears only
// when the depth falls below 95 % of the window's peak, or to zero, or the head moves.
func evaluateStall(queue string, points, ages []series.Point, now time.Time, wasActive bool, opts BacklogOptions) (Observation, bool) {
	// Sparse samples widen the window: "never went down" means little over 3 samples.
	window := max(opts.StallAfter, time.Duration(minStallSamples)*sampleInterval(points))
	from := now.Add(-window)
	i, _ := slices.BinarySearchFunc(points, from, func(p series.Point, t time.Time) int { return p.T.Compare(t) })
	win := points[i:]
	// The window must be covered: a sample at (or just before) its start, and several.
	if len(win) < minStallSamples || i == 0 && win[0].T.Sub(from) > window/10 {
		return Observation{}, false
	}
	peak, lowest, decreases := 0.0, math.Inf(1), 0
	for j, p := range win {
		peak, lowest = max(peak, p.V), min(lowest, p.V)
		if j > 0 && p.V < win[j-1].V {
			decreases++
		}
	}
	cur := win[len(win)-1].V
	headAged, haveAge := headAging(ages, from, now, window)
	stalled := lowest > 0 && decreases == 0
	if haveAge {
		stalled = lowest > 0 && headAged
	}
	if wasActive {
		stalled = cur > 0 && cur >= 0.95*peak
		if haveAge {
			stalled = cur > 0 && headAged
		}
	}
	if !stalled {
		return Observation{}, false
	}
	sev := SeverityWarning
	if cur >= opts.Floor {
		sev = SeverityCritical
	}
	return Observation{
		Kind: "backlog_stalled", Severity: sev, Subject: queue, Labels: map[string]string{"queue": queue},
		Summary: fmt.Sprintf("Queue %s is not draining: %.0f messages and no decrease in %s", queue, cur, window),
		Description: fmt.Sprintf("Queue %s has held messages for the last %s (lowest %.0f, now %.0f) and its depth did not go "+
			"down once in %d samples (or its oldest message aged with the clock): nothing is taking messages off it, or the workers are far slower than producers. "+
			"Check that workers are running and not crash-looping.", queue, window, lowest, cur, len(win)),
		Evidence: map[string]float64{"depth": cur, "lowest": lowest, "peak": peak, "samples": float64(len(win)),
			"window_seconds": window.Seconds(), "decreases": float64(decreases)},
		Link: queueLink(queue),
	}, true
}

// humanHours prints hours as "3h20m" or "2.5 days".
func humanHours(h float64) string {
	if h >= 48 {
		return fmt.Sprintf("%.1f days", h/24)
	}
	return time.Duration(h * float64(time.Hour)).Round(time.Minute).String()
}
