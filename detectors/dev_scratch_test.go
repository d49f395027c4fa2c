package detectors

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestScratchEp(t *testing.T) {
	filter := os.Getenv("SC")
	for _, sc := range backlogScenarios() {
		if sc.name != filter {
			continue
		}
		for _, seed := range []uint64{101, 102, 103} {
			res := runBacklogScenario(sc, seed, qualityOptions())
			for _, e := range res.episodes {
				at := e.StartedAt
				fmt.Println(seed, e.Kind, at.Sub(qualityStart), at.Weekday(), at.Format("15:04"), e.ResolvedAt.Sub(at), e.Evidence)
			}
		}
	}
}

func TestScratchZ(t *testing.T) {
	filter := os.Getenv("SC")
	for _, sc := range backlogScenarios() {
		if !strings.Contains(sc.name, filter) || sc.onset == 0 {
			continue
		}
		seed, _ := strconv.Atoi(os.Getenv("SEED"))
		points, _ := generate(sc, uint64(max(seed, 1)))
		opts := qualityOptions().withDefaults()
		width := backlogWidth(points, opts)
		h := newDepthHistory(width, opts.History(), opts.Floor, opts.Location, opts.Weeks)
		onset := qualityStart.Add(sc.onset)
		for _, p := range points {
			h.add(p)
			if p.T.Before(onset.Add(-30*time.Minute)) || p.T.After(onset.Add(100*time.Minute)) || p.T.Minute()%5 != 0 {
				continue
			}
			h.completeAt(p.T)
			i := bucketOf(p.T, width)
			c := h.compare(i, opts)
			var gates []string
			for _, n := range []int{6, 12, 24, 72} {
				tr := trendOf(h, i, n, p.V, opts.Limit)
				gates = append(gates, fmt.Sprintf("%d:%.2f/%v", n, tr.tau, tr.growing(opts, false, opts.EnterTau, n < 12)))
			}
			fmt.Printf("+%v depth %.0f tier %d z %.2f %s%d cal %.3f days %.3f %v\n", p.T.Sub(onset), p.V, c.tier, c.z, c.stat.name, c.stat.m, c.spreadCal, c.spreadDays, gates)
		}
	}
}

func TestScratchGrid(t *testing.T) {
	ss, _ := strconv.ParseFloat(os.Getenv("SS"), 64)
	et, _ := strconv.ParseFloat(os.Getenv("ET"), 64)
	opts := qualityOptions()
	opts.SeasonSigmas, opts.EnterTau = ss, et
	rows := runBacklogQuality([]uint64{1, 2, 3, 4, 5}, opts)
	printBacklogRows(os.Stdout, rows)
	for _, r := range rows {
		for _, f := range r.failures {
			fmt.Println("FAIL", f[:min(len(f), 300)])
		}
	}
}

func TestScratchNoise(t *testing.T) {
	sc := freshScenario(backlogScenario{name: os.Getenv("SC")})
	points, _ := generate(sc, 1)
	opts := qualityOptions().withDefaults()
	h := newDepthHistory(5*time.Minute, opts.History(), opts.Floor, opts.Location, opts.Weeks)
	for _, p := range points {
		h.add(p)
	}
	h.completeAt(points[len(points)-1].T)
	h.ensureResiduals(h.end() - 20)
	sd := func(x []float64) float64 {
		var m, s float64
		for _, v := range x {
			m += v / float64(len(x))
		}
		for _, v := range x {
			s += (v - m) * (v - m) / float64(len(x))
		}
		return math.Sqrt(s)
	}
	var g, r, sm []float64
	stats := map[string][]float64{}
	for j := h.first + 300; j < h.end()-20; j++ {
		if v := h.value(j); !math.IsNaN(v) {
			g = append(g, h.g(v))
		}
		if x := float64(h.res[j-h.first]); !math.IsNaN(x) {
			r = append(r, x)
		}
		if v, ok := h.smoothG(j); ok {
			sm = append(sm, v)
		}
		for _, st := range seasonStats {
			if v, ok := h.statAt(j, st); ok {
				stats[st.name+strconv.Itoa(st.m)] = append(stats[st.name+strconv.Itoa(st.m)], v)
			}
		}
	}
	fmt.Printf("sd g %.4f smooth %.4f resid %.4f", sd(g), sd(sm), sd(r))
	for k, v := range stats {
		fmt.Printf(" %s %.4f", k, sd(v))
	}
	fmt.Println()
}

func TestScratchAt(t *testing.T) {
	sc := freshScenario(backlogScenario{name: os.Getenv("SC")})
	at, _ := time.ParseDuration(os.Getenv("AT"))
	seed, _ := strconv.Atoi(os.Getenv("SEED"))
	points, _ := generate(sc, uint64(seed))
	opts := qualityOptions().withDefaults()
	h := newDepthHistory(5*time.Minute, opts.History(), opts.Floor, opts.Location, opts.Weeks)
	for _, p := range points {
		h.add(p)
		if p.T.Sub(qualityStart) < at-40*time.Minute || p.T.Sub(qualityStart) > at+10*time.Minute || p.T.Minute()%5 != 0 {
			continue
		}
		h.completeAt(p.T)
		i := bucketOf(p.T, 5*time.Minute)
		c := h.compare(i, opts)
		var gates []string
		for _, n := range []int{6, 12, 24, 72} {
			tr := trendOf(h, i, n, p.V, opts.Limit)
			gates = append(gates, fmt.Sprintf("%d:%.2f/%v", n, tr.tau, tr.growing(opts, false, opts.EnterTau, n < 12)))
		}
		fmt.Printf("%v depth %.0f tier %d days %v z %.2f %s%d v %.4f cal %.4f (n=%d) days %.4f floor %.4f %v\n", p.T.Sub(qualityStart), p.V, c.tier, c.days, c.z, c.stat.name, c.stat.m, c.value, c.spreadCal, c.calN, c.spreadDays, c.floor, gates)
	}
}

func TestScratchData(t *testing.T) {
	sc := freshScenario(backlogScenario{name: os.Getenv("SC")})
	seed, _ := strconv.Atoi(os.Getenv("SEED"))
	points, _ := generate(sc, uint64(seed))
	for _, d := range []time.Duration{5*time.Hour + 30*time.Minute, 29*time.Hour + 30*time.Minute} {
		for k := 0; k < 8; k++ {
			var s float64
			from := d + time.Duration(k)*5*time.Minute
			for _, p := range points {
				if t := p.T.Sub(qualityStart); t > from && t <= from+5*time.Minute {
					s += p.V / 5
				}
			}
			fmt.Printf("%v %.0f  ", from+5*time.Minute, s)
		}
		fmt.Println()
	}
}

func TestScratchTrend(t *testing.T) {
	sc := freshScenario(backlogScenario{name: os.Getenv("SC")})
	at, _ := time.ParseDuration(os.Getenv("AT"))
	seed, _ := strconv.Atoi(os.Getenv("SEED"))
	points, _ := generate(sc, uint64(seed))
	opts := qualityOptions().withDefaults()
	h := newDepthHistory(5*time.Minute, opts.History(), opts.Floor, opts.Location, opts.Weeks)
	for _, p := range points {
		if p.T.Sub(qualityStart) > at {
			break
		}
		h.add(p)
	}
	now := qualityStart.Add(at)
	h.completeAt(now)
	i := bucketOf(now, 5*time.Minute)
	n, _ := strconv.Atoi(os.Getenv("N"))
	tr := trendOf(h, i, max(n, 6), 0, opts.Limit)
	_, y := split(tr.buckets)
	fmt.Println("buckets", y, "tau", tr.tau, "slope", tr.slope, "peak", tr.peak, "last", tr.last, "noise", tr.noise, "minAfter", tr.minAfterFirst, tr.growing(opts, false, opts.EnterTau, true), tr.fallingNow())
}
