package detectors

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/flagwarden/flagwarden/internal/robust"
	"github.com/flagwarden/flagwarden/internal/units"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// OutlierOptions tunes the outlier-team detector.
type OutlierOptions struct {
	// MinBytes is the absolute floor: no team smaller than this is an outlier.
	MinBytes int64
	// WorkerMemoryLimit: a team whose estimated naive build needs more is always a
	// critical finding, whatever the statistics say.
	WorkerMemoryLimit int64
	// MinTeams is the smallest population the statistics are trusted on (default 30).
	MinTeams int
	// MinZ is the least robust z ever used as the threshold (default 3.5, Iglewicz and
	// Hoaglin); with many teams the threshold grows so that about one normal team per
	// snapshot would cross it.
	MinZ float64
	// MinRatio is how many times the p99.9 team a candidate must weigh (default 3).
	MinRatio float64
	// TailRisk is the chance, per snapshot, that the fitted tail of the population
	// produces a team this large by itself (default 0.1): the guard that keeps a heavy
	// (power-law) tail from flagging its own largest members.
	TailRisk float64
	// MaxFindings bounds statistical outlier findings per pass (default 20); teams over
	// the memory limit are always reported.
	MaxFindings int
}

func (o OutlierOptions) withDefaults() OutlierOptions {
	o.MinTeams = cmp.Or(o.MinTeams, 30)
	o.MinZ = cmp.Or(o.MinZ, 3.5)
	o.MinRatio = cmp.Or(o.MinRatio, 3)
	o.TailRisk = cmp.Or(o.TailRisk, 0.1)
	o.MaxFindings = cmp.Or(o.MaxFindings, 20)
	return o
}

// TeamScore is one team's standing in the cross-section.
type TeamScore struct {
	Team snapshot.TeamSize
	// Rank is 1 for the largest team.
	Rank int
	// Z is the robust z of log10(size) against the median and the upper MAD.
	Z float64
	// Ratio is size / p99.9 size.
	Ratio float64
	// TailLimit is the size the fitted tail allows for the largest of this many teams.
	TailLimit float64
	Outlier   bool
	// OverMemory is true when the estimated naive build exceeds the worker limit.
	OverMemory bool
}

// OutlierReport is one evaluation of the team cross-section.
type OutlierReport struct {
	Teams     int // teams with a non-zero size
	Median    float64
	P99       float64
	P999      float64
	Threshold float64
	// Scale is the robust spread of log10 sizes above the median; Fallback says it came
	// from the mean absolute deviation because the MAD was zero.
	Scale    float64
	Fallback bool
	// Insufficient is set when there are too few teams for the statistics; only the
	// memory rule applies then.
	Insufficient bool
	// Top holds the largest teams, ranked, (at most 20 plus every flagged team).
	Top []TeamScore
	// MaxZ is the largest robust z seen.
	MaxZ float64
}

// ScoreTeams ranks the cross-section of team sizes. Pure: the same teams give the same
// report.
func ScoreTeams(teams []snapshot.TeamSize, opts OutlierOptions) OutlierReport {
	opts = opts.withDefaults()
	sized := make([]snapshot.TeamSize, 0, len(teams))
	for _, t := range teams {
		if t.PayloadBytes() > 0 {
			sized = append(sized, t)
		}
	}
	// Largest first; ties by team id so the ranking is deterministic.
	slices.SortFunc(sized, func(a, b snapshot.TeamSize) int {
		return cmp.Or(cmp.Compare(b.PayloadBytes(), a.PayloadBytes()), cmp.Compare(a.TeamID, b.TeamID))
	})
	r := OutlierReport{Teams: len(sized)}
	n := len(sized)
	logs := make([]float64, n)
	for i, t := range sized {
		logs[n-1-i] = math.Log10(float64(t.PayloadBytes()))
	}
	if n > 0 {
		r.Median = math.Pow(10, robust.QuantileSorted(logs, 0.5))
		r.P99 = math.Pow(10, robust.QuantileSorted(logs, 0.99))
		r.P999 = math.Pow(10, robust.QuantileSorted(logs, 0.999))
	}
	r.Insufficient = n < opts.MinTeams
	logMedian := robust.QuantileSorted(logs, 0.5)
	if !r.Insufficient {
		r.Scale, r.Fallback = upperScale(logs, logMedian)
		// About one normal team per snapshot crosses Φ⁻¹(1 − 1/N).
		r.Threshold = max(opts.MinZ, normalQuantile(1-1/float64(n)))
	}
	scores := make([]TeamScore, n)
	deepest := -1 // the deepest rank that is an outlier against everything below it
	for i, t := range sized {
		s := TeamScore{Team: t, Rank: i + 1}
		size := float64(t.PayloadBytes())
		s.OverMemory = opts.WorkerMemoryLimit > 0 && t.EstimatedNaiveBuildBytes() > opts.WorkerMemoryLimit
		if !r.Insufficient && r.Scale > 0 {
			s.Z = (math.Log10(size) - logMedian) / r.Scale
			r.MaxZ = max(r.MaxZ, s.Z)
		}
		// Each candidate is compared with the teams below it only, so that several
		// giants cannot hide one another by inflating the p99.9 and the tail fit.
		if s.Z >= r.Threshold && !r.Insufficient && r.Scale > 0 {
			if p := quantileDesc(sized[i+1:], 0.999); p > 0 {
				s.Ratio = size / p
			}
			s.TailLimit = tailLimit(sized, i, opts.TailRisk)
			if size >= float64(opts.MinBytes) && s.Ratio >= opts.MinRatio && size > s.TailLimit {
				deepest = i
			}
		} else if r.P999 > 0 {
			s.Ratio = size / r.P999
		}
		scores[i] = s
	}
	// As in a generalized ESD test: if the k-th largest is an outlier against the rest,
	// the k−1 larger teams are too.
	for i := range scores {
		s := &scores[i]
		s.Outlier = i <= deepest
		if i < 20 || s.Outlier || s.OverMemory {
			r.Top = append(r.Top, *s)
		}
	}
	return r
}

// quantileDesc is the q quantile of sizes sorted largest first.
func quantileDesc(desc []snapshot.TeamSize, q float64) float64 {
	m := len(desc)
	if m == 0 {
		return 0
	}
	h := q * float64(m-1)
	lo := int(math.Floor(h))
	v := float64(desc[m-1-lo].PayloadBytes())
	if lo+1 < m {
		v += (h - float64(lo)) * (float64(desc[m-2-lo].PayloadBytes()) - v)
	}
	return v
}

// tailLimit fits a Pareto tail (Hill estimator) to the k largest teams below rank i
// (leaving the candidate and anything larger out, so a giant cannot hide itself) and
// returns the size that the largest of n such teams exceeds with probability risk
// (Weissman's extreme-quantile estimator). For a log-normal population this is
// conservative; for a power law it is the honest bound that a plain z-score lacks.
func tailLimit(sorted []snapshot.TeamSize, i int, risk float64) float64 {
	n := len(sorted)
	rest := sorted[i+1:]
	k := max(int(math.Sqrt(float64(n))), n/100)
	if len(rest) < k+1 {
		return math.Inf(1)
	}
	u := float64(rest[k].PayloadBytes())
	if u <= 0 {
		return math.Inf(1)
	}
	var h float64
	for _, t := range rest[:k] {
		h += math.Log(float64(t.PayloadBytes()) / u)
	}
	h /= float64(k)
	if h <= 0 {
		return u // every tail team the same size: anything larger stands out
	}
	// P(one team > x) ≈ (k/n)·(x/u)^(−1/h); the largest of n exceeds x with probability
	// ≈ n·P(one team > x). Solve n·(k/n)·(x/u)^(−1/h) = risk.
	return u * math.Pow(float64(k)/risk, h)
}

// Outliers turns a report into observations.
func Outliers(r OutlierReport, opts OutlierOptions) []Observation {
	opts = opts.withDefaults()
	var out []Observation
	flagged := 0
	for _, s := range r.Top {
		t := s.Team
		team := strconv.FormatInt(t.TeamID, 10)
		ev := map[string]float64{
			"value_bytes": float64(t.PayloadBytes()), "median_bytes": r.Median, "p99_bytes": r.P99,
			"p999_bytes": r.P999, "rank": float64(s.Rank), "z": round3(s.Z), "threshold_z": round3(r.Threshold),
			"ratio_to_p999": round3(s.Ratio), "estimated_memory_bytes": float64(t.EstimatedNaiveBuildBytes()),
			"worker_memory_limit_bytes": float64(opts.WorkerMemoryLimit), "teams": float64(r.Teams),
			"flags": float64(t.Flags), "cohorts": float64(t.Cohorts),
		}
		if !math.IsInf(s.TailLimit, 0) && s.TailLimit > 0 {
			ev["tail_limit_bytes"] = math.Round(s.TailLimit)
		}
		base := Observation{
			Kind: "outlier_team", Subject: team, Labels: map[string]string{"team": team},
			Evidence: ev, Link: teamLink(t.TeamID),
		}
		switch {
		case s.OverMemory:
			base.Severity = SeverityCritical
			base.Summary = fmt.Sprintf("Team %s needs an estimated %s to rebuild its flag cache, more than the %s worker limit",
				team, units.Bytes(t.EstimatedNaiveBuildBytes()), units.Bytes(int64(opts.WorkerMemoryLimit)))
			base.Description = fmt.Sprintf("Team %s's flag payload is %s (rank %d of %d teams, %.1f× the p99.9 team of %s; median %s). "+
				"A cache rebuild that loads everything at once would hold about %s, above the worker memory limit of %s, so "+
				"every such rebuild is OOM-killed and its retries crash-loop the workers. Quarantine or batch this team.",
				team, units.Bytes(t.PayloadBytes()), s.Rank, r.Teams, s.Ratio, units.Bytes(int64(r.P999)), units.Bytes(int64(r.Median)),
				units.Bytes(t.EstimatedNaiveBuildBytes()), units.Bytes(int64(opts.WorkerMemoryLimit)))
		case s.Outlier && flagged < opts.MaxFindings:
			flagged++
			base.Severity = SeverityWarning
			base.Summary = fmt.Sprintf("Team %s's flag data (%s) is far beyond every other team's", team, units.Bytes(t.PayloadBytes()))
			base.Description = fmt.Sprintf("Team %s weighs %s: rank %d of %d teams, robust z %.1f on a log scale (threshold %.1f for this many teams), "+
				"%.1f× the p99.9 team (%s); the median team weighs %s and the p99 team %s. Its estimated rebuild memory is %s "+
				"(worker limit %s). Check for accumulated test data.",
				team, units.Bytes(t.PayloadBytes()), s.Rank, r.Teams, s.Z, r.Threshold, s.Ratio, units.Bytes(int64(r.P999)),
				units.Bytes(int64(r.Median)), units.Bytes(int64(r.P99)), units.Bytes(t.EstimatedNaiveBuildBytes()), units.Bytes(int64(opts.WorkerMemoryLimit)))
		default:
			continue
		}
		out = append(out, base)
	}
	return out
}

func round3(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0
	}
	return math.Round(v*1000) / 1000
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
