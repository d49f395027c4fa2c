package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flagwarden/flagwarden/internal/simulator"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

func quantiles(v []float64) (p99, maxV float64) {
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	return v[min(len(v)-1, int(math.Ceil(0.99*float64(len(v))))-1)], v[len(v)-1]
}

func parameters(o Options, wo simulator.WorkerOptions, eo engineOptions, p Policy) []Param {
	// the simulator's own defaults, so the list is what ran.
	s := simulator.Options{Seed: o.Seed}.WithDefaults()
	f := s.Fleet.WithDefaults()
	w := wo.WithDefaults()
	gib := func(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }
	mib := func(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }
	return []Param{
		{"seed", fmt.Sprint(o.Seed)},
		{"simulated time per run", o.Duration.String()},
		{"simulation step (changes reach consumers at step boundaries)", o.Step.String()},
		{"teams with flags", fmt.Sprint(f.Teams)},
		{"flags per team", "Pareto α=1.16, 1 to 1,033 (PostHog's observed maximum)"},
		{"flag changes per minute (fleet, average; ±50% day/night)", fmt.Sprint(s.ChangesPerMinute)},
		{"tasks per change", "2 (update_team_flags_cache, update_team_service_flags_cache), no dedup"},
		{"test-automation team", fmt.Sprintf("id %d: %d flags, %d cohorts of %d KiB at the start", f.TestTeamID, f.TestFlags, f.TestCohorts, f.TestCohortBytes>>10)},
		{"test suite", fmt.Sprintf("every %s: saves %d flags, adds %d cohorts, never cleans up", s.TestRunEvery, s.TestRunFlags, s.TestRunCohorts)},
		{"clean-up of the test account (ends the incident)", "after " + o.FixAt.String()},
		{"Celery worker pods (one build at a time each)", fmt.Sprint(w.Pods)},
		{"pod memory limit", gib(w.Limit)},
		{"worker baseline memory (drawn per build)", gib(w.BaselineMin) + " to " + gib(w.BaselineMax)},
		{"naive build memory", fmt.Sprintf("baseline + %d × (flags payload + definitions payload) (snapshot.NaiveBuildFactor)", snapshot.NaiveBuildFactor)},
		{"naive task time", fmt.Sprintf("%s + payload at %d MB/s", w.TaskOverhead, w.BytesPerSecond/1e6)},
		{"task acknowledgement", "on receipt (Celery default): a task on a killed worker is lost"},
		{"restart backoff", fmt.Sprintf("%s doubling to %s, reset after %s running", simulator.BackoffInitial, simulator.BackoffMax, simulator.BackoffReset)},
		{"flagwarden workers per lane (small/large/quarantine)", fmt.Sprintf("%d/%d/%d", eo.SmallWorkers, eo.LargeWorkers, eo.QuarantineWorkers)},
		{"flagwarden large lane from / quarantine from (payload)", mib(eo.LargeTeamBytes) + " / " + gib(eo.HardLimitBytes)},
		{"flagwarden build", fmt.Sprintf("%s + both payloads at %d MB/s, streaming within a %s budget", eo.BuildOverhead, eo.BytesPerSecond/1e6, mib(eo.MemoryBudget))},
		{"flagwarden detector pass / for", detectEvery.String() + " in the replay (" + p.DetectInterval.String() + " live) / " + p.Detectors.Backlog.For.String()},
		{"stale after / backlog limit", fmt.Sprintf("%s / %d", p.Detectors.Cache.StaleAfter, int64(p.Detectors.Backlog.Limit))},
	}
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the side-by-side comparison, the parameters and the notes.
func (r Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "The February incident, replayed (seed %d, %s of simulated time from %s)\n\n",
		r.Seed, r.Duration, r.Start.Format("2006-01-02 15:04 MST"))
	if err := r.writeComparison(w, false); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nModel parameters:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, p := range r.Parameters {
		fmt.Fprintf(tw, "  %s\t%s\n", p.Name, p.Value)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nNotes:")
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	return nil
}

// WriteNarrowTable writes the comparison to fit width columns: the table without
// dates, what the first pages said below it, and the parameters and notes wrapped.
// WriteTable has it all in columns.
func (r Report) WriteNarrowTable(w io.Writer, width int) error {
	fmt.Fprintf(w, "The February incident, replayed (seed %d, %s of simulated time from %s)\n\n",
		r.Seed, r.Duration, r.Start.Format("2006-01-02 15:04 MST"))
	if err := r.writeComparison(w, true); err != nil {
		return err
	}
	a, b := r.AsItHappened, r.WithFlagwarden
	fmt.Fprintln(w)
	said := func(run string, p *Page) {
		if p != nil {
			writeWrapped(w, width, "", "  ", fmt.Sprintf("%s, %s said: %s: %s", run, pageAt(p, r.Start), p.Kind, p.Summary))
		}
	}
	said("As it happened, the first page", a.FirstPage)
	said("With flagwarden, the first page", b.FirstPage)
	said("With flagwarden, the first critical page", b.FirstCritical)
	fmt.Fprintln(w, "\nModel parameters:")
	for _, p := range r.Parameters {
		writeWrapped(w, width, "  ", "      ", p.Name+": "+p.Value)
	}
	fmt.Fprintln(w, "\nNotes:")
	for _, n := range r.Notes {
		writeWrapped(w, width, "  - ", "    ", n)
	}
	return nil
}

// writeWrapped writes text in lines of at most width columns at word boundaries, the
// first after first, the others after rest.
func writeWrapped(w io.Writer, width int, first, rest, text string) {
	line, prefix := first, first
	for _, word := range strings.Fields(text) {
		if len([]rune(line))+1+len([]rune(word)) > width && line != prefix {
			fmt.Fprintln(w, line)
			line, prefix = rest, rest
		}
		if line != prefix {
			line += " "
		}
		line += word
	}
	fmt.Fprintln(w, line)
}

// at renders a time as an offset from the start and a date.
func at(t *time.Time, start time.Time) string {
	if t == nil {
		return "none"
	}
	return offset(t.Sub(start)) + " (" + t.Format("Jan 2 15:04") + ")"
}

func offset(d time.Duration) string {
	days := int(d / (24 * time.Hour))
	rest := d - time.Duration(days)*24*time.Hour
	return fmt.Sprintf("day %d %02d:%02d", days, int(rest.Hours()), int(rest.Minutes())%60)
}

func pageAt(p *Page, start time.Time) string {
	if p == nil {
		return "none"
	}
	return at(&p.At, start) + " " + p.Severity
}

func pageSaid(p *Page) string {
	if p == nil {
		return "-"
	}
	s := p.Kind + ": " + p.Summary
	if len(s) > 90 {
		s = s[:87] + "..."
	}
	return s
}

func pageBacklog(p *Page) string {
	if p == nil {
		return "-"
	}
	return count(p.Backlog)
}

func count(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func dur(sec float64) string {
	d := time.Duration(sec) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(sec))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(sec)%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%.1f days", d.Hours()/24)
}

func stable(sec float64) string {
	if sec == 0 {
		return "never unstable"
	}
	return offset(time.Duration(sec)*time.Second) + " after the start"
}

// writeComparison writes the side-by-side table of both runs. Narrow, times are
// offsets from the start and what the pages said is left for below the table.
func (r Report) writeComparison(w io.Writer, narrow bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	a, b := r.AsItHappened, r.WithFlagwarden
	row := func(name, x, y string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", name, x, y) }
	when := func(t *time.Time) string { return at(t, r.Start) }
	page := func(p *Page) string { return pageAt(p, r.Start) }
	if narrow {
		when = func(t *time.Time) string {
			if t == nil {
				return "none"
			}
			return offset(t.Sub(r.Start))
		}
		page = func(p *Page) string {
			if p == nil {
				return "none"
			}
			return when(&p.At) + " " + p.Severity
		}
	}
	row("", "AS IT HAPPENED", "WITH FLAGWARDEN")
	row("first OOM kill", when(a.FirstOOMKill), when(b.FirstOOMKill))
	row("first page", page(a.FirstPage), page(b.FirstPage))
	if !narrow {
		row("  what it said", pageSaid(a.FirstPage), pageSaid(b.FirstPage))
	}
	row("  backlog when it fired", pageBacklog(a.FirstPage), pageBacklog(b.FirstPage))
	if a.FirstCritical != nil || b.FirstCritical != nil {
		row("first critical page", page(a.FirstCritical), page(b.FirstCritical))
		if !narrow {
			row("  what it said", pageSaid(a.FirstCritical), pageSaid(b.FirstCritical))
		}
	}
	row("peak backlog", count(a.PeakBacklog), count(b.PeakBacklog))
	row("OOM kills", count(int64(a.OOMKills)), count(int64(b.OOMKills)))
	row("pod-minutes in CrashLoopBackOff", count(int64(a.CrashLoopMinutes)), count(int64(b.CrashLoopMinutes)))
	row("p99 cache staleness, other teams", dur(a.OthersP99Seconds), dur(b.OthersP99Seconds))
	row("worst single-team staleness", fmt.Sprintf("%s (team %d)", dur(a.WorstTeamSeconds), a.WorstTeam),
		fmt.Sprintf("%s (team %d)", dur(b.WorstTeamSeconds), b.WorstTeam))
	row("time until stable", stable(a.StableAfterSeconds), stable(b.StableAfterSeconds))
	row("tasks enqueued / builds run", fmt.Sprintf("%s / %s", count(a.TasksEnqueued), count(a.Builds)),
		fmt.Sprintf("%s / %s", count(b.TasksEnqueued), count(b.Builds)))
	return tw.Flush()
}
