package detectors

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/series"
)

var growthKinds = []string{"team_growth"}

// growthDetector finds slow-burn team growth (TeamGrowth). It reads every team's
// history and judges days, so it runs every GrowthEvery and repeats its last result
// in between.
type growthDetector struct {
	opts  GrowthOptions
	every time.Duration

	at   time.Time
	obs  []Observation
	stat DetectorStatus
}

func newGrowthDetector(o *EngineOptions, _ promauto.Factory) Detector {
	return &growthDetector{opts: o.Growth, every: o.GrowthEvery}
}

func (d *growthDetector) Name() string { return "team_growth" }

// Reset makes the next pass judge at once.
func (d *growthDetector) Reset() { d.at = time.Time{} }

func (d *growthDetector) Detect(_ context.Context, p *Pass) ([]Observation, DetectorStatus, error) {
	if p.Now.Sub(d.at) >= d.every {
		d.obs, d.stat = d.judge(p)
		d.at = p.Now
	}
	return d.obs, d.stat, nil
}

func (d *growthDetector) judge(p *Pass) ([]Observation, DetectorStatus) {
	now := p.Now
	st := DetectorStatus{Detector: d.Name(), At: now}
	prefix := series.Key(series.TeamPayloadBytes, "")
	var out []Observation
	for _, k := range p.Series.Keys(prefix) {
		id, err := strconv.ParseInt(strings.TrimPrefix(k, prefix), 10, 64)
		if err != nil {
			continue
		}
		o, found, insufficient := TeamGrowth(id, p.Series.Range(k, time.Time{}, now), now, d.opts)
		st.Evaluated++
		if insufficient {
			st.Insufficient++
		}
		if found && len(out) < 50 {
			out = append(out, o)
		}
	}
	if st.Insufficient > 0 {
		st.Note = fmt.Sprintf("insufficient data: %d teams have less than %d days of size history", st.Insufficient, d.opts.withDefaults().MinDays)
	}
	return out, st
}
