package detectors

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

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
	// 0.6); ExitTau the τ below which an active finding clears (default 0.3): hysteresis.
	EnterTau float64
	ExitTau  float64
	// MinGrowth is the least growth per hour, relative to the level, that counts unless
	// the ETA is under WarnETA (default 0.02: 2 %/h).
	MinGrowth float64
	// WarnETA and CritETA: an ETA to Limit under CritETA is critical; under WarnETA even
	// slow growth counts. Defaults 24h and 4h.
	WarnETA time.Duration
	CritETA time.Duration
	// For is how long growth must hold before it fires (the detectors.for setting).
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
	o.EnterTau = cmp.Or(o.EnterTau, 0.6)
	o.ExitTau = cmp.Or(o.ExitTau, 0.3)
	o.MinGrowth = cmp.Or(o.MinGrowth, 0.02)
	o.WarnETA = cmp.Or(o.WarnETA, 24*time.Hour)
	o.CritETA = cmp.Or(o.CritETA, 4*time.Hour)
	o.StallAfter = cmp.Or(o.StallAfter, 15*time.Minute)
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
// median of its samples; empty buckets are left out.
func bucketize(points []series.Point, from, to time.Time, width time.Duration) []bucket {
	n := int(to.Sub(from) / width)
	if n <= 0 {
		return nil
	}
	groups := make([][]float64, n)
	for _, p := range points {
		if !p.T.After(from) || p.T.After(to) {
			continue
		}
		i := int(p.T.Sub(from) / width)
		if i >= n {
			i = n - 1
		}
		groups[i] = append(groups[i], p.V)
	}
	out := make([]bucket, 0, n)
	for i, g := range groups {
		if len(g) > 0 {
			out = append(out, bucket{x: (float64(i) + 0.5) * width.Hours(), v: median(g)})
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
	d := make([]float64, 0, len(points)-1)
	for i := 1; i < len(points); i++ {
		d = append(d, float64(points[i].T.Sub(points[i-1].T)))
	}
	return time.Duration(median(d))
}

// minBuckets is the fewest buckets a window needs before τ means anything.
const minBuckets = 6

// EvaluateBacklog judges one queue's depth history (points in time order, ending at or
// before now). active reports whether a finding of the given kind is already active for
// this queue (for hysteresis). It is pure: the same points, now and active give the
// same answer, live or replayed.
func EvaluateBacklog(queue string, points []series.Point, now time.Time, active func(kind string) bool, opts BacklogOptions) ([]Observation, BacklogStatus) {
	opts = opts.withDefaults()
	st := BacklogStatus{Queue: queue, ETASeconds: -1}
	if len(points) == 0 {
		st.Insufficient, st.Note = true, "no samples yet"
		return nil, st
	}
	st.Depth = points[len(points)-1].V
	var out []Observation
	if o, stalled := evaluateStall(queue, points, now, active("backlog_stalled"), opts); stalled {
		st.Stalled = true
		out = append(out, o)
	}

	// Sparse samples (an hourly CSV) widen the bucket and the windows so that a window
	// always holds enough buckets.
	width := max(opts.Bucket, sampleInterval(points))
	short := max(opts.ShortWindow, time.Duration(2*minBuckets)*width)
	long := max(opts.LongWindow, 3*short)
	first := points[0].T
	if now.Sub(first) < short-width {
		st.Insufficient = true
		st.Note = fmt.Sprintf("insufficient data: %s of history, %s needed to judge growth", now.Sub(first).Round(time.Minute), short)
		return out, st
	}
	sb := bucketize(points, now.Add(-short), now, width)
	if len(sb) < minBuckets {
		st.Insufficient = true
		st.Note = fmt.Sprintf("insufficient data: %d of %d sample buckets in the last %s", len(sb), int(short/width), short)
		return out, st
	}
	x, y := split(sb)
	tau := mannKendallTau(y)
	slope, intercept := theilSen(x, y)
	level := max(st.Depth, intercept+slope*short.Hours())
	st.Tau, st.SlopePerHour = round3(tau), round3(slope)
	eta := math.Inf(1)
	if slope > 0 {
		eta = max(0, (opts.Limit-level)/slope) // hours
		st.ETASeconds = math.Round(eta * 3600)
	}
	minDepth := math.Inf(1)
	for _, p := range points {
		if p.T.After(now.Add(-short)) && !p.T.After(now) {
			minDepth = min(minDepth, p.V)
		}
	}
	wasActive := active("backlog_growth")
	needTau := opts.EnterTau
	if wasActive {
		needTau = opts.ExitTau
	}
	fastEnough := slope >= opts.MinGrowth*max(level, opts.Floor) || eta < opts.WarnETA.Hours()
	floor := opts.Floor
	if wasActive {
		floor *= 0.8
	}
	growing := tau >= needTau && slope > 0 && fastEnough && level >= floor && minDepth > opts.NearZero

	// Rule out the daily cycle: with a season of history, today's window must be above
	// yesterday's same hours, or rising against them; without it, the long window
	// must agree at least weakly.
	seasonal := 0.0
	var longTau, vsYesterday float64
	if growing {
		if now.Sub(first) >= opts.Season+short {
			seasonal = 1
			yb := bucketize(points, now.Add(-opts.Season-short), now.Add(-opts.Season), width)
			d := seasonDiff(sb, yb)
			if len(d) >= minBuckets {
				dx, dy := split(d)
				dTau := mannKendallTau(dy)
				dSlope, _ := theilSen(dx, dy)
				vsYesterday = median(dy)
				risingVsYesterday := dTau >= max(needTau-0.1, opts.ExitTau) && dSlope > 0
				aboveYesterday := vsYesterday >= 0.5*slope*short.Hours()
				growing = risingVsYesterday || aboveYesterday
			}
		} else {
			lb := bucketize(points, now.Add(-long), now, width)
			_, ly := split(lb)
			longTau = mannKendallTau(ly)
			growing = longTau >= opts.ExitTau || wasActive
		}
	}
	st.Growing = growing
	if !growing {
		return out, st
	}
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
		"in %s.", queue, short, tau, len(sb), slope, st.Depth, opts.Floor, opts.NearZero, opts.Limit, etaText)
	if seasonal == 0 {
		desc += " Less than a day of history: a daily cycle cannot be ruled out yet."
	} else {
		desc += fmt.Sprintf(" The same hours yesterday were %.0f messages lower, so this is not the daily cycle.", vsYesterday)
	}
	ev := map[string]float64{
		"depth": st.Depth, "level": math.Round(level), "tau": round3(tau), "slope_per_hour": round3(slope),
		"eta_hours": round3(min(eta, 1e6)), "limit": opts.Limit, "floor": opts.Floor, "min_depth_in_window": minDepth,
		"window_hours": short.Hours(), "buckets": float64(len(sb)), "seasonal_check": seasonal,
	}
	if seasonal == 1 {
		ev["above_yesterday"] = math.Round(vsYesterday)
	} else {
		ev["long_window_tau"] = round3(longTau)
	}
	out = append(out, Observation{
		Kind: "backlog_growth", Severity: sev, Subject: queue, Labels: map[string]string{"queue": queue},
		Summary:     fmt.Sprintf("Queue %s is growing steadily (%+.0f/h, depth %.0f); limit %.0f in %s", queue, slope, st.Depth, opts.Limit, etaText),
		Description: desc, Evidence: ev, For: opts.For, Link: queueLink(queue),
	})
	return out, st
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

// evaluateStall: a queue is stalled when it held messages for the whole StallAfter
// window and its depth never went down once. While the finding is active it clears
// only when the depth falls below 95 % of the window's peak or to zero.
func evaluateStall(queue string, points []series.Point, now time.Time, wasActive bool, opts BacklogOptions) (Observation, bool) {
	from := now.Add(-opts.StallAfter)
	i, _ := slices.BinarySearchFunc(points, from, func(p series.Point, t time.Time) int { return p.T.Compare(t) })
	win := points[i:]
	// The window must be covered: a sample at (or just before) its start, and several.
	if len(win) < 3 || i == 0 && win[0].T.Sub(from) > opts.StallAfter/10 {
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
	stalled := lowest > 0 && decreases == 0
	if wasActive {
		stalled = cur > 0 && cur >= 0.95*peak
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
		Summary: fmt.Sprintf("Queue %s is not draining: %.0f messages and no decrease in %s", queue, cur, opts.StallAfter),
		Description: fmt.Sprintf("Queue %s has held messages for the last %s (lowest %.0f, now %.0f) and its depth did not go "+
			"down once in %d samples: nothing is taking messages off it, or the workers are far slower than producers. "+
			"Check that workers are running and not crash-looping.", queue, opts.StallAfter, lowest, cur, len(win)),
		Evidence: map[string]float64{"depth": cur, "lowest": lowest, "peak": peak, "samples": float64(len(win)),
			"window_seconds": opts.StallAfter.Seconds(), "decreases": float64(decreases)},
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
