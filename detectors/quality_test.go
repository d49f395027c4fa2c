package detectors

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// The quality benchmark: labelled scenarios run through the same code the live pass
// and `flagwarden analyze` use, scored for precision, recall, false findings per
// simulated day and time to detection. Run it with
//
//	go test ./detectors -run TestQuality -v
//
// FLAGWARDEN_QUALITY_SEEDS=N runs N seeds per scenario (default 3: the asserted ones;
// 1 under -short or -race).
//
// It prints the tables and asserts the targets: every injected giant ranked first and
// flagged, no false findings on the no-anomaly scenarios, and a ramp of 10 %/h or more
// on noisy traffic detected within 2 hours of its onset.

var qualityStart = time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC)

type backlogScenario struct {
	name string
	// kinds the scenario should produce after onset; empty: no anomaly.
	want  []string
	onset time.Duration
	// end of the anomaly (findings starting after end+grace are false).
	end  time.Duration
	gen  func(r *rand.Rand, t time.Duration, noise float64) float64
	days float64
	// target detection deadline after onset, asserted when non-zero.
	deadline time.Duration
	// sigma is the standard deviation of the autocorrelated traffic noise (default 50,
	// 5 % of the 1000-message base level).
	sigma float64
}

const sampleEvery = time.Minute

// ar1 is autocorrelated noise: traffic is bursty, not independent per minute.
type ar1 struct{ v float64 }

func (a *ar1) next(r *rand.Rand, sigma float64) float64 {
	const phi = 0.8
	a.v = phi*a.v + math.Sqrt(1-phi*phi)*sigma*r.NormFloat64()
	return a.v
}

func hours(t time.Duration) float64 { return t.Hours() }

func cmpOr(v, d float64) float64 {
	if v == 0 {
		return d
	}
	return v
}

func rampScenario(rate float64, deadline time.Duration) backlogScenario {
	const base = 1000.0
	onset := 3*24*time.Hour + 10*time.Hour
	end := onset + 10*time.Hour
	return backlogScenario{
		name: fmt.Sprintf("ramp %.0f%%/h", rate*100), want: []string{"backlog_growth"},
		onset: onset, end: end, days: 4.5, deadline: deadline,
		gen: func(r *rand.Rand, t time.Duration, noise float64) float64 {
			v := base + noise
			if t > onset && t <= end {
				v += base * rate * hours(t-onset)
			}
			if t > end { // drained after the incident
				v = base*0.2 + noise*0.2
			}
			return v
		},
	}
}

func backlogScenarios() []backlogScenario {
	const base = 1000.0
	return []backlogScenario{
		{name: "flat noise", days: 5, gen: func(_ *rand.Rand, _ time.Duration, n float64) float64 { return base + n }},
		{name: "single burst", days: 5, gen: func(_ *rand.Rand, t time.Duration, n float64) float64 {
			// +20k enqueued at once on day 3, drained over 40 minutes.
			at := 3*24*time.Hour + 14*time.Hour
			if t >= at && t < at+40*time.Minute {
				return base + n + 20000*(1-float64(t-at)/float64(40*time.Minute))
			}
			return base + n
		}},
		{name: "cron sawtooth", days: 5, gen: func(_ *rand.Rand, t time.Duration, n float64) float64 {
			// An hourly job enqueues 5000 tasks that drain over 45 minutes.
			m := t % time.Hour
			v := base + n*0.3
			if m < 45*time.Minute {
				v += 5000 * (1 - float64(m)/float64(45*time.Minute))
			}
			return v
		}},
		{name: "daily cycle", days: 5, gen: func(_ *rand.Rand, t time.Duration, n float64) float64 {
			return 3000 + 2500*math.Sin(2*math.Pi*hours(t)/24) + n
		}},
		{name: "daily cycle, nightly drain", days: 5, gen: func(_ *rand.Rand, t time.Duration, n float64) float64 {
			return max(0, 1500*math.Sin(2*math.Pi*hours(t)/24)+n)
		}},
		rampScenario(0.05, 0),
		rampScenario(0.10, 2*time.Hour),
		rampScenario(0.20, 2*time.Hour),
		rampScenario(0.50, 2*time.Hour),
		noisier(rampScenario(0.10, 0), 80),
		noisier(backlogScenario{name: "flat noise", days: 5, gen: func(_ *rand.Rand, _ time.Duration, n float64) float64 { return base + n }}, 80),
		{name: "workers stop (stall)", want: []string{"backlog_stalled", "backlog_growth"}, days: 4,
			onset: 3*24*time.Hour + 9*time.Hour, end: 4 * 24 * time.Hour, deadline: 2 * time.Hour,
			gen: func(_ *rand.Rand, t time.Duration, n float64) float64 {
				at := 3*24*time.Hour + 9*time.Hour
				if t <= at {
					return max(0, 20+n*0.05) // a healthy queue that keeps up
				}
				return 20 + 400*hours(t-at) // nothing consumes; producers keep adding
			}},
	}
}

// noisier runs a scenario on 8 % noise: reported, with the 2-hour target not asserted
// (at this noise a 10 %/h ramp needs more than two hours to stand out).
func noisier(sc backlogScenario, sigma float64) backlogScenario {
	sc.sigma = sigma
	sc.name += fmt.Sprintf(", noise σ=%.0f%%", sigma/10)
	return sc
}

// stepOf is the simulated detector interval in the benchmark: coarser than live (30s)
// to keep the run short; time to detection is measured to this resolution.
const stepOf = 5 * time.Minute

type backlogResult struct {
	scenario string
	seed     uint64
	days     float64
	episodes []Episode
	sc       backlogScenario
}

func runBacklogScenario(sc backlogScenario, seed uint64) backlogResult {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	n := int(sc.days * 24 * float64(time.Hour) / float64(sampleEvery))
	points := make([]series.Point, 0, n)
	var noise ar1
	for i := range n {
		t := time.Duration(i) * sampleEvery
		v := sc.gen(r, t, noise.next(r, cmpOr(sc.sigma, 50)))
		points = append(points, series.Point{T: qualityStart.Add(t), V: math.Round(max(0, v))})
	}
	opts := BacklogOptions{Limit: 100000, Floor: 100, For: 5 * time.Minute}
	return backlogResult{scenario: sc.name, seed: seed, days: sc.days, sc: sc,
		episodes: ReplayBacklog("q", points, opts, stepOf)}
}

// classify splits a scenario's episodes into true and false, and finds the time to
// detection of each wanted kind.
func (b backlogResult) classify() (truePos, falsePos int, detect map[string]time.Duration) {
	detect = map[string]time.Duration{}
	onset := qualityStart.Add(b.sc.onset)
	end := qualityStart.Add(b.sc.end + 2*time.Hour)
	for _, e := range b.episodes {
		wanted := slices.Contains(b.sc.want, e.Kind)
		if wanted && !e.StartedAt.Before(onset) && e.StartedAt.Before(end) {
			truePos++
			if _, ok := detect[e.Kind]; !ok {
				detect[e.Kind] = e.StartedAt.Sub(onset)
			}
			continue
		}
		falsePos++
	}
	return truePos, falsePos, detect
}

func TestQualityBacklog(t *testing.T) {
	t.Parallel()
	seeds := qualitySeeds()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "backlog scenario\truns\tprecision\trecall\tfalse/day\tdetect median\tdetect max\t")
	type agg struct {
		tp, fp, runs, detected int
		days                   float64
		ttd                    []time.Duration
	}
	for _, sc := range backlogScenarios() {
		var a agg
		for _, seed := range seeds {
			res := runBacklogScenario(sc, seed)
			tp, fp, det := res.classify()
			a.tp += tp
			a.fp += fp
			a.runs++
			a.days += res.days
			// Detection means the first wanted kind fired.
			first := time.Duration(-1)
			for _, k := range sc.want {
				if d, ok := det[k]; ok && (first < 0 || d < first) {
					first = d
				}
			}
			if first >= 0 {
				a.detected++
				a.ttd = append(a.ttd, first)
			}
			if len(sc.want) == 0 {
				assert.Zerof(t, fp, "scenario %q seed %d: no anomaly, but findings: %s", sc.name, seed, describe(res.episodes))
			}
			if sc.deadline > 0 {
				assert.GreaterOrEqualf(t, first, time.Duration(0), "scenario %q seed %d: not detected; episodes: %s", sc.name, seed, describe(res.episodes))
				assert.LessOrEqualf(t, first, sc.deadline, "scenario %q seed %d: detected %s after onset", sc.name, seed, first)
				assert.Zerof(t, fp, "scenario %q seed %d: false findings: %s", sc.name, seed, describe(res.episodes))
			}
		}
		prec, rec := "-", "-"
		if a.tp+a.fp > 0 {
			prec = fmt.Sprintf("%.2f", float64(a.tp)/float64(a.tp+a.fp))
		}
		if len(sc.want) > 0 {
			rec = fmt.Sprintf("%.2f", float64(a.detected)/float64(a.runs))
		}
		med, mx := "-", "-"
		if len(a.ttd) > 0 {
			slices.Sort(a.ttd)
			med, mx = a.ttd[len(a.ttd)/2].String(), a.ttd[len(a.ttd)-1].String()
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%.2f\t%s\t%s\t\n", sc.name, a.runs, prec, rec, float64(a.fp)/a.days, med, mx)
	}
	w.Flush()
}

func qualitySeeds() []uint64 {
	n := 3
	if testing.Short() || raceEnabled {
		n = 1
	}
	if v, err := strconv.Atoi(os.Getenv("FLAGWARDEN_QUALITY_SEEDS")); err == nil && v > 0 {
		n = v
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

func describe(eps []Episode) string {
	var parts []string
	for _, e := range eps {
		parts = append(parts, fmt.Sprintf("%s %s at %s (%s)", e.Kind, e.Severity, e.StartedAt.Sub(qualityStart), e.Summary))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

type population struct {
	name   string
	n      int
	draw   func(r *rand.Rand) float64
	giants int
	// giant size as a multiple of the population's own largest team.
	giantX float64
}

func populations() []population {
	logNormal := func(r *rand.Rand) float64 { return math.Exp(math.Log(200e3) + 1.2*r.NormFloat64()) }
	pareto := func(alpha float64) func(r *rand.Rand) float64 {
		return func(r *rand.Rand) float64 { return 20e3 * math.Pow(1-r.Float64(), -1/alpha) }
	}
	var out []population
	for _, n := range []int{1000, 100000} {
		for _, d := range []struct {
			name string
			draw func(*rand.Rand) float64
		}{{"log-normal σ=1.2", logNormal}, {"Pareto α=1.2", pareto(1.2)}, {"Pareto α=1.5", pareto(1.5)}} {
			out = append(out, population{name: d.name, n: n, draw: d.draw})
			out = append(out, population{name: d.name, n: n, draw: d.draw, giants: 1, giantX: 20})
			out = append(out, population{name: d.name, n: n, draw: d.draw, giants: 3, giantX: 50})
		}
	}
	return out
}

func TestQualityOutliers(t *testing.T) {
	t.Parallel()
	seeds := qualitySeeds()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "outlier population\tteams\tgiants\tprecision\trecall\tfalse/snapshot\tgiants ranked first\tmax z (normal)\t")
	for _, pop := range populations() {
		var tp, fp, injected, rankedFirst, runs int
		var normalMaxZ float64
		for _, seed := range seeds {
			r := rand.New(rand.NewPCG(seed, uint64(pop.n)))
			teams := make([]snapshot.TeamSize, 0, pop.n+pop.giants)
			natMax := 0.0
			for i := range pop.n {
				v := pop.draw(r)
				natMax = max(natMax, v)
				teams = append(teams, snapshot.TeamSize{TeamID: int64(i + 1), FlagsPayloadBytes: int64(v)})
			}
			giants := map[int64]bool{}
			for g := range pop.giants {
				id := int64(1_000_000 + g)
				giants[id] = true
				teams = append(teams, snapshot.TeamSize{TeamID: id, FlagsPayloadBytes: int64(natMax * pop.giantX * (1 + 0.1*float64(g)))})
			}
			// The memory rule is an absolute rule, not statistics: switch it off here.
			opts := OutlierOptions{MinBytes: 1 << 20}
			rep := ScoreTeams(teams, opts)
			runs++
			injected += pop.giants
			for _, s := range rep.Top {
				switch {
				case giants[s.Team.TeamID] && s.Outlier:
					tp++
				case s.Outlier:
					fp++
				}
				if !giants[s.Team.TeamID] {
					normalMaxZ = max(normalMaxZ, s.Z)
				}
				if giants[s.Team.TeamID] && s.Rank <= pop.giants {
					rankedFirst++
				}
			}
			assert.Equalf(t, pop.giants, countRankedFirst(rep, giants), "%s n=%d seed %d: every giant must outrank every normal team", pop.name, pop.n, seed)
			for _, s := range rep.Top {
				if giants[s.Team.TeamID] {
					assert.Truef(t, s.Outlier, "%s n=%d seed %d: giant %d (z %.2f, ratio %.1f, tail limit %.3g) not flagged", pop.name, pop.n, seed, s.Team.TeamID, s.Z, s.Ratio, s.TailLimit)
				} else {
					assert.Falsef(t, s.Outlier, "%s n=%d seed %d: normal team %d flagged (z %.2f, ratio %.1f, tail limit %.3g, size %d)", pop.name, pop.n, seed, s.Team.TeamID, s.Z, s.Ratio, s.TailLimit, s.Team.PayloadBytes())
				}
			}
		}
		prec, rec := "-", "-"
		if tp+fp > 0 {
			prec = fmt.Sprintf("%.2f", float64(tp)/float64(tp+fp))
		}
		if injected > 0 {
			rec = fmt.Sprintf("%.2f", float64(tp)/float64(injected))
		}
		giantsText := "none"
		if pop.giants > 0 {
			giantsText = fmt.Sprintf("%d × %.0f× max", pop.giants, pop.giantX)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%.2f\t%d/%d\t%.2f\t\n", pop.name, pop.n, giantsText, prec, rec,
			float64(fp)/float64(runs), rankedFirst, injected, normalMaxZ)
	}
	w.Flush()
}

func countRankedFirst(rep OutlierReport, giants map[int64]bool) int {
	n := 0
	for _, s := range rep.Top {
		if giants[s.Team.TeamID] && s.Rank <= len(giants) {
			n++
		}
	}
	return n
}
