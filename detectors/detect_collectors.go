package detectors

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/loop"
)

var collectorKinds = []string{"collector_down"}

// collectorDetector reports collector loops without a recent success (CollectorsDown).
type collectorDetector struct {
	health func() []loop.Health
	after  time.Duration
	// firstSeen is when each loop was first seen, for a loop that never succeeded.
	firstSeen map[string]time.Time
}

func newCollectorDetector(o *EngineOptions, _ promauto.Factory) Detector {
	if o.Health == nil {
		return nil
	}
	return &collectorDetector{health: o.Health, after: o.CollectorDownAfter, firstSeen: map[string]time.Time{}}
}

func (d *collectorDetector) Name() string { return "collectors" }

// Reset forgets when loops were first seen.
func (d *collectorDetector) Reset() { d.firstSeen = map[string]time.Time{} }

func (d *collectorDetector) Detect(_ context.Context, p *Pass) ([]Observation, DetectorStatus, error) {
	health := d.health()
	for _, h := range health {
		if _, ok := d.firstSeen[h.Name]; !ok {
			d.firstSeen[h.Name] = p.Now
		}
	}
	return CollectorsDown(health, d.firstSeen, p.Now, d.after), DetectorStatus{Detector: d.Name(), At: p.Now, Evaluated: len(health)}, nil
}
