package detectors

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/flagwarden/flagwarden/internal/series"
)

// Episode is one finding as a replay saw it: when it would have fired and resolved.
type Episode struct {
	Kind     string
	Severity Severity
	Subject  string
	// StartedAt is when it would have fired (paged); ResolvedAt is zero while it was
	// still firing at the end of the data.
	StartedAt  time.Time
	ResolvedAt time.Time
	Summary    string
	// Evidence is as of the moment it fired, with the highest severity reached.
	Evidence map[string]float64
}

// episodes turns a tracker's changes into episodes: one per firing, with the highest
// severity reached.
type episodes struct {
	tracker *Tracker
	list    []Episode
	open    map[string]int // finding id → index in list
}

func newEpisodes() *episodes {
	return &episodes{tracker: NewTracker(Links{}, 0), open: map[string]int{}}
}

func (e *episodes) update(now time.Time, obs []Observation) {
	for _, c := range e.tracker.Update(now, obs) {
		f := c.Finding
		idx, isOpen := e.open[f.ID]
		switch {
		case c.Dropped:
		case f.State == StateFiring && !isOpen:
			e.open[f.ID] = len(e.list)
			e.list = append(e.list, Episode{Kind: f.Kind, Severity: f.Severity, Subject: f.Subject,
				StartedAt: f.FiredAt, Summary: f.Summary, Evidence: f.Evidence})
		case f.State == StateFiring && isOpen:
			if f.Severity == SeverityCritical && e.list[idx].Severity != SeverityCritical {
				e.list[idx].Severity, e.list[idx].Summary, e.list[idx].Evidence = f.Severity, f.Summary, f.Evidence
			}
		case f.State == StateResolved && isOpen:
			e.list[idx].ResolvedAt = f.ResolvedAt
			delete(e.open, f.ID)
		}
	}
}

func (e *episodes) sorted() []Episode {
	out := slices.Clone(e.list)
	slices.SortStableFunc(out, func(a, b Episode) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// queueState is what the backlog detectors keep of one queue between passes: its
// bucket history (weeks, compactly) and its recent raw samples (for the stall check).
type queueState struct {
	opts BacklogOptions
	h    *depthHistory
	raw  []series.Point
	ages []series.Point
}

func newQueueState(opts BacklogOptions, width time.Duration) *queueState {
	return &queueState{opts: opts, h: newDepthHistory(width, opts.History(), opts.Floor, opts.Location, opts.Weeks)}
}

// add appends a depth sample (and the oldest message's age, when measured).
func (q *queueState) add(p series.Point) { q.h.add(p); q.raw = append(q.raw, p) }

func (q *queueState) addAge(p series.Point) { q.ages = append(q.ages, p) }

// trim drops raw samples the stall check no longer needs (keeping at least 64 for the
// sample interval).
func (q *queueState) trim(now time.Time) {
	keep := max(q.opts.StallAfter, time.Duration(minStallSamples)*sampleInterval(q.raw)) + q.opts.StallAfter
	cut := now.Add(-keep)
	i, _ := slices.BinarySearchFunc(q.raw, cut, func(p series.Point, t time.Time) int { return p.T.Compare(t) })
	i = min(i, max(0, len(q.raw)-65))
	if i > len(q.raw)/2 {
		q.raw = slices.Clone(q.raw[i:])
	}
	j, _ := slices.BinarySearchFunc(q.ages, cut, func(p series.Point, t time.Time) int { return p.T.Compare(t) })
	if j > len(q.ages)/2 {
		q.ages = slices.Clone(q.ages[j:])
	}
}

func (q *queueState) evaluate(queue string, now time.Time, active func(string) bool) ([]Observation, BacklogStatus) {
	q.h.completeAt(now.Truncate(q.h.width))
	q.trim(now)
	return evaluateBacklog(queue, q.h, q.raw, q.ages, now, active, q.opts)
}

// BacklogReplay feeds one queue's samples through the backlog detectors and the
// finding lifecycle in time order, exactly as the live pass would see them, evaluating
// every step of data time (or at every sample when samples are sparser). It holds the
// bucket history and a few minutes of samples, never the whole series, so a CSV of any
// length streams through it. It is what `flagwarden analyze backlog` and the quality
// benchmark run.
type BacklogReplay struct {
	queue string
	opts  BacklogOptions
	step  time.Duration

	st      *queueState
	pending []series.Point // the first samples, until the bucket width is known
	ages    []series.Point
	next    time.Time
	last    series.Point
	n       int
	eps     *episodes
	status  BacklogStatus
}

// NewBacklogReplay starts a replay; step is the detector interval (default 30s).
func NewBacklogReplay(queue string, opts BacklogOptions, step time.Duration) *BacklogReplay {
	return &BacklogReplay{queue: queue, opts: opts.withDefaults(), step: cmp.Or(step, 30*time.Second), eps: newEpisodes()}
}

// widthSamples is how many samples the bucket width is chosen from.
const widthSamples = 65

// Add feeds the next sample; age is the oldest message's age in seconds at that
// moment, or NaN where it is not measured. Samples must be in time order.
func (r *BacklogReplay) Add(p series.Point, age float64) {
	if r.st == nil {
		r.pending = append(r.pending, p)
		if !math.IsNaN(age) {
			r.ages = append(r.ages, series.Point{T: p.T, V: age})
		}
		if len(r.pending) >= widthSamples {
			r.start()
		}
		return
	}
	r.feed(p, age)
}

func (r *BacklogReplay) start() {
	r.st = newQueueState(r.opts, backlogWidth(r.pending, r.opts))
	pending, ages := r.pending, r.ages
	r.pending, r.ages = nil, nil
	k := 0
	for _, p := range pending {
		age := math.NaN()
		if k < len(ages) && ages[k].T.Equal(p.T) {
			age = ages[k].V
			k++
		}
		r.feed(p, age)
	}
}

// feed evaluates at the last sample before each step boundary: a sample is held until
// the next one shows whether a boundary lies between them.
func (r *BacklogReplay) feed(p series.Point, age float64) {
	if r.n == 0 {
		r.next = p.T
	} else if !r.last.T.Before(r.next) || p.T.After(r.next) {
		r.evaluate(r.last.T)
	}
	r.st.add(p)
	if !math.IsNaN(age) {
		r.st.addAge(series.Point{T: p.T, V: age})
	}
	r.last = p
	r.n++
}

func (r *BacklogReplay) evaluate(now time.Time) {
	r.next = now.Add(r.step)
	active := func(kind string) bool {
		return r.eps.tracker.IsFiring(findingID(kind, map[string]string{"queue": r.queue}))
	}
	// Only samples up to now: the held sample is added after this evaluation.
	obs, st := r.st.evaluate(r.queue, now, active)
	r.status = st
	r.eps.update(now, obs)
}

// Finish evaluates at the last sample and returns every episode, in the order they
// fired, and the queue's status at the end of the data.
func (r *BacklogReplay) Finish() ([]Episode, BacklogStatus) {
	if r.st == nil {
		if len(r.pending) == 0 {
			return nil, BacklogStatus{Queue: r.queue, ETASeconds: -1, Insufficient: true, Note: "insufficient data: no samples yet"}
		}
		r.start()
	}
	r.evaluate(r.last.T)
	return r.eps.sorted(), r.status
}

// Samples is how many samples were fed.
func (r *BacklogReplay) Samples() int { return r.n + len(r.pending) }

// ReplayBacklog replays a whole depth history (see BacklogReplay).
func ReplayBacklog(queue string, points []series.Point, opts BacklogOptions, step time.Duration) []Episode {
	if len(points) == 0 {
		return nil
	}
	r := NewBacklogReplay(queue, opts, step)
	for _, p := range points {
		r.Add(p, math.NaN())
	}
	eps, _ := r.Finish()
	return eps
}
