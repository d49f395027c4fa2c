package detectors

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

var quarantineKinds = []string{"team_quarantined"}

// QuarantineSource lists quarantined teams (the rebuild engine).
type QuarantineSource interface {
	Quarantined(ctx context.Context) ([]snapshot.Quarantine, error)
}

// quarantineDetector reports every quarantined team (Quarantined).
type quarantineDetector struct {
	src QuarantineSource
	// last is what the last successful lookup found: a failed lookup must not resolve
	// the quarantines.
	last []Observation
}

func newQuarantineDetector(o *EngineOptions, _ promauto.Factory) Detector {
	if o.Quarantine == nil {
		return nil
	}
	return &quarantineDetector{src: o.Quarantine}
}

func (d *quarantineDetector) Name() string { return "quarantine" }

func (d *quarantineDetector) Detect(ctx context.Context, p *Pass) ([]Observation, DetectorStatus, error) {
	qs, err := d.src.Quarantined(ctx)
	if err != nil {
		err = fmt.Errorf("list quarantined teams: %w", err)
	} else {
		d.last = Quarantined(qs, p.Now)
	}
	return d.last, DetectorStatus{Detector: d.Name(), At: p.Now, Evaluated: len(d.last),
		Note: noteIf(err != nil, "last lookup failed; showing the previous quarantines")}, err
}
