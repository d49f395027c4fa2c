package detectors

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/units"
)

var outlierKinds = []string{"outlier_team"}

// outlierDetector finds the teams whose size stands out (ScoreTeams, Outliers).
type outlierDetector struct {
	opts     OutlierOptions
	maxScore prometheus.Gauge
}

func newOutlierDetector(o *EngineOptions, f promauto.Factory) Detector {
	return &outlierDetector{opts: o.Outlier, maxScore: f.NewGauge(prometheus.GaugeOpts{
		Name: "flagwarden_outlier_max_score",
		Help: "The largest robust z of any team's log size in the last pass.",
	})}
}

func (d *outlierDetector) Name() string { return "outliers" }

func (d *outlierDetector) Detect(_ context.Context, p *Pass) ([]Observation, DetectorStatus, error) {
	snap := p.Snapshots.Teams()
	st := DetectorStatus{Detector: d.Name(), At: snap.At}
	if len(snap.Teams) == 0 {
		st.Insufficient, st.Note = 1, "no team sizes measured yet"
		d.maxScore.Set(0)
		return nil, st, nil
	}
	r := ScoreTeams(slices.Collect(maps.Values(snap.Teams)), d.opts)
	d.maxScore.Set(r.MaxZ)
	st.Evaluated = r.Teams
	if r.Insufficient {
		st.Insufficient = r.Teams
		st.Note = fmt.Sprintf("insufficient data: %d teams with data, the statistics need %d; only the memory limit rule applies",
			r.Teams, d.opts.withDefaults().MinTeams)
	} else {
		st.Note = fmt.Sprintf("median %s, p99.9 %s, threshold z %.2f, largest z %.2f", units.Bytes(int64(r.Median)), units.Bytes(int64(r.P999)), r.Threshold, r.MaxZ)
	}
	return Outliers(r, d.opts), st, nil
}
