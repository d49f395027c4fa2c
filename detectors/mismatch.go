package detectors

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/verdict"
)

var mismatchKinds = []string{"cache_mismatch"}

// MismatchSource is the cache verification's latest verdicts (verdict.Service), which
// runs on its own schedule; the detector pass only reports them.
type MismatchSource interface {
	Problems() []verdict.TeamProblems
}

// mismatchDetector reports the verification's problems (CacheMismatches).
type mismatchDetector struct{ src MismatchSource }

func newMismatchDetector(o *EngineOptions, _ promauto.Factory) Detector {
	if o.Mismatches == nil {
		return nil
	}
	return &mismatchDetector{src: o.Mismatches}
}

func (d *mismatchDetector) Name() string { return "cache_verify" }

func (d *mismatchDetector) Detect(_ context.Context, p *Pass) ([]Observation, DetectorStatus, error) {
	ps := d.src.Problems()
	return CacheMismatches(ps, p.Now), DetectorStatus{Detector: d.Name(), At: p.Now, Evaluated: len(ps)}, nil
}

// maxMismatchFindings bounds the teams reported one by one, the worst first.
const maxMismatchFindings = 50

// CacheMismatches reports each team whose published caches the verification found
// different from a fresh build of its data. A missing or undecodable Redis entry is
// critical (PostHog's readers miss and fall back, and definitions have no database
// fallback); stale or different bytes, :etag and expiry problems, and S3-only problems
// are warnings. Checks that could not be made are left to the logs and metrics.
func CacheMismatches(ps []verdict.TeamProblems, now time.Time) []Observation {
	type scored struct {
		obs   Observation
		score int
	}
	var out []scored
	for _, p := range ps {
		counts := map[string]float64{}
		var what []string
		critical, score := false, 0
		for _, c := range p.Checks {
			if c.Outcome == verdict.Failed {
				continue
			}
			if c.Outcome != verdict.OK && c.Outcome != verdict.Recent {
				counts[string(c.Outcome)]++
				what = append(what, fmt.Sprintf("%s in %s %s", c.Kind.File(), c.Tier, c.Outcome))
				if c.Tier == verdict.TierRedis && (c.Outcome == verdict.Missing || c.Outcome == verdict.Undecodable) {
					critical = true
				}
				score += 10
			}
			if c.ETag != "" && c.ETag != verdict.CheckOK {
				counts["etag_"+c.ETag]++
				what = append(what, fmt.Sprintf("%s :etag %s", c.Kind.File(), c.ETag))
				score++
			}
			if c.Expiry != "" && c.Expiry != verdict.CheckOK {
				counts["expiry_"+c.Expiry]++
				what = append(what, fmt.Sprintf("%s untracked by the expiry set", c.Kind.File()))
				score++
			}
		}
		if len(what) == 0 {
			continue
		}
		team := strconv.FormatInt(p.TeamID, 10)
		sev := SeverityWarning
		if critical {
			sev, score = SeverityCritical, score+1000
		}
		counts["checked_seconds_ago"] = math.Round(max(0, now.Sub(p.CheckedAt).Seconds()))
		var details []string
		for _, c := range p.Checks {
			if c.Detail != "" {
				details = append(details, fmt.Sprintf("%s in %s: %s", c.Kind.File(), c.Tier, c.Detail))
			}
		}
		out = append(out, scored{score: score, obs: Observation{
			Kind: "cache_mismatch", Severity: sev, Subject: team, Labels: map[string]string{"team": team},
			Summary: fmt.Sprintf("Team %s's published flag caches do not match its flag data: %s", team, strings.Join(what, ", ")),
			Description: fmt.Sprintf("Verified %s ago against a fresh build from the flag database: %s. "+
				"PostHog's readers serve what is stored, so the team's users get these caches until they are rebuilt.",
				now.Sub(p.CheckedAt).Round(time.Second), strings.Join(details, "; ")),
			Evidence: counts,
			Link:     teamLink(p.TeamID),
		}})
	}
	slices.SortStableFunc(out, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	obs := make([]Observation, 0, min(len(out), maxMismatchFindings))
	for i := range min(len(out), maxMismatchFindings) {
		obs = append(obs, out[i].obs)
	}
	return obs
}
