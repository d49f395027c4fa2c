package detectors

import (
	"cmp"
	"slices"
	"time"

	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// WorkerSample is one look at a worker fleet: pod counts and fleet-wide counters, as
// `flagwarden analyze workers` reads them from a CSV.
type WorkerSample struct {
	T            time.Time
	Pods         int
	Ready        int
	CrashLooping int
	// OOMKillsTotal and RestartsTotal are counters: they only go up, except when they
	// are reset (a decrease is read as a reset, as Prometheus reads counters).
	OOMKillsTotal float64
	RestartsTotal float64
}

// MaxReplayPods is the most pods one look may count: the replay models each pod at
// every step, so a count from a hostile file must not decide how much it allocates.
const MaxReplayPods = 100_000

// WorkerReplay feeds a fleet's looks through the worker-health detectors (OOM kills,
// crash loops, false calm) and the finding lifecycle in time order, as the live pass
// would see them, evaluating every step of data time. It keeps only the looks the
// detectors still read (the false-calm lookback), so a CSV of any length streams
// through it.
type WorkerReplay struct {
	namespace string
	opts      WorkerOptions
	step      time.Duration

	kills, restarts, looping []series.Point
	prev                     WorkerSample
	last                     WorkerSample
	n                        int
	next                     time.Time
	eps                      *episodes
}

// NewWorkerReplay starts a replay of one namespace; step is the detector interval
// (default 30s).
func NewWorkerReplay(namespace string, opts WorkerOptions, step time.Duration) *WorkerReplay {
	return &WorkerReplay{namespace: namespace, opts: opts.withDefaults(), step: cmp.Or(step, 30*time.Second), eps: newEpisodes()}
}

// increase is how much a counter went up since the previous look; a decrease is a
// reset, after which the counter counts from zero.
func increase(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// Add feeds the next look; looks must be in time order, and count at most
// MaxReplayPods pods (more are modelled as MaxReplayPods).
func (r *WorkerReplay) Add(s WorkerSample) {
	s.Pods, s.Ready, s.CrashLooping = min(s.Pods, MaxReplayPods), min(s.Ready, MaxReplayPods), min(s.CrashLooping, MaxReplayPods)
	if r.n > 0 && (!r.last.T.Before(r.next) || s.T.After(r.next)) {
		r.evaluate(r.last)
	}
	if r.n == 0 {
		r.next = s.T
		r.prev = s // the first look only sets the counters' starting point
	}
	r.kills = append(r.kills, series.Point{T: s.T, V: increase(r.prev.OOMKillsTotal, s.OOMKillsTotal)})
	r.restarts = append(r.restarts, series.Point{T: s.T, V: increase(r.prev.RestartsTotal, s.RestartsTotal)})
	r.looping = append(r.looping, series.Point{T: s.T, V: float64(s.CrashLooping)})
	r.prev, r.last = s, s
	r.n++
}

func (r *WorkerReplay) evaluate(s WorkerSample) {
	now := s.T
	r.next = now.Add(r.step)
	// Only what the detectors read: the false-calm lookback.
	keep := func(p []series.Point) []series.Point {
		i, _ := slices.BinarySearchFunc(p, now.Add(-r.opts.CalmLookback), func(x series.Point, t time.Time) int { return x.T.Compare(t) })
		if i > len(p)/2 {
			return slices.Clone(p[i:])
		}
		return p
	}
	r.kills, r.restarts, r.looping = keep(r.kills), keep(r.restarts), keep(r.looping)
	pods := make([]snapshot.Pod, 0, s.Pods)
	for k := range s.Pods {
		p := snapshot.Pod{Namespace: r.namespace, Ready: k < s.Ready}
		if k >= s.Pods-s.CrashLooping {
			p.Waiting = snapshot.ReasonCrashLoop
		}
		pods = append(pods, p)
	}
	in := WorkerInput{Namespace: r.namespace, Pods: pods, OOMKills: r.kills, CrashLooping: r.looping, Restarts: r.restarts,
		Firing: func(kind string) bool {
			return r.eps.tracker.IsFiring(findingID(kind, map[string]string{"namespace": r.namespace}))
		}}
	r.eps.update(now, WorkerHealth(in, now, r.opts))
}

// Finish evaluates at the last look and returns every episode, in the order they
// fired.
func (r *WorkerReplay) Finish() []Episode {
	if r.n == 0 {
		return nil
	}
	r.evaluate(r.last)
	return r.eps.sorted()
}

// Samples is how many looks were fed.
func (r *WorkerReplay) Samples() int { return r.n }

// ReplayWorkers replays a whole fleet history (see WorkerReplay).
func ReplayWorkers(namespace string, samples []WorkerSample, opts WorkerOptions, step time.Duration) []Episode {
	r := NewWorkerReplay(namespace, opts, step)
	for _, s := range samples {
		r.Add(s)
	}
	return r.Finish()
}
