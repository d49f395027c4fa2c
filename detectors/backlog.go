package detectors

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/flagwarden/flagwarden/internal/robust"

	"github.com/flagwarden/flagwarden/detectors/defaults"
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
	// Season is kept for compatibility: growth is compared with whole days (24 h) of
	// comparable history, see Weeks.
	Season time.Duration
	// EnterTau is the Mann–Kendall τ a short window needs to start a finding (default
	// 0.4); ExitTau the τ below which an active finding clears (default 0.2): hysteresis.
	EnterTau float64
	ExitTau  float64

	// SeasonSigmas: how many spreads the last half hour (or hour) must stand above the
	// same time on comparable days while also rising against them (twice as many when it
	// is not rising against them) (default 2).
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

	// Weeks is how many weeks of history growth is compared with (default 4): the same
	// weekday of each, or before three weeks exist, the recent days of the same kind.
	Weeks int
	// Location is where weekdays and weekends are told apart (default UTC).
	Location *time.Location
	// FastWindow (default 30m) is the shortest window growth is found on, and only
	// against comparable days: a clear ramp is paged within the hour instead of after the
	// two hours the short window needs to be steady.
	FastWindow time.Duration
	// ExitZ: an active finding clears once the last hour stands less than this many
	// spreads above the comparable days (default 1).
	ExitZ float64
	// NoiseFloor is the least relative spread a bucket is credited with (default
	// 0.005), besides one message and half the square root of the depth.
	NoiseFloor float64
	// KeepFiring is how long a firing growth finding stays firing after its condition
	// last held (default 15m): a ramp that pauses for ten minutes is one episode.
	KeepFiring time.Duration
}

// defaultLocation is defaults.BacklogTimezone, loaded once. The default is a zone
// every Go binary knows ("UTC" needs no zone database), so a failure is a broken
// constant and stops the program at start.
var defaultLocation = func() *time.Location {
	loc, err := time.LoadLocation(defaults.BacklogTimezone)
	if err != nil {
		panic(fmt.Sprintf("detectors: default backlog timezone: %v", err))
	}
	return loc
}()

func (o BacklogOptions) withDefaults() BacklogOptions {
	o.Limit = cmp.Or(o.Limit, defaults.BacklogLimit)
	o.Floor = cmp.Or(o.Floor, defaults.BacklogFloor)
	o.NearZero = cmp.Or(o.NearZero, max(1, o.Floor/10))
	o.Bucket = cmp.Or(o.Bucket, 5*time.Minute)
	o.ShortWindow = cmp.Or(o.ShortWindow, defaults.BacklogShortWindow)
	o.LongWindow = cmp.Or(o.LongWindow, defaults.BacklogLongWindow)
	o.Season = cmp.Or(o.Season, 24*time.Hour)
	o.EnterTau = cmp.Or(o.EnterTau, 0.4)

	o.ExitTau = cmp.Or(o.ExitTau, 0.2)
	o.SeasonSigmas = cmp.Or(o.SeasonSigmas, 2)
	o.MinGrowth = cmp.Or(o.MinGrowth, 0.02)
	o.WarnETA = cmp.Or(o.WarnETA, 24*time.Hour)
	o.CritETA = cmp.Or(o.CritETA, 4*time.Hour)
	o.StallAfter = cmp.Or(o.StallAfter, defaults.StallAfter)
	o.For = cmp.Or(o.For, defaults.For)
	o.Weeks = cmp.Or(o.Weeks, defaults.BacklogWeeks)
	if o.Location == nil {
		o.Location = defaultLocation
	}
	o.FastWindow = cmp.Or(o.FastWindow, 30*time.Minute)
	o.ExitZ = cmp.Or(o.ExitZ, 1)
	o.NoiseFloor = cmp.Or(o.NoiseFloor, 0.005)
	o.KeepFiring = cmp.Or(o.KeepFiring, 15*time.Minute)
	return o
}

// History is how far back the backlog detector reads: the comparable weeks, and the
// day before the oldest of them that calibrates its spread.
func (o BacklogOptions) History() time.Duration {
	o = o.withDefaults()
	return time.Duration(7*o.Weeks+1)*24*time.Hour + max(o.LongWindow, o.ShortWindow) + o.Bucket
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
	// Comparison says what growth was judged against: "comparable days", "yesterday"
	// (one or two comparable days) or "none" (insufficient data).
	Comparison string `json:"comparison,omitempty"`
}

type bucket struct {
	x float64 // hours since the window start
	v float64
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

// backlogWidth is the bucket width for these samples: Bucket, or wider for sparse
// samples (an hourly CSV), rounded to divide a day.
func backlogWidth(points []series.Point, opts BacklogOptions) time.Duration {
	return seasonalWidth(max(opts.Bucket, sampleInterval(points)))
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
	width := backlogWidth(points, opts)
	h := historyFromPoints(points, width, opts, now.Truncate(width))
	return evaluateBacklog(queue, h, points, ages, now, active, opts)
}

// evaluateBacklog judges a queue from its bucket history h (finalized up to now,
// truncated to the bucket width) and its recent raw samples (for the stall and the
// current depth). opts has its defaults applied.
func evaluateBacklog(queue string, h *depthHistory, points, ages []series.Point, now time.Time, active func(kind string) bool, opts BacklogOptions) ([]Observation, BacklogStatus) {
	st := BacklogStatus{Queue: queue, ETASeconds: -1, Comparison: "none"}
	if len(points) == 0 {
		st.Insufficient, st.Note = true, "insufficient data: no samples yet"
		return nil, st
	}
	st.Depth = points[len(points)-1].V
	var out []Observation
	stall := evaluateStall(queue, h, points, ages, now, active("backlog_stalled"), opts)
	if stall.stalled {
		st.Stalled = true
		out = append(out, stall.obs)
	}

	// Sparse samples (an hourly CSV) widen the bucket and the windows so that a window
	// always holds enough buckets.
	width := h.width
	short := max(opts.ShortWindow, time.Duration(2*minBuckets)*width)
	long := max(opts.LongWindow, 3*short)
	fast := max(opts.FastWindow, time.Duration(minBuckets)*width)
	first := h.bucketEnd(h.first).Add(-width)
	// Growth is judged on completed buckets: every pass within one bucket sees the same
	// windows, so passing every 30 s gives noise no more chances than passing once per
	// bucket, and a finding's `for` counts whole buckets.
	now = now.Truncate(width)
	i := bucketOf(now, width)
	if now.Sub(first) < short-width {
		st.Insufficient = true
		st.Note = fmt.Sprintf("insufficient data: %s of history, %s needed to judge growth", now.Sub(first).Round(time.Minute), short)
		if stall.note != "" {
			st.Note += "; " + stall.note
		}
		return out, st
	}
	wasActive := active("backlog_growth")
	nShort, nLong, nFast := int(short/width), int(long/width), int(fast/width)
	st2 := trendOf(h, i, nShort, st.Depth, opts.Limit)
	if st2.n < minBuckets {
		st.Insufficient = true
		st.Note = fmt.Sprintf("insufficient data: %d of %d sample buckets in the last %s", st2.n, nShort, short)
		return out, st
	}
	st.Tau, st.SlopePerHour = round3(st2.tau), round3(st2.slope)
	if st2.slope > 0 {
		st.ETASeconds = math.Round(st2.eta * 3600)
	}
	if stall.note != "" {
		st.Note = stall.note
	}

	// The depth itself must be rising: τ, slope, level and never drained, on the
	// short window, the long one (growth too gentle for two hours of noise) or — when
	// comparable days vouch for it — the fast windows.
	windows := []int{nShort}
	if now.Sub(first) >= long-width {
		windows = append(windows, nLong)
	}
	noise := h.bucketNoise(i, nLong, st.Depth)
	rising := func(ws []int, needTau float64) (trend, bool) {
		for _, n := range ws {
			t := st2
			if n != nShort {
				t = trendOf(h, i, n, st.Depth, opts.Limit)
			}
			// Noise is measured on the long window: six buckets, three of them a burst, are
			// too few, and two bursts make half of two hours' differences large.
			t.noise = noise

			if t.growing(opts, wasActive, needTau, n < 2*minBuckets) && !t.fallingNow() {
				return t, true
			}
		}
		return trend{}, false
	}

	cmp := h.compare(i, opts)
	tier := cmp.tier
	var tr trend
	var growing bool
	switch tier {
	case tierNone:
		// Steady over the short window and, once there is that much history, over the
		// long one too, and the limit less than WarnETA away at the slower of the two.
		tr, growing = rising(windows[:1], opts.EnterTau)
		if growing && len(windows) > 1 {
			lt, ok := rising(windows[1:], opts.EnterTau)
			growing = ok
			if ok && lt.slope < tr.slope {
				tr = lt
			}
		}
		if growing && tr.eta >= opts.WarnETA.Hours() && !wasActive {
			growing = false
			st.Insufficient = true
			st.Note = fmt.Sprintf("insufficient data: growing at %+.0f/h but no comparable day (the same kind of day, weekday "+
				"or weekend) in the history, so a daily or weekly cycle cannot be ruled out; it pages now only if the limit "+
				"is less than %s away", tr.slope, opts.WarnETA)
		}
	default:
		// Every statistic that stands out is checked against a rising depth over a window
		// at least as long as itself (a two-hour ramp statistic is confirmed by a two-hour
		// trend, a half-hour level by a half-hour one), shortest first.
		need := 2 * opts.SeasonSigmas
		if wasActive {
			need = opts.ExitZ
		}
		all := slices.Clone(windows)
		all = append(all, 2*nFast, nFast)
		slices.Sort(all)
		for _, r := range cmp.all {
			if r.z < need {
				continue
			}
			ws := slices.DeleteFunc(slices.Clone(all), func(n int) bool { return n < r.stat.m })
			// The further the queue stands above its comparable days, the less steadiness
			// the trend has to show to confirm that it is rising: at twice the entry z the
			// exit τ is enough.
			tau := max(opts.ExitTau, opts.EnterTau*min(1, 2*opts.SeasonSigmas/max(r.z, 1e-9)))
			if t, ok := rising(ws, tau); ok {
				tr, growing = t, true
				cmp.statResult = r
				break
			}
		}
	}
	switch tier {
	case tierComparable:
		st.Comparison = "comparable days"
	case tierYesterday:
		st.Comparison = "yesterday"
	}
	if growing {
		st.Tau, st.SlopePerHour = round3(tr.tau), round3(tr.slope)
		st.ETASeconds = math.Round(max(0, tr.eta) * 3600)
	}
	st.Growing = growing
	if !growing {
		return out, st
	}
	return append(out, growthObservation(queue, st, tr, st2, cmp, h, i, opts)), st
}

func growthObservation(queue string, st BacklogStatus, tr, st2 trend, c seasonal, h *depthHistory, i int64, opts BacklogOptions) Observation {
	tier := c.tier
	sev := SeverityWarning
	if tr.eta < opts.CritETA.Hours() {
		sev = SeverityCritical
	}
	etaText := "more than a year"
	if tr.eta < 24*365 {
		etaText = "about " + humanHours(tr.eta)
	}
	desc := fmt.Sprintf("Queue %s has grown steadily for the last %s: Mann–Kendall τ %.2f over %d bucket medians "+
		"(1 would be growth in every step), Theil–Sen slope %+.0f messages/hour, depth now %.0f (floor %.0f) and it did "+
		"not drop to %.0f or below in the window, so workers are not catching up. At this rate it reaches the limit of %.0f "+
		"in %s.", queue, tr.window, tr.tau, len(tr.buckets), tr.slope, st.Depth, opts.Floor, opts.NearZero, opts.Limit, etaText)
	var above, noise float64
	if tier == tierNone {
		desc += " No comparable day in the history yet: a daily or weekly cycle cannot be ruled out, but the limit is near."
		noise = tr.noise
	} else {
		above = math.Exp(c.today) - math.Exp(c.base)
		noise = c.spread * (st.Depth + h.logOffset)
		desc += fmt.Sprintf(" The last half hour is %.0f messages above the same time on %s; the %s of the last %s stands "+
			"%.1f spreads above theirs, so this is not the usual pattern of the day.", above, daysText(c.days, c.sameWeekday),
			c.stat.name, time.Duration(c.stat.m)*h.width, c.z)
	}
	if tr.decreases == 0 {
		desc += " The depth did not go down once in the window: the workers may have stopped, or producers outpace them."
	}
	ev := map[string]float64{
		"depth": st.Depth, "level": math.Round(tr.level), "tau": round3(tr.tau), "slope_per_hour": round3(tr.slope),
		"eta_hours": round3(min(tr.eta, 1e6)), "limit": opts.Limit, "floor": opts.Floor, "min_depth_in_window": tr.minDepth,
		"window_hours": tr.window.Hours(), "short_window_tau": round3(st2.tau), "buckets": float64(len(tr.buckets)),
		"seasonal_check": float64(tier), "noise": math.Round(noise),
	}
	if tier != tierNone {
		// Whether the queue is pulling away from its comparable days: τ of the residual
		// over the short window.
		ev["tau_vs_yesterday"] = round3(h.residualTau(i, len(st2.buckets)))
		ev["above_yesterday"] = math.Round(above)
		ev["baseline"] = math.Round(math.Exp(c.base) - h.logOffset)
		ev["z"] = round3(c.z)
		ev["comparable_days"] = float64(len(c.days))
	}
	return Observation{
		Kind: "backlog_growth", Severity: sev, Subject: queue, Labels: map[string]string{"queue": queue},
		Summary:     fmt.Sprintf("Queue %s is growing steadily (%+.0f/h, depth %.0f); limit %.0f in %s", queue, tr.slope, st.Depth, opts.Limit, etaText),
		Description: desc, Evidence: ev, For: opts.For, KeepFiringFor: opts.KeepFiring, Link: queueLink(queue),
	}
}

// trend is one window's Mann–Kendall and Theil–Sen summary.
type trend struct {
	window            time.Duration
	buckets           []bucket
	n                 int
	tau, slope, level float64
	eta               float64 // hours to the limit; +Inf when not growing
	minDepth, noise   float64
	// minAfterFirst is the lowest sample after the window's first bucket: a queue that
	// emptied after its growth began has drained, one that left zero at the start of
	// the window has not.
	minAfterFirst float64
	decreases     int
	// peak and last are the highest and the latest bucket; rise is last − first bucket,
	// jump the largest rise from one bucket to the next and jump2 the largest over two.
	peak, last, rise, jump, jump2 float64
}

// trendOf summarizes the n buckets ending at bucket i.
func trendOf(h *depthHistory, i int64, n int, depth, limit float64) trend {
	b := h.buckets(i, n)
	t := trend{window: time.Duration(n) * h.width, buckets: b, n: len(b), eta: math.Inf(1), minDepth: math.Inf(1), minAfterFirst: math.Inf(1)}
	for k := i - int64(n) + 1; k <= i; k++ {
		if lo := h.lowest(k); !math.IsNaN(lo) {
			t.minDepth = min(t.minDepth, lo)
			if k > i-int64(n)+1 {
				t.minAfterFirst = min(t.minAfterFirst, lo)
			}
		}
		if h.has(k) {
			t.decreases += int(h.dec[k-h.first])
		}
	}
	if len(b) < minBuckets {
		return t
	}
	x, y := split(b)
	t.peak, t.last, t.rise = slices.Max(y), y[len(y)-1], y[len(y)-1]-y[0]
	prev := 0.0
	for k := 1; k < len(y); k++ {
		inc := max(0, y[k]-y[k-1])
		t.jump, t.jump2 = max(t.jump, inc), max(t.jump2, inc+prev)
		prev = inc
	}
	t.tau = robust.MannKendallTau(y)
	var intercept float64
	t.slope, intercept = robust.TheilSen(x, y)
	t.level = max(depth, intercept+t.slope*t.window.Hours())
	t.noise = bucketNoise(y, t.level)
	if t.slope > 0 {
		t.eta = max(0, (limit-t.level)/t.slope)
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
// level above the floor, not drained since the window began, at its peak, and not
// made of one or two steps. An active finding
// clears only at the looser exit thresholds. A window of fewer than 12 buckets needs
// a τ 0.2 higher: six buckets are few pairs.
func (t trend) growing(opts BacklogOptions, wasActive bool, needTau float64, few bool) bool {
	if t.n < minBuckets || t.slope <= 0 {
		return false
	}
	floor := opts.Floor
	if few {
		needTau += 0.2
	}
	if wasActive {
		needTau, floor = opts.ExitTau, 0.8*opts.Floor
	}
	fastEnough := t.slope >= opts.MinGrowth*max(t.level, opts.Floor) || t.eta < opts.WarnETA.Hours()
	// Growth is at its highest now; a window whose peak is well behind it holds a burst
	// that is being worked off.
	atPeak := t.last >= t.peak-3*t.noise
	// And it is spread over the window: a rise made of one or two steps far above the
	// noise is a batch enqueued at once (a burst, or a step to a new level), not a queue
	// that keeps falling behind.
	steps := t.rise > 0 && t.jump2 >= 0.8*t.rise && t.jump >= 10*t.noise
	return t.tau >= needTau && fastEnough && t.level >= floor && t.minAfterFirst > opts.NearZero && atPeak && !steps
}

// bucketNoise is bucketNoise of the n buckets ending at i.
func (h *depthHistory) bucketNoise(i int64, n int, level float64) float64 {
	b := h.buckets(i, n)
	_, y := split(b)
	return bucketNoise(y, level)
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

// humanHours prints hours as "3h20m" or "2.5 days".
func humanHours(h float64) string {
	if h >= 48 {
		return fmt.Sprintf("%.1f days", h/24)
	}
	return time.Duration(h * float64(time.Hour)).Round(time.Minute).String()
}
