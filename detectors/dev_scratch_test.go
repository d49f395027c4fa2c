package detectors

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestScratch(t *testing.T) {
	filter := os.Getenv("SC")
	for _, sc := range backlogScenarios() {
		if filter != "" && !strings.Contains(sc.name, filter) {
			continue
		}
		for seed := uint64(1); seed <= 3; seed++ {
			res := runBacklogScenario(sc, seed, qualityOptions())
			tp, fp, det := res.classify()
			fmt.Println(sc.name, seed, "tp", tp, "fp", fp, "det", det)
			for _, e := range res.episodes {
				fmt.Println("   ", e.Kind, e.StartedAt.Sub(qualityStart), e.ResolvedAt.Sub(e.StartedAt), e.Evidence)
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
		points, _ := generate(sc, 1)
		opts := qualityOptions().withDefaults()
		width := backlogWidth(points, opts)
		h := newDepthHistory(width, opts.History(), opts.Floor)
		onset := qualityStart.Add(sc.onset)
		for _, p := range points {
			h.add(p)
			if p.T.Before(onset.Add(-30*time.Minute)) || p.T.After(onset.Add(100*time.Minute)) || p.T.Minute()%5 != 0 {
				continue
			}
			h.completeAt(p.T)
			i := bucketOf(p.T, width)
			c6 := h.compare(i, 6, opts.Location, opts.Weeks)
			c12 := h.compare(i, 12, opts.Location, opts.Weeks)
			pull := h.residualTau(i, 6, 24, opts.Location, opts.Weeks)
			z6, z12 := c6.z(p.V, opts, h.logOffset), c12.z(p.V, opts, h.logOffset)
			var gates []string
			for _, n := range []int{6, 12, 24, 72} {
				tr := trendOf(h, i, n, p.V, opts.Limit)
				gates = append(gates, fmt.Sprintf("%d:%.2f/%v", n, tr.tau, tr.growing(opts, false, n < 12)))
			}
			fmt.Printf("%s +%v depth %.0f tier %d z6 %.2f z12 %.2f pull %.2f cal %.3f days %.3f %v\n", sc.name, p.T.Sub(onset), p.V, c6.tier, z6, z12, pull, c6.spreadCal, c6.spreadDays, gates)
		}
	}
}

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

func TestScratchAt(t *testing.T) {
	sc := freshScenario(backlogScenario{name: os.Getenv("SC")})
	at, _ := time.ParseDuration(os.Getenv("AT"))
	points, _ := generate(sc, 101)
	opts := qualityOptions().withDefaults()
	width := backlogWidth(points, opts)
	h := newDepthHistory(width, opts.History(), opts.Floor)
	for _, p := range points {
		h.add(p)
		if p.T.Sub(qualityStart) < at-30*time.Minute || p.T.Sub(qualityStart) > at || p.T.Minute()%5 != 0 {
			continue
		}
		h.completeAt(p.T)
		i := bucketOf(p.T, width)
		for _, n := range []int{6, 12} {
			c := h.compare(i, n, opts.Location, opts.Weeks)
			fmt.Printf("%v n=%d depth %.0f tier %d days %v resid %.4f cal %.4f spreadDays %.4f z %.2f\n", p.T.Sub(qualityStart), n, p.V, c.tier, c.days, c.resid, c.spreadCal, c.spreadDays, c.z(p.V, opts, h.logOffset))
		}
	}
}

func TestScratchDays(t *testing.T) {
	sc := freshScenario(backlogScenario{name: "ramp 20%/h"})
	points, _ := generate(sc, 1)
	opts := qualityOptions().withDefaults()
	h := newDepthHistory(5*time.Minute, opts.History(), opts.Floor)
	stop := qualityStart.Add(sc.onset + 45*time.Minute)
	for _, p := range points {
		if p.T.After(stop) {
			break
		}
		h.add(p)
	}
	h.completeAt(stop)
	i := bucketOf(stop, 5*time.Minute)
	for jj := i - 12; jj <= i+12; jj += 4 {
		var vs []string
		for _, k := range []int{1, 2, 3} {
			v, ok := h.refMean(jj, 6, k)
			vs = append(vs, fmt.Sprintf("%.4f/%v", v, ok))
		}
		fmt.Println(jj-i, vs)
	}
}
