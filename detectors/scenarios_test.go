package detectors

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/flagwarden/flagwarden/internal/series"
)

// The labelled traffic the quality benchmark replays. Every generator is a function
// of a seeded random source, so a seed gives the same series every run. Depths are
// whole messages, as a broker reports them. Days start on Monday 2 February 2026 (UTC).

var qualityStart = time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

type backlogScenario struct {
	family string
	name   string
	// kinds the scenario should produce after onset; empty: no anomaly.
	want  []string
	onset time.Duration
	// end of the anomaly (findings starting after end+2h are false).
	end  time.Duration
	days float64
	// deadline is the detection target after onset, asserted when non-zero.
	deadline time.Duration
	// maxFindings bounds the backlog findings of a no-anomaly scenario (default 0).
	maxFindings int
	// gen returns the depth at t and, when measured, the oldest message's age (NaN
	// otherwise); it is called once per minute, in order.
	gen func(r *rand.Rand, t time.Duration) (depth, age float64)
}

const sampleEvery = time.Minute

// ar1 is autocorrelated noise: traffic is bursty, not independent per minute. sigma
// is the marginal standard deviation, phi the lag-one correlation per minute.
type ar1 struct {
	v, sigma, phi float64
}

func (a *ar1) next(r *rand.Rand) float64 {
	a.v = a.phi*a.v + math.Sqrt(1-a.phi*a.phi)*a.sigma*r.NormFloat64()
	return a.v
}

func hours(t time.Duration) float64 { return t.Hours() }

// flat is a steady level with noise of sigma (absolute), autocorrelated by phi.
func flat(level, sigma, phi float64) func(*rand.Rand, time.Duration) (float64, float64) {
	n := &ar1{sigma: sigma, phi: phi}
	return func(r *rand.Rand, _ time.Duration) (float64, float64) { return level + n.next(r), math.NaN() }
}

func noAge(v float64) (float64, float64) { return v, math.NaN() }

// ramp is a steady level that starts growing by rate (a share of the level per hour)
// at onset, for 10 hours, then is drained.
func ramp(rate, sigma, phi float64, onset time.Duration, deadline time.Duration, days float64) backlogScenario {
	const base = 1000.0
	end := onset + 10*time.Hour
	name := fmt.Sprintf("ramp %.0f%%/h", rate*100)
	switch {
	case phi == 0:
		name += fmt.Sprintf(", noise %.0f%%", sigma/10)
	case sigma != 50:
		name += fmt.Sprintf(", bursty noise %.0f%%", sigma/10)
	}
	if onset < 2*day {
		name += ", after a flat day"
	}
	fam := "slow ramp"
	if rate >= 0.2 {
		fam = "fast ramp"
	}
	return backlogScenario{
		family: fam, name: name, want: []string{"backlog_growth"},
		onset: onset, end: end, days: days, deadline: deadline,
		gen: func() func(*rand.Rand, time.Duration) (float64, float64) {
			n := &ar1{sigma: sigma, phi: phi}
			return func(r *rand.Rand, t time.Duration) (float64, float64) {
				v := base + n.next(r)
				if t > onset && t <= end {
					v += base * rate * hours(t-onset)
				}
				if t > end { // drained after the incident
					v = base*0.2 + n.v*0.2
				}
				return noAge(v)
			}
		}(),
	}
}

// weekdayRamp is a queue that fills every weekday morning (from about 07:00, to about
// 20k by 11:00) and drains by evening, quiet at weekends; the start moves by a few
// minutes and the peak by ±10 % from day to day.
func weekdayRamp() func(*rand.Rand, time.Duration) (float64, float64) {
	type dayShape struct{ start, peak float64 }
	shapes := map[int]dayShape{}
	n := &ar1{sigma: 0.02, phi: 0.5}
	return func(r *rand.Rand, t time.Duration) (float64, float64) {
		d := int(t / day)
		s, ok := shapes[d]
		if !ok {
			s = dayShape{start: 7 + r.NormFloat64()*5/60, peak: 20000 * (1 + 0.1*r.NormFloat64())}
			shapes[d] = s
		}
		h := hours(t % day)
		wd := qualityStart.Add(t).Weekday()
		v := 0.0
		if wd != time.Saturday && wd != time.Sunday {
			switch {
			case h < s.start:
			case h < s.start+4: // filling, fastest at first
				x := (h - s.start) / 4
				v = s.peak * (1 - (1-x)*(1-x))
			case h < s.start+11: // draining
				v = s.peak * (1 - (h-s.start-4)/7)
			}
		}
		v *= 1 + n.next(r)
		v += math.Sqrt(max(v, 0)) * r.NormFloat64()
		return noAge(max(0, v) + float64(r.IntN(4)))
	}
}

// taxiLike has a daily and a weekly cycle shaped like city taxi demand (a night
// trough, morning and evening peaks on weekdays, late nights on Friday and Saturday,
// late mornings at weekends), ±5 % from day to day.
func taxiLike() func(*rand.Rand, time.Duration) (float64, float64) {
	weekday := []float64{0.45, 0.3, 0.2, 0.15, 0.12, 0.15, 0.35, 0.6, 0.75, 0.75, 0.7, 0.7, 0.72, 0.72, 0.75, 0.75, 0.7, 0.8, 0.95, 1.0, 0.95, 0.9, 0.85, 0.7}
	friday := append([]float64(nil), weekday...)
	friday[21], friday[22], friday[23] = 0.95, 0.95, 0.9
	saturday := []float64{0.85, 0.75, 0.6, 0.45, 0.3, 0.2, 0.15, 0.2, 0.3, 0.45, 0.6, 0.7, 0.75, 0.75, 0.75, 0.75, 0.75, 0.8, 0.85, 0.9, 0.85, 0.85, 0.9, 0.9}
	sunday := append([]float64(nil), saturday...)
	sunday[20], sunday[21], sunday[22], sunday[23] = 0.75, 0.65, 0.55, 0.5
	monday := append([]float64(nil), weekday...)
	monday[0], monday[1], monday[2] = 0.4, 0.25, 0.17 // after a Sunday
	factor := map[int]float64{}
	n := &ar1{sigma: 0.03, phi: 0.5}
	return func(r *rand.Rand, t time.Duration) (float64, float64) {
		d := int(t / day)
		f, ok := factor[d]
		if !ok {
			f = 1 + 0.05*r.NormFloat64()
			factor[d] = f
		}
		var prof []float64
		switch qualityStart.Add(t).Weekday() {
		case time.Monday:
			prof = monday
		case time.Friday:
			prof = friday
		case time.Saturday:
			prof = saturday
		case time.Sunday:
			prof = sunday
		default:
			prof = weekday
		}
		h := hours(t % day)
		k := int(h)
		next := prof[(k+1)%24]
		if k == 23 {
			next = prof[23] // the next day's profile starts where it starts
		}
		v := 25000 * f * (prof[k] + (next-prof[k])*(h-float64(k)))
		v *= 1 + n.next(r)
		return noAge(v + math.Sqrt(v)*r.NormFloat64())
	}
}

// incident is shaped like February 2026: a healthy queue (a few dozen messages, a
// daily batch of a few hundred) for two and a half days, then workers that die on one
// team's rebuild: the depth climbs about 1,200 an hour, faster in the daytime, towards
// 116k over four days.
func incident(onset time.Duration) func(*rand.Rand, time.Duration) (float64, float64) {
	depth := 0.0
	return func(r *rand.Rand, t time.Duration) (float64, float64) {
		h := hours(t % day)
		in := 15 * (1 + 0.5*math.Sin(2*math.Pi*(h-9)/24)) // producers per minute
		if h >= 3 && h < 3+1.0/60 {
			in += 300 // the nightly batch
		}
		arrivals := float64(poisson(r, in))
		out := 25.0 // workers per minute
		if t > onset {
			out = in - 20*(1+0.5*math.Sin(2*math.Pi*(h-9)/24)) // net ≈ +20/min
			out = max(0, out)
		}
		depth = max(0, depth+arrivals-float64(poisson(r, out)))
		return noAge(depth)
	}
}

func poisson(r *rand.Rand, mean float64) int {
	if mean <= 0 {
		return 0
	}
	if mean > 50 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*r.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func backlogScenarios() []backlogScenario {
	const base = 1000.0
	scs := []backlogScenario{
		{family: "flat noise", name: "flat noise", days: 5},
		{family: "flat noise", name: "flat noise, noise 10%", days: 5},
		{family: "flat noise", name: "flat noise, bursty noise 8%", days: 5},
		{family: "bursts", name: "single burst", days: 5},
		{family: "bursts", name: "random bursts", days: 7},
		{family: "cron square wave", name: "cron sawtooth", days: 5},
		{family: "cron square wave", name: "cron square wave", days: 5},
		{family: "cron square wave", name: "cron square wave on a base", days: 5},
		{family: "constant depth", name: "constant depth 20", days: 5},
		{family: "daily cycle", name: "daily cycle", days: 5},
		{family: "daily cycle", name: "daily cycle, nightly drain", days: 5},
		{family: "daily+weekly cycle", name: "weekday ramps", days: 28, maxFindings: 1},
		// Reported rather than held to one finding: in its first week a taxi-like queue has
		// no same weekday to compare with, and its first Friday night (busier than Monday
		// to Thursday) or a busier day than the one or two before can page.
		{family: "daily+weekly cycle", name: "taxi-like", days: 28, maxFindings: 4},
		// Independent noise of 10 % per one-minute sample, a day of flat history: the
		// targets of the fast path.
		ramp(0.20, 100, 0, day+10*time.Hour, 60*time.Minute, 2.5),
		ramp(0.10, 100, 0, day+10*time.Hour, 90*time.Minute, 2.5),
		ramp(0.05, 100, 0, day+10*time.Hour, 0, 2.5),
		// Bursty noise (5 % and 8 %, lag-one correlation 0.8 per minute: about three times
		// the long-run spread of independent noise), three days of history.
		ramp(0.05, 50, 0.8, 3*day+10*time.Hour, 0, 4.5),
		ramp(0.10, 50, 0.8, 3*day+10*time.Hour, 2*time.Hour, 4.5),
		ramp(0.20, 50, 0.8, 3*day+10*time.Hour, 2*time.Hour, 4.5),
		ramp(0.50, 50, 0.8, 3*day+10*time.Hour, time.Hour, 4.5),
		ramp(0.10, 80, 0.8, 3*day+10*time.Hour, 0, 4.5),
		{family: "incident-shaped growth", name: "incident-shaped growth", want: []string{"backlog_growth", "backlog_stalled"},
			onset: 2*day + 14*time.Hour, end: 6*day + 14*time.Hour, days: 6.5, deadline: 30 * time.Minute},
		{family: "stall", name: "workers stop", want: []string{"backlog_stalled", "backlog_growth"}, days: 4,
			onset: 3*day + 9*time.Hour, end: 4 * day, deadline: 30 * time.Minute},
		{family: "stall", name: "workers stop, oldest age measured", want: []string{"backlog_stalled", "backlog_growth"}, days: 4,
			onset: 3*day + 9*time.Hour, end: 4 * day, deadline: 20 * time.Minute},
	}
	for i := range scs {
		sc := &scs[i]
		if sc.gen != nil {
			continue
		}
		switch sc.name {
		case "flat noise":
			sc.gen = flat(base, 50, 0.8)
		case "flat noise, noise 10%":
			sc.gen = flat(base, 100, 0)
		case "flat noise, bursty noise 8%":
			sc.gen = flat(base, 80, 0.8)
		case "single burst":
			n := &ar1{sigma: 50, phi: 0.8}
			sc.gen = func(r *rand.Rand, t time.Duration) (float64, float64) {
				// +20k enqueued at once on day 3, drained over 40 minutes.
				at := 3*day + 14*time.Hour
				v := base + n.next(r)
				if t >= at && t < at+40*time.Minute {
					v += 20000 * (1 - float64(t-at)/float64(40*time.Minute))
				}
				return noAge(v)
			}
		case "random bursts":
			n := &ar1{sigma: 50, phi: 0.8}
			var left, drain float64
			sc.gen = func(r *rand.Rand, t time.Duration) (float64, float64) {
				// About four bursts a day of 2k–20k, each drained in 20–60 minutes.
				if left <= 0 && r.Float64() < 4.0/(24*60) {
					left = 2000 + 18000*r.Float64()
					drain = left / (20 + 40*r.Float64())
				}
				left = max(0, left-drain)
				return noAge(base + n.next(r) + left)
			}
		case "cron sawtooth":
			n := &ar1{sigma: 50, phi: 0.8}
			sc.gen = func(r *rand.Rand, t time.Duration) (float64, float64) {
				// An hourly job enqueues 5000 tasks that drain over 45 minutes.
				m := t % time.Hour
				v := base + n.next(r)*0.3
				if m < 45*time.Minute {
					v += 5000 * (1 - float64(m)/float64(45*time.Minute))
				}
				return noAge(v)
			}
		case "cron square wave":
			// An hourly job enqueues 500 tasks; a batch consumer takes them all at :30.
			sc.gen = func(_ *rand.Rand, t time.Duration) (float64, float64) {
				if t%time.Hour < 30*time.Minute {
					return noAge(500)
				}
				return noAge(0)
			}
		case "cron square wave on a base":
			sc.gen = func(_ *rand.Rand, t time.Duration) (float64, float64) {
				if t%time.Hour < 30*time.Minute {
					return noAge(1500)
				}
				return noAge(1000)
			}
		case "constant depth 20":
			sc.gen = func(*rand.Rand, time.Duration) (float64, float64) { return noAge(20) }
		case "daily cycle":
			n := &ar1{sigma: 50, phi: 0.8}
			sc.gen = func(r *rand.Rand, t time.Duration) (float64, float64) {
				return noAge(3000 + 2500*math.Sin(2*math.Pi*hours(t)/24) + n.next(r))
			}
		case "daily cycle, nightly drain":
			n := &ar1{sigma: 50, phi: 0.8}
			sc.gen = func(r *rand.Rand, t time.Duration) (float64, float64) {
				return noAge(max(0, 1500*math.Sin(2*math.Pi*hours(t)/24)+n.next(r)))
			}
		case "weekday ramps":
			sc.gen = weekdayRamp()
		case "taxi-like":
			sc.gen = taxiLike()
		case "incident-shaped growth":
			sc.gen = incident(sc.onset)
		case "workers stop", "workers stop, oldest age measured":
			withAge := sc.name != "workers stop"
			at := sc.onset
			n := &ar1{sigma: 1, phi: 0.8}
			sc.gen = func(r *rand.Rand, t time.Duration) (float64, float64) {
				age := math.NaN()
				if t <= at {
					if withAge {
						age = 5 + 10*r.Float64() // consumed within seconds
					}
					return max(0, 20+n.next(r)), age // a healthy queue that keeps up
				}
				if withAge {
					age = 10 + (t - at).Seconds()
				}
				return 20 + 400*hours(t-at), age // nothing consumes; producers keep adding
			}
		}
	}
	return scs
}

// generate draws a scenario's samples for one seed; each scenario gets its own
// generator state, so scenarios can run in parallel.
func generate(sc backlogScenario, seed uint64) (points []series.Point, ages []float64) {
	sc = freshScenario(sc)
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	n := int(sc.days * float64(day) / float64(sampleEvery))
	points = make([]series.Point, 0, n)
	ages = make([]float64, 0, n)
	for i := range n {
		t := time.Duration(i) * sampleEvery
		v, age := sc.gen(r, t)
		points = append(points, series.Point{T: qualityStart.Add(t), V: math.Round(max(0, v))})
		ages = append(ages, age)
	}
	return points, ages
}

// freshScenario rebuilds a scenario's generator (generators keep state).
func freshScenario(sc backlogScenario) backlogScenario {
	for _, s := range backlogScenarios() {
		if s.name == sc.name {
			s.want, s.deadline, s.maxFindings = sc.want, sc.deadline, sc.maxFindings
			return s
		}
	}
	return sc
}

// fleetScenario is a worker fleet looked at once a minute.
type fleetScenario struct {
	family, name string
	days         float64
	// want are the kinds that must each fire exactly once (one page per episode)
	// between onset and end (+2h); any other finding is false.
	want       []string
	onset, end time.Duration
	// deadline is how soon after onset every wanted kind must fire.
	deadline time.Duration
	gen      func(r *rand.Rand, t time.Duration) WorkerSample
}

func fleetScenarios() []fleetScenario {
	const pods = 4
	// base is a healthy fleet: all pods ready, a restart now and then (deploys).
	base := func(r *rand.Rand, s *WorkerSample) {
		s.Pods, s.Ready = pods, pods
		if r.Float64() < 1.0/(6*60) {
			s.RestartsTotal++
		}
	}
	return []fleetScenario{
		{family: "fleet OOM episodes", name: "healthy fleet", days: 3, gen: func() func(*rand.Rand, time.Duration) WorkerSample {
			var s WorkerSample
			return func(r *rand.Rand, _ time.Duration) WorkerSample { base(r, &s); return s }
		}()},
		{family: "fleet OOM episodes", name: "single OOM kill", days: 2, want: []string{"worker_oom_kills"},
			onset: 30 * time.Hour, end: 30 * time.Hour, deadline: 5 * time.Minute,
			gen: func() func(*rand.Rand, time.Duration) WorkerSample {
				var s WorkerSample
				return func(r *rand.Rand, t time.Duration) WorkerSample {
					base(r, &s)
					if t == 30*time.Hour {
						s.OOMKillsTotal++
						s.RestartsTotal++
					}
					return s
				}
			}()},
		{family: "fleet OOM episodes", name: "OOM kill every 30 min for 8 h", days: 2, want: []string{"worker_oom_kills"},
			onset: 26 * time.Hour, end: 34 * time.Hour, deadline: 5 * time.Minute,
			gen: func() func(*rand.Rand, time.Duration) WorkerSample {
				var s WorkerSample
				return func(r *rand.Rand, t time.Duration) WorkerSample {
					base(r, &s)
					if t >= 26*time.Hour && t < 34*time.Hour && (t-26*time.Hour)%(30*time.Minute) == 0 {
						s.OOMKillsTotal++
						s.RestartsTotal++
						s.Ready = pods - 1
					}
					return s
				}
			}()},
		{family: "fleet OOM episodes", name: "OOM kills, then crash loops and false calm", days: 2,
			want:  []string{"worker_oom_kills", "workers_crashlooping", "workers_false_calm"},
			onset: 26 * time.Hour, end: 32 * time.Hour, deadline: 4 * time.Hour,
			gen: func() func(*rand.Rand, time.Duration) WorkerSample {
				var s WorkerSample
				return func(r *rand.Rand, t time.Duration) WorkerSample {
					base(r, &s)
					switch {
					case t >= 26*time.Hour && t < 28*time.Hour:
						// Kills every few minutes while the big rebuild is retried.
						if r.Float64() < 1.0/8 {
							s.OOMKillsTotal++
							s.RestartsTotal++
						}
					case t >= 28*time.Hour && t < 32*time.Hour:
						// Two pods crash-loop: in back-off most of the time, running (and
						// killed) for a minute now and then; kills become rare.
						s.CrashLooping = 2
						if t%(6*time.Minute) == 0 {
							s.CrashLooping = 1
						}
						s.Ready = pods - s.CrashLooping
						if r.Float64() < 1.0/90 {
							s.OOMKillsTotal++
							s.RestartsTotal++
						}
					}
					return s
				}
			}()},
		{family: "fleet OOM episodes", name: "one pod crash-looping, flapping", days: 2, want: []string{"workers_crashlooping"},
			onset: 26 * time.Hour, end: 28 * time.Hour, deadline: 15 * time.Minute,
			gen: func() func(*rand.Rand, time.Duration) WorkerSample {
				var s WorkerSample
				return func(r *rand.Rand, t time.Duration) WorkerSample {
					base(r, &s)
					if t >= 26*time.Hour && t < 28*time.Hour {
						// Running for a minute, in back-off for four.
						if (t-26*time.Hour)%(5*time.Minute) != 0 {
							s.CrashLooping, s.Ready = 1, pods-1
						} else {
							s.RestartsTotal++
						}
					}
					return s
				}
			}()},
	}
}

// generateFleet draws a fleet scenario's looks for one seed.
func generateFleet(sc fleetScenario, seed uint64) []WorkerSample {
	for _, s := range fleetScenarios() {
		if s.name == sc.name {
			sc.gen = s.gen // generators keep state: a fresh one per run
		}
	}
	r := rand.New(rand.NewPCG(seed, 0x2545f4914f6cdd1d))
	n := int(sc.days * float64(day) / float64(time.Minute))
	out := make([]WorkerSample, 0, n)
	for i := range n {
		t := time.Duration(i) * time.Minute
		s := sc.gen(r, t)
		s.T = qualityStart.Add(t)
		out = append(out, s)
	}
	return out
}
