package detectors

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Detector is one judgment over the measurements. The engine runs every configured
// detector once per pass, in registration order, and owns the findings' lifecycle;
// whatever a detector must remember between passes (histories, the last good lookup,
// when it last ran) it keeps itself.
type Detector interface {
	// Name is the detector's name in its DetectorStatus.
	Name() string
	// Detect judges the pass's inputs. An error is reported with the pass but does
	// not discard the observations: a detector whose input failed returns what it
	// last knew, so that a failed lookup never resolves a finding.
	Detect(ctx context.Context, p *Pass) ([]Observation, DetectorStatus, error)
}

// Resetter is a Detector whose memory must be forgotten when this replica regains
// leadership (Engine.Reset).
type Resetter interface {
	Reset()
}

// Pass is what every detector of one pass sees.
type Pass struct {
	Now       time.Time
	Series    *series.Store
	Snapshots *snapshot.Store
	// NotDraining names the queues that are stalled or growing right now. The backlog
	// detector sets it; the worker detector, registered after it, reads it (a calm
	// fleet in front of a full queue is not calm).
	NotDraining []string

	tracker *Tracker
}

// Firing reports whether the finding of kind with labels is firing (for hysteresis).
func (p *Pass) Firing(kind string, labels map[string]string) bool {
	return p.tracker.IsFiring(findingID(kind, labels))
}

// registration is one detector: the alertnames it produces, and how the engine builds
// it from its options (nil when its input is not wired, e.g. no quarantine source).
type registration struct {
	kinds []string
	build func(o *EngineOptions, f promauto.Factory) Detector
}

// registry lists every detector in evaluation order. Adding a detector is its own file
// (a type implementing Detector), one line here, its options in EngineOptions (and
// the config section that fills them) and its section in docs/runbook.md.
var registry = []registration{
	{backlogKinds, newBacklogDetector},
	{workerKinds, newWorkerDetector},
	{outlierKinds, newOutlierDetector},
	{growthKinds, newGrowthDetector},
	{cacheKinds, newCacheDetector},
	{collectorKinds, newCollectorDetector},
	{quarantineKinds, newQuarantineDetector},
	{mismatchKinds, newMismatchDetector},
}

// Kinds lists every alertname the detectors produce; docs/runbook.md has a section
// for each.
var Kinds = func() []string {
	var out []string
	for _, r := range registry {
		out = append(out, r.kinds...)
	}
	return slices.Clip(out)
}()

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func noteIf(cond bool, note string) string {
	if cond {
		return note
	}
	return ""
}

// DetectorStatus is what one detector measured in the last pass: how many subjects it
// judged, how many lacked the history to judge, and per-subject details where small.
type DetectorStatus struct {
	Detector     string    `json:"detector"`
	At           time.Time `json:"at"`
	Evaluated    int       `json:"evaluated"`
	Insufficient int       `json:"insufficient_data"`
	Note         string    `json:"note,omitempty"`
	// Queues holds the backlog detector's per-queue view (bounded).
	Queues []BacklogStatus `json:"queues,omitempty"`
}
