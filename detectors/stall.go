package detectors

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/flagwarden/flagwarden/internal/series"
)

// minStallSamples is the fewest samples a stall is judged on.
const minStallSamples = 20

// headAging reports whether the oldest message's age grew by at least 80 % of the
// window across it (the head did not move); ok is false without age samples covering
// the window.
func headAging(ages []series.Point, from, now time.Time, window time.Duration) (aged, ok bool, grew, last float64) {
	i, _ := slices.BinarySearchFunc(ages, from, func(p series.Point, t time.Time) int { return p.T.Compare(t) })
	win := ages[i:]
	for len(win) > 0 && win[len(win)-1].T.After(now) {
		win = win[:len(win)-1]
	}
	if len(win) < 2 || win[0].T.Sub(from) > window/10 || now.Sub(win[len(win)-1].T) > window/10 {
		return false, false, 0, 0
	}
	last = win[len(win)-1].V
	grew = last - win[0].V
	for j := 1; j < len(win); j++ {
		if win[j].V < win[j-1].V {
			return false, true, grew, last // the head moved: something consumed it
		}
	}
	span := win[len(win)-1].T.Sub(win[0].T).Seconds()
	return span > 0 && grew >= 0.8*span, true, grew, last
}

// stallResult is what the stall check found, finding or not.
type stallResult struct {
	obs     Observation
	stalled bool
	// note explains a queue that could not be judged (depth-only evidence that cannot
	// tell a stuck queue from an idle one).
	note string
}

// evaluateStall: a queue is stalled when it holds messages and nothing takes them off.
// The evidence, best first:
//
//   - the age of the oldest message, where it is measured: a head of queue that ages
//     with the clock across the window was not consumed, and one that got younger was,
//     whatever the depth did;
//   - without it, the depth: a decrease is proof of consumption. A depth that did not
//     go down once in the window is a stall only when it is also not filling (a queue
//     that rises at every sample may simply have producers faster than its workers;
//     that is backlog_growth's to judge), when the past day showed the depth going down
//     (so it can), and when the run without a decrease is half again longer than any
//     that ended by itself in the past day (a batch that sits for 30 minutes every hour
//     is not a stall at 20). A depth that never moved at all is not judged: without the
//     oldest message's age, 20 stuck messages look exactly like 20 parked ones.
//
// While the finding is active it clears only when the depth falls below 95 % of the
// window's peak, or to zero, or the head moves.
func evaluateStall(queue string, h *depthHistory, points, ages []series.Point, now time.Time, wasActive bool, opts BacklogOptions) stallResult {
	// Sparse samples widen the window: "never went down" means little over 3 samples.
	window := max(opts.StallAfter, time.Duration(minStallSamples)*sampleInterval(points))
	from := now.Add(-window)
	i, _ := slices.BinarySearchFunc(points, from, func(p series.Point, t time.Time) int { return p.T.Compare(t) })
	win := points[i:]
	// The window must be covered: a sample at (or just before) its start, and several.
	if len(win) < minStallSamples || i == 0 && win[0].T.Sub(from) > window/10 {
		return stallResult{}
	}
	peak, lowest, decreases, increases := 0.0, math.Inf(1), 0, 0
	for j, p := range win {
		peak, lowest = max(peak, p.V), min(lowest, p.V)
		if j > 0 && p.V < win[j-1].V {
			decreases++
		}
		if j > 0 && p.V > win[j-1].V {
			increases++
		}
	}
	cur := win[len(win)-1].V
	ev := map[string]float64{"depth": cur, "lowest": lowest, "peak": peak, "samples": float64(len(win)),
		"window_seconds": window.Seconds(), "decreases": float64(decreases), "increases": float64(increases)}
	headAged, haveAge, ageGrew, ageLast := headAging(ages, from, now, window)
	var stalled bool
	var evidence, note string
	if haveAge {
		stalled = lowest > 0 && headAged
		if wasActive {
			stalled = cur > 0 && headAged
		}
		ev["evidence_oldest_age"] = 1
		ev["oldest_age_seconds"] = math.Round(ageLast)
		ev["age_growth_seconds"] = math.Round(ageGrew)
		evidence = fmt.Sprintf("Evidence: the oldest message's age grew by %s in %s and never dropped, so the head of the queue "+
			"was not consumed.", time.Duration(ageGrew*float64(time.Second)).Round(time.Second), window)
	} else {
		ev["evidence_oldest_age"] = 0
		steps := len(win) - 1
		switch {
		case wasActive:
			stalled = cur > 0 && cur >= 0.95*peak
		case lowest <= 0 || decreases > 0:
		case increases*2 > steps:
			// Filling at most samples: slow workers and stopped ones look the same here.
		default:
			ok, need, refRun, why := depthOnlyStall(h, from, now, window)
			stalled, note = ok, why
			if refRun > 0 {
				ev["reference_longest_run_seconds"] = refRun.Seconds()
			}
			ev["run_needed_seconds"] = need.Seconds()
		}
		evidence = fmt.Sprintf("Evidence: depth only (no oldest-message age measured): it did not go down once in %d samples "+
			"over %s, while it did go down in the day before.", len(win), window)
	}
	if !stalled {
		return stallResult{note: note}
	}
	sev := SeverityWarning
	if cur >= opts.Floor {
		sev = SeverityCritical
	}
	how := "depth never went down"
	if haveAge {
		how = "its oldest message aged with the clock"
	}
	return stallResult{stalled: true, obs: Observation{
		Kind: "backlog_stalled", Severity: sev, Subject: queue, Labels: map[string]string{"queue": queue},
		Summary: fmt.Sprintf("Queue %s is not draining: %.0f messages and nothing consumed in %s (%s)", queue, cur, window, how),
		Description: fmt.Sprintf("Queue %s has held messages for the last %s (lowest %.0f, now %.0f) and nothing took them off. %s "+
			"Check that workers are running and not crash-looping.", queue, window, lowest, cur, evidence),
		Evidence: ev, Link: queueLink(queue),
	}}
}

// depthOnlyStall applies the depth-only rules that need the past: the queue went down
// in the reference day, and the current run without a decrease is longer than 1.5 ×
// the longest one that ended by itself there.
func depthOnlyStall(h *depthHistory, from, now time.Time, window time.Duration) (stalled bool, need, refRun time.Duration, note string) {
	need = window
	if h == nil || h.perDay() == 0 {
		return false, need, 0, ""
	}
	start := bucketOf(from, h.width) // partly inside the window: the reference ends before it
	refFrom := max(h.first, start-h.perDay())
	var refDec, refBuckets int
	var longest float64
	for j := refFrom; j < start && j < h.end(); j++ {
		k := j - h.first
		if h.n[k] == 0 {
			continue
		}
		refBuckets++
		refDec += int(h.dec[k])
		longest = max(longest, float64(h.run[k]))
	}
	refRun = time.Duration(longest * float64(time.Second))
	if refDec < 3 || time.Duration(refBuckets)*h.width < window {
		return false, need, refRun, fmt.Sprintf("depth has not gone down for %s, but it did not go down in the day before either: "+
			"without the oldest message's age a stuck queue cannot be told from an idle one", window)
	}
	need = max(window, refRun*3/2)
	if need == window {
		return true, need, refRun, ""
	}
	// The run must also hold in the buckets from now−need to the window (both ends
	// included: a decrease anywhere in them shortens the run).
	for j := bucketOf(now.Add(-need), h.width); j <= start; j++ {
		if !h.has(j) {
			continue
		}
		k := j - h.first
		if h.n[k] == 0 || h.dec[k] > 0 || h.lo[k] <= 0 {
			return false, need, refRun, ""
		}
	}
	return true, need, refRun, ""
}
