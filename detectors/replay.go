package detectors

import (
	"cmp"
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

// ReplayBacklog feeds a queue's depth history through EvaluateBacklog and the
// finding lifecycle in time order, exactly as the live pass would see it, evaluating
// every step of simulated time (or at every sample when samples are sparser). It is
// what `flagwarden analyze backlog` and the quality benchmark run.
func ReplayBacklog(queue string, points []series.Point, opts BacklogOptions, step time.Duration) []Episode {
	if len(points) == 0 {
		return nil
	}
	opts = opts.withDefaults()
	step = cmp.Or(step, 30*time.Second)
	history := opts.History()
	tracker := NewTracker(Links{}, 0)
	var episodes []Episode
	open := map[string]int{} // finding id → index in episodes
	from := 0
	next := points[0].T
	active := func(kind string) bool { return tracker.IsFiring(findingID(kind, map[string]string{"queue": queue})) }
	for i := 0; i < len(points); i++ {
		now := points[i].T
		// Evaluate at the last sample before each step boundary, and at the end.
		if now.Before(next) && i < len(points)-1 && !points[i+1].T.After(next) {
			continue
		}
		for now.Sub(points[from].T) > history {
			from++
		}
		next = now.Add(step)
		obs, _ := EvaluateBacklog(queue, points[from:i+1], now, active, opts)
		for _, c := range tracker.Update(now, obs) {
			f := c.Finding
			idx, isOpen := open[f.ID]
			switch {
			case c.Dropped:
			case f.State == StateFiring && !isOpen:
				open[f.ID] = len(episodes)
				episodes = append(episodes, Episode{Kind: f.Kind, Severity: f.Severity, Subject: f.Subject,
					StartedAt: f.FiredAt, Summary: f.Summary, Evidence: f.Evidence})
			case f.State == StateFiring && isOpen:
				if f.Severity == SeverityCritical && episodes[idx].Severity != SeverityCritical {
					episodes[idx].Severity, episodes[idx].Summary, episodes[idx].Evidence = f.Severity, f.Summary, f.Evidence
				}
			case f.State == StateResolved && isOpen:
				episodes[idx].ResolvedAt = f.ResolvedAt
				delete(open, f.ID)
			}
		}
	}
	slices.SortStableFunc(episodes, func(a, b Episode) int { return a.StartedAt.Compare(b.StartedAt) })
	return episodes
}
