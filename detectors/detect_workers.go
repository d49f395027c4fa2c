package detectors

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

var workerKinds = []string{"workers_crashlooping", "worker_oom_kills", "worker_memory_near_limit", "workers_false_calm"}

// workerDetector judges each namespace's worker fleet (WorkerHealth).
type workerDetector struct{ opts WorkerOptions }

func newWorkerDetector(o *EngineOptions, _ promauto.Factory) Detector {
	return &workerDetector{opts: o.Worker}
}

func (d *workerDetector) Name() string { return "workers" }

func (d *workerDetector) Detect(_ context.Context, p *Pass) ([]Observation, DetectorStatus, error) {
	now := p.Now
	st := DetectorStatus{Detector: d.Name(), At: now}
	byNS := map[string][]snapshot.Pod{}
	for _, pod := range p.Snapshots.Pods().Pods {
		byNS[pod.Namespace] = append(byNS[pod.Namespace], pod)
	}
	for _, kind := range []string{series.PodsTotal, series.OOMKills} {
		prefix := series.Key(kind, "")
		for _, k := range p.Series.Keys(prefix) {
			ns := strings.TrimPrefix(k, prefix)
			if _, ok := byNS[ns]; !ok {
				byNS[ns] = nil
			}
		}
	}
	if len(byNS) == 0 {
		st.Insufficient, st.Note = 1, "no worker pods measured yet"
		return nil, st, nil
	}
	wo := d.opts.withDefaults()
	var out []Observation
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		in := WorkerInput{
			Namespace:    ns,
			Pods:         byNS[ns],
			OOMKills:     p.Series.Range(series.Key(series.OOMKills, ns), now.Add(-wo.CalmLookback), now),
			CrashLooping: p.Series.Range(series.Key(series.PodsCrashLooping, ns), now.Add(-wo.CrashLoopWindow), now),
			Restarts:     p.Series.Range(series.Key(series.Restarts, ns), now.Add(-wo.OOMWindow), now),
			NotDraining:  p.NotDraining,
			Firing:       func(kind string) bool { return p.Firing(kind, map[string]string{"namespace": ns}) },
		}
		if pt, ok := p.Series.Last(series.Key(series.MemoryRatioMax, ns)); ok && now.Sub(pt.T) < wo.OOMWindow {
			in.MemoryRatio, in.HasMemoryRatio = pt.V, true
		}
		out = append(out, WorkerHealth(in, now, d.opts)...)
		st.Evaluated++
	}
	return out, st, nil
}
