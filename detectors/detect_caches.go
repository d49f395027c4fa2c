package detectors

import (
	"context"

	"github.com/prometheus/client_golang/prometheus/promauto"
)

var cacheKinds = []string{"cache_stale", "fleet_cache_stale"}

// cacheDetector judges cache freshness (StaleCaches).
type cacheDetector struct{ opts CacheOptions }

func newCacheDetector(o *EngineOptions, _ promauto.Factory) Detector {
	return &cacheDetector{opts: o.Cache}
}

func (d *cacheDetector) Name() string { return "caches" }

func (d *cacheDetector) Detect(_ context.Context, p *Pass) ([]Observation, DetectorStatus, error) {
	caches := p.Snapshots.Caches()
	none := len(caches.Teams) == 0
	return StaleCaches(caches, p.Now, d.opts), DetectorStatus{Detector: d.Name(), At: p.Now, Evaluated: len(caches.Teams),
		Insufficient: boolInt(none), Note: noteIf(none, "no cache measurements yet")}, nil
}
