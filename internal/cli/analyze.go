package cli

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// The analyze command replays the live detectors over CSV files, so a backlog, a
// worker fleet or a population of teams can be judged offline, and a CI job can fail
// on what it finds.

// analyzeFinding is one finding as `analyze --json` prints it.
type analyzeFinding struct {
	Kind       string             `json:"kind"`
	Severity   string             `json:"severity"`
	Subject    string             `json:"subject"`
	StartedAt  *time.Time         `json:"started_at"`
	ResolvedAt *time.Time         `json:"resolved_at"`
	Summary    string             `json:"summary"`
	Evidence   map[string]float64 `json:"evidence"`
}

// analyzers are the `analyze` subcommands: what each reads and how it runs the
// detectors over it.
var analyzers = map[string]func(io.Reader, config.Detectors) ([]analyzeFinding, string, error){
	"backlog":  analyzeBacklog,
	"outliers": analyzeOutliers,
	"workers":  analyzeWorkers,
}

// failOnExit is the exit code when --fail-on finds a finding at or above its severity:
// distinct from 1 (the file could not be read), so a CI job can tell the two apart.
const failOnExit = 3

// analyzeSubjects describe each analyze subcommand's CSV.
var analyzeSubjects = []struct{ name, short, long string }{
	{"backlog", "replay a CSV of queue depths through the backlog detectors",
		`Read a CSV with header timestamp,value (RFC 3339, "YYYY-MM-DD HH:MM:SS" in UTC, or Unix
seconds; any sample interval) and, optionally, oldest_age_seconds (the age of the oldest
waiting message, the best evidence of a stall), and replay it in time order through the
live backlog detectors; each finding is reported with when it would have fired and
resolved.`},
	{"workers", "replay a CSV of worker fleet looks through the worker-health detectors",
		`Read a CSV with header timestamp,pods,ready,crashlooping,oom_kills_total,restarts_total
(fleet-wide; the totals are counters, a decrease is a reset) and replay it through the
worker-health detectors (OOM kills, crash loops, false calm).`},
	{"outliers", "score a CSV of team sizes with the outlier detector",
		`Read a CSV with header team_id,size_bytes; the extra columns flags, cohorts,
definitions_payload_bytes and project_id are used where present.`},
}

func newAnalyzeCmd(env Env) *cobra.Command {
	cmd := groupCmd("analyze backlog|workers|outliers --csv FILE [-o table|json|yaml] [--config FILE] [--fail-on warning|critical]",
		"run the detectors offline over a CSV of backlog depths, worker fleet looks or team sizes",
		`Run the live detectors over a CSV file, so that a backlog, a worker fleet or a population
of teams can be judged offline.

--fail-on warning|critical exits 3 when a finding of that severity or above is found
(1 is a file that could not be read), so the command can gate a CI job.`)
	pf := cmd.PersistentFlags()
	csvPath := pf.String("csv", "", "CSV `FILE` to analyze (- for stdin)")
	out := outputFlags(cmd, pf)
	cfgPath := pf.String("config", env.getenv("FLAGWARDEN_CONFIG"), "configuration `FILE` whose detectors section sets the thresholds (default: built-in defaults)")
	failOn := pf.String("fail-on", "", "exit 3 if a finding of this `SEVERITY` (warning or critical) or above is found (default: never)")
	_ = cmd.MarkPersistentFlagFilename("csv", "csv")
	_ = cmd.RegisterFlagCompletionFunc("fail-on", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"warning", "critical"}, cobra.ShellCompDirectiveNoFileComp
	})
	for _, a := range analyzeSubjects {
		sub := &cobra.Command{
			Use:   a.name + " --csv FILE [-o table|json|yaml] [--config FILE] [--fail-on SEVERITY]",
			Short: a.short, Long: a.long,
			Args: noArgs,
		}
		sub.RunE = runBody(func(context.Context, []string) int {
			return runAnalyze(env, a.name, *csvPath, *cfgPath, *failOn, out)
		})
		cmd.AddCommand(sub)
	}
	return cmd
}

func runAnalyze(env Env, what, csvPath, cfgPath, failOn string, out *output) int {
	if csvPath == "" {
		fmt.Fprintln(env.Stderr, "flagwarden analyze: --csv is required")
		return 2
	}
	format, err := out.Format()
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden analyze: %v\n", err)
		return 2
	}
	threshold, err := parseFailOn(failOn)
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden analyze: %v\n", err)
		return 2
	}
	det := config.Default().Detectors
	if cfgPath != "" {
		cfg, err := loadConfig(cfgPath, env)
		if err != nil {
			printConfigError(env.Stderr, err)
			return 1
		}
		det = cfg.Detectors
	}
	in, closeIn, err := openCSV(csvPath)
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden analyze: %v\n", err)
		return 1
	}
	defer closeIn()

	findings, note, err := analyzers[what](in, det)
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden analyze %s: %s: %v\n", what, csvPath, err)
		return 1
	}
	if findings == nil {
		findings = []analyzeFinding{}
	}
	if structured(format) {
		if err := writeData(env.Stdout, format, map[string]any{"findings": findings}); err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden analyze: %v\n", err)
			return 1
		}
	} else {
		printFindings(env.Stdout, findings, note, palette(env.colour(env.Stdout)))
	}
	if threshold != "" {
		for _, f := range findings {
			if severityRank(detectors.Severity(f.Severity)) >= severityRank(threshold) {
				fmt.Fprintf(env.Stderr, "flagwarden analyze: %s finding %s (%s) at or above --fail-on %s\n", f.Severity, f.Kind, f.Subject, threshold)
				return failOnExit
			}
		}
	}
	return 0
}

// parseFailOn reads --fail-on: empty (never), warning or critical.
func parseFailOn(s string) (detectors.Severity, error) {
	switch v := detectors.Severity(strings.ToLower(strings.TrimSpace(s))); v {
	case "", "never", "none":
		return "", nil
	case detectors.SeverityWarning, detectors.SeverityCritical:
		return v, nil
	}
	return "", fmt.Errorf("--fail-on must be warning or critical, got %q", s)
}

func severityRank(s detectors.Severity) int {
	switch s {
	case detectors.SeverityCritical:
		return 2
	case detectors.SeverityWarning:
		return 1
	}
	return 0
}

func openCSV(path string) (io.Reader, func(), error) {
	if path == "-" {
		return os.Stdin, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// csvTable reads a CSV whose first row is a header, mapping required and optional
// column names to indexes. Every error names its line.
type csvTable struct {
	r    *csv.Reader
	cols map[string]int
}

func readHeader(in io.Reader, required ...string) (*csvTable, error) {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	head, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("line 1: empty file, expected a header %s", strings.Join(required, ","))
	}
	if err != nil {
		return nil, fmt.Errorf("line 1: %w", err)
	}
	t := &csvTable{r: r, cols: map[string]int{}}
	for i, h := range head {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, dup := t.cols[name]; dup {
			return nil, fmt.Errorf("line 1: column %q appears twice", name)
		}
		t.cols[name] = i
	}
	for _, c := range required {
		if _, ok := t.cols[c]; !ok {
			return nil, fmt.Errorf("line 1: missing header: expected columns %s, got %q", strings.Join(required, ","), strings.Join(head, ","))
		}
	}
	return t, nil
}

// next returns the next record and its line, or io.EOF.
func (t *csvTable) next() ([]string, int, error) {
	rec, err := t.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, pe.Line, fmt.Errorf("line %d: %w", pe.Line, pe.Err)
		}
		return nil, 0, err
	}
	line, _ := t.r.FieldPos(0)
	if len(rec) != len(t.cols) {
		return nil, line, fmt.Errorf("line %d: %d fields, the header has %d", line, len(rec), len(t.cols))
	}
	return rec, line, nil
}

func (t *csvTable) field(rec []string, name string) (string, bool) {
	i, ok := t.cols[name]
	if !ok {
		return "", false
	}
	return strings.TrimSpace(rec[i]), true
}

// parseTimestamp accepts RFC 3339, "YYYY-MM-DD HH:MM:SS" (UTC) or Unix seconds.
func parseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && f >= 0 && f < 1e11 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("timestamp %q is not RFC 3339, \"YYYY-MM-DD HH:MM:SS\" or Unix seconds", s)
}

func backlogOptions(d config.Detectors) detectors.BacklogOptions {
	return detectors.BacklogOptions{
		Limit: float64(d.BacklogLimit), Floor: float64(d.BacklogFloor),
		ShortWindow: d.BacklogShortWindow, LongWindow: d.BacklogLongWindow,
		StallAfter: d.StallAfter, For: d.For, Weeks: d.BacklogWeeks, Location: d.Location(),
	}
}

func workerOptions(d config.Detectors) detectors.WorkerOptions {
	return detectors.WorkerOptions{OOMWindow: d.OOMWindow, MemoryNearLimit: d.MemoryNearLimit, For: d.For, OOMKeepFiring: d.OOMKeepFiring}
}

// number parses a non-negative finite number.
func number(rec []string, t *csvTable, line int, name string) (float64, error) {
	s, _ := t.field(rec, name)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("line %d: %s %q is not a non-negative number", line, name, s)
	}
	return v, nil
}

// count parses a non-negative integer.
func count(rec []string, t *csvTable, line int, name string) (int, error) {
	s, _ := t.field(rec, name)
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("line %d: %s %q is not a non-negative integer", line, name, s)
	}
	return v, nil
}

// rowTime parses a row's timestamp and checks that rows are in time order.
func rowTime(rec []string, t *csvTable, line int, prev time.Time, first bool) (time.Time, error) {
	ts, _ := t.field(rec, "timestamp")
	at, err := parseTimestamp(ts)
	if err != nil {
		return at, fmt.Errorf("line %d: %w", line, err)
	}
	if !first && at.Before(prev) {
		return at, fmt.Errorf("line %d: timestamp %s is earlier than the previous row's %s; rows must be in time order",
			line, at.Format(time.RFC3339), prev.Format(time.RFC3339))
	}
	return at, nil
}

// episodeFindings turns replayed episodes into analyze findings.
func episodeFindings(eps []detectors.Episode) []analyzeFinding {
	out := make([]analyzeFinding, 0, len(eps))
	for _, e := range eps {
		f := analyzeFinding{Kind: e.Kind, Severity: string(e.Severity), Subject: e.Subject, Summary: e.Summary, Evidence: e.Evidence}
		started := e.StartedAt
		f.StartedAt = &started
		if !e.ResolvedAt.IsZero() {
			resolved := e.ResolvedAt
			f.ResolvedAt = &resolved
		}
		out = append(out, f)
	}
	return out
}

// analyzeBacklog streams the rows into the replay: only the detectors' own history is
// kept, never the whole file.
func analyzeBacklog(in io.Reader, d config.Detectors) ([]analyzeFinding, string, error) {
	t, err := readHeader(in, "timestamp", "value")
	if err != nil {
		return nil, "", err
	}
	_, hasAge := t.cols["oldest_age_seconds"]
	r := detectors.NewBacklogReplay("csv", backlogOptions(d), d.Interval)
	var first, last time.Time
	n := 0
	for {
		rec, line, err := t.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", err
		}
		at, err := rowTime(rec, t, line, last, n == 0)
		if err != nil {
			return nil, "", err
		}
		v, err := number(rec, t, line, "value")
		if err != nil {
			return nil, "", err
		}
		age := math.NaN()
		if s, _ := t.field(rec, "oldest_age_seconds"); hasAge && s != "" {
			if age, err = number(rec, t, line, "oldest_age_seconds"); err != nil {
				return nil, "", err
			}
		}
		if n == 0 {
			first = at
		}
		last = at
		n++
		r.Add(series.Point{T: at, V: v}, age)
	}
	if n == 0 {
		return nil, "", errors.New("no data rows after the header")
	}
	eps, st := r.Finish()
	note := fmt.Sprintf("%d samples from %s to %s", n, first.Format(time.RFC3339), last.Format(time.RFC3339))
	if st.Comparison != "" && st.Comparison != "none" {
		note += "; growth judged against " + st.Comparison
	}
	if st.Note != "" {
		note += "; at the end: " + st.Note
	}
	return episodeFindings(eps), note, nil
}

// analyzeWorkers streams the fleet's looks into the worker replay.
func analyzeWorkers(in io.Reader, d config.Detectors) ([]analyzeFinding, string, error) {
	t, err := readHeader(in, "timestamp", "pods", "ready", "crashlooping", "oom_kills_total", "restarts_total")
	if err != nil {
		return nil, "", err
	}
	r := detectors.NewWorkerReplay("csv", workerOptions(d), d.Interval)
	var first, last time.Time
	var kills, resets float64
	var prev detectors.WorkerSample
	n := 0
	for {
		rec, line, err := t.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", err
		}
		at, err := rowTime(rec, t, line, last, n == 0)
		if err != nil {
			return nil, "", err
		}
		s := detectors.WorkerSample{T: at}
		for _, c := range []struct {
			name string
			dst  *int
		}{{"pods", &s.Pods}, {"ready", &s.Ready}, {"crashlooping", &s.CrashLooping}} {
			if *c.dst, err = count(rec, t, line, c.name); err != nil {
				return nil, "", err
			}
		}
		if s.Pods > detectors.MaxReplayPods {
			return nil, "", fmt.Errorf("line %d: pods (%d) is more than the %d a replay models", line, s.Pods, detectors.MaxReplayPods)
		}
		if s.Ready > s.Pods || s.CrashLooping > s.Pods {
			return nil, "", fmt.Errorf("line %d: ready (%d) and crashlooping (%d) cannot exceed pods (%d)", line, s.Ready, s.CrashLooping, s.Pods)
		}
		if s.OOMKillsTotal, err = number(rec, t, line, "oom_kills_total"); err != nil {
			return nil, "", err
		}
		if s.RestartsTotal, err = number(rec, t, line, "restarts_total"); err != nil {
			return nil, "", err
		}
		if n > 0 {
			if s.OOMKillsTotal < prev.OOMKillsTotal {
				resets++
				kills += s.OOMKillsTotal
			} else {
				kills += s.OOMKillsTotal - prev.OOMKillsTotal
			}
		} else {
			first = at
		}
		prev, last = s, at
		n++
		r.Add(s)
	}
	if n == 0 {
		return nil, "", errors.New("no data rows after the header")
	}
	note := fmt.Sprintf("%d looks from %s to %s; %.0f OOM kills", n, first.Format(time.RFC3339), last.Format(time.RFC3339), kills)
	if resets > 0 {
		note += fmt.Sprintf(" (the counter was reset %.0f times)", resets)
	}
	return episodeFindings(r.Finish()), note, nil
}

func analyzeOutliers(in io.Reader, d config.Detectors) ([]analyzeFinding, string, error) {
	t, err := readHeader(in, "team_id", "size_bytes")
	if err != nil {
		return nil, "", err
	}
	seen := map[int64]int{}
	var teams []snapshot.TeamSize
	intField := func(rec []string, line int, name string) (int64, bool, error) {
		s, ok := t.field(rec, name)
		if !ok || s == "" {
			return 0, false, nil
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return 0, false, fmt.Errorf("line %d: %s %q is not a non-negative integer", line, name, s)
		}
		return v, true, nil
	}
	for {
		rec, line, err := t.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, "", err
		}
		id, ok, err := intField(rec, line, "team_id")
		if err != nil {
			return nil, "", err
		}
		if !ok {
			return nil, "", fmt.Errorf("line %d: team_id is empty", line)
		}
		if prev, dup := seen[id]; dup {
			return nil, "", fmt.Errorf("line %d: team %d already appeared on line %d", line, id, prev)
		}
		seen[id] = line
		size, ok, err := intField(rec, line, "size_bytes")
		if err != nil {
			return nil, "", err
		}
		if !ok {
			return nil, "", fmt.Errorf("line %d: size_bytes is empty", line)
		}
		ts := snapshot.TeamSize{TeamID: id, FlagsPayloadBytes: size}
		for name, dst := range map[string]*int64{
			"definitions_payload_bytes": &ts.DefinitionsPayloadBytes, "flags": &ts.Flags, "active_flags": &ts.ActiveFlags,
			"cohorts": &ts.Cohorts, "cohort_bytes": &ts.CohortBytes, "project_id": &ts.ProjectID,
		} {
			v, ok, err := intField(rec, line, name)
			if err != nil {
				return nil, "", err
			}
			if ok {
				*dst = v
			}
		}
		teams = append(teams, ts)
	}
	if len(teams) == 0 {
		return nil, "", errors.New("no data rows after the header")
	}
	opts := detectors.OutlierOptions{MinBytes: int64(d.OutlierMinBytes), WorkerMemoryLimit: int64(d.WorkerMemoryLimit)}
	rep := detectors.ScoreTeams(teams, opts)
	note := fmt.Sprintf("%d teams with data of %d; median %.0f bytes, p99.9 %.0f bytes, threshold z %.2f, largest z %.2f",
		rep.Teams, len(teams), rep.Median, rep.P999, rep.Threshold, rep.MaxZ)
	if rep.Insufficient {
		note = fmt.Sprintf("insufficient data: %d teams with data are too few for the statistics; only the worker memory limit rule applied", rep.Teams)
	}
	var out []analyzeFinding
	for _, o := range detectors.Outliers(rep, opts) {
		out = append(out, analyzeFinding{Kind: o.Kind, Severity: string(o.Severity), Subject: o.Subject, Summary: o.Summary, Evidence: o.Evidence})
	}
	return out, note, nil
}

func printFindings(w io.Writer, findings []analyzeFinding, note string, colour palette) {
	if note != "" {
		fmt.Fprintln(w, note)
	}
	if len(findings) == 0 {
		fmt.Fprintln(w, "no findings")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSEVERITY\tSUBJECT\tSTARTED\tRESOLVED\tSUMMARY")
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Format("2006-01-02 15:04")
	}
	for _, f := range findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Kind, f.Severity, f.Subject, ts(f.StartedAt), ts(f.ResolvedAt), f.Summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, f := range findings {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range f.Evidence {
				if !yield(k) {
					return
				}
			}
		})
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+"="+strconv.FormatFloat(f.Evidence[k], 'g', 6, 64))
		}
		kind := colour.yellow(f.Kind)
		if f.Severity == string(detectors.SeverityCritical) {
			kind = colour.red(f.Kind)
		}
		fmt.Fprintf(w, "%s %s evidence: %s\n", kind, f.Subject, strings.Join(parts, " "))
	}
}
