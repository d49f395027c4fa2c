package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type analyzeOutput struct {
	Findings []struct {
		Kind       string             `json:"kind"`
		Severity   string             `json:"severity"`
		Subject    string             `json:"subject"`
		StartedAt  *time.Time         `json:"started_at"`
		ResolvedAt *time.Time         `json:"resolved_at"`
		Summary    string             `json:"summary"`
		Evidence   map[string]float64 `json:"evidence"`
	} `json:"findings"`
}

func runAnalyzeCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLI(t, nil, append([]string{"analyze"}, args...)...)
}

func analyzeJSON(t *testing.T, what, file string) analyzeOutput {
	t.Helper()
	code, out, errText := runAnalyzeCmd(t, what, "--csv", filepath.Join("testdata", file), "--json")
	require.Equal(t, 0, code, errText)
	var res analyzeOutput
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.NotNil(t, res.Findings, "findings is a list, never null")
	return res
}

func TestAnalyzeBacklogIncident(t *testing.T) {
	t.Parallel()
	res := analyzeJSON(t, "backlog", "backlog_incident.csv")
	onset := time.Date(2026, 2, 3, 12, 0, 0, 0, time.UTC) // the climb starts 36 h in
	var growth, stall int
	for _, f := range res.Findings {
		require.NotNil(t, f.StartedAt)
		require.False(t, f.StartedAt.Before(onset), "nothing fires during the healthy 36 hours: %s %s", f.Kind, f.StartedAt)
		switch f.Kind {
		case "backlog_growth":
			growth++
			require.LessOrEqual(t, f.StartedAt.Sub(onset), 30*time.Minute, "incident-shaped growth is found within half an hour")
			require.NotNil(t, f.ResolvedAt, "resolves once the queue is drained")
			require.InDelta(t, 1200, f.Evidence["slope_per_hour"], 100)
			require.Equal(t, "csv", f.Subject)
		case "backlog_stalled":
			stall++
		}
	}
	require.Equal(t, 1, growth)
	require.LessOrEqual(t, stall, 1)
}

func TestAnalyzeBacklogDailyCycleIsQuiet(t *testing.T) {
	t.Parallel()
	require.Empty(t, analyzeJSON(t, "backlog", "backlog_daily.csv").Findings)
	code, out, _ := runAnalyzeCmd(t, "backlog", "--csv", filepath.Join("testdata", "backlog_daily.csv"))
	require.Equal(t, 0, code)
	require.Contains(t, out, "4320 samples")
	require.Contains(t, out, "no findings")
}

func TestAnalyzeBacklogStallUnixSeconds(t *testing.T) {
	t.Parallel()
	res := analyzeJSON(t, "backlog", "backlog_stall_unix.csv")
	require.Len(t, res.Findings, 1)
	f := res.Findings[0]
	require.Equal(t, "backlog_stalled", f.Kind)
	require.Equal(t, "critical", f.Severity)
	start := time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC)
	require.Equal(t, start.Add(115*time.Minute), *f.StartedAt, "15 minutes after consumption stopped at 1:40")
	require.Equal(t, start.Add(140*time.Minute), *f.ResolvedAt)
}

func TestAnalyzeOutliers(t *testing.T) {
	t.Parallel()
	res := analyzeJSON(t, "outliers", "outliers.csv")
	require.Len(t, res.Findings, 1)
	f := res.Findings[0]
	require.Equal(t, "outlier_team", f.Kind)
	require.Equal(t, "9999", f.Subject)
	require.Equal(t, "critical", f.Severity, "estimated build memory above the 8 GiB worker limit")
	require.Nil(t, f.StartedAt)
	require.Nil(t, f.ResolvedAt)
	require.Equal(t, 1.0, f.Evidence["rank"])
	require.Equal(t, 310000.0, f.Evidence["flags"], "extra columns are used")
	for _, k := range []string{"median_bytes", "p99_bytes", "p999_bytes", "z", "ratio_to_p999", "estimated_memory_bytes"} {
		require.Contains(t, f.Evidence, k)
	}
	code, out, _ := runAnalyzeCmd(t, "outliers", "--csv", filepath.Join("testdata", "outliers.csv"))
	require.Equal(t, 0, code)
	require.Contains(t, out, "KIND")
	require.Contains(t, out, "outlier_team  critical  9999")
}

func TestAnalyzeBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, what, body, want string
	}{
		{"empty file", "backlog", "", "line 1: empty file"},
		{"missing header", "backlog", "2026-02-02T00:00:00Z,5\n", "line 1: missing header"},
		{"bad timestamp", "backlog", "timestamp,value\n2026-02-02T00:00:00Z,5\nyesterday,6\n", "line 3: timestamp \"yesterday\""},
		{"bad value", "backlog", "timestamp,value\n1769990400,5\n1769990415,lots\n", "line 3: value \"lots\""},
		{"negative value", "backlog", "timestamp,value\n1769990400,-5\n", "line 2: value \"-5\""},
		{"out of order", "backlog", "timestamp,value\n1769990400,5\n1769990300,6\n", "line 3: timestamp 2026-02-01T23:58:20Z is earlier"},
		{"wrong field count", "backlog", "timestamp,value\n1769990400,5,7\n", "line 2: 3 fields, the header has 2"},
		{"unterminated quote", "backlog", "timestamp,value\n1769990400,\"5\n", "line 2"},
		{"header only", "backlog", "timestamp,value\n", "no data rows"},
		{"duplicate team", "outliers", "team_id,size_bytes\n1,100\n2,200\n1,300\n", "line 4: team 1 already appeared on line 2"},
		{"bad size", "outliers", "team_id,size_bytes\n1,big\n", "line 2: size_bytes \"big\""},
		{"bad extra column", "outliers", "team_id,size_bytes,flags\n1,100,many\n", "line 2: flags \"many\""},
		{"outliers missing size", "outliers", "team_id,bytes\n1,100\n", "line 1: missing header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, tc.name+".csv")
			require.NoError(t, os.WriteFile(path, []byte(tc.body), 0o600))
			code, out, errText := runAnalyzeCmd(t, tc.what, "--csv", path, "--json")
			require.Equal(t, 1, code)
			require.Empty(t, out)
			require.Contains(t, errText, tc.want)
		})
	}
	code, _, errText := runAnalyzeCmd(t, "backlog", "--csv", filepath.Join(dir, "missing.csv"))
	require.Equal(t, 1, code)
	require.Contains(t, errText, "no such file")
	code, _, _ = runAnalyzeCmd(t)
	require.Equal(t, 2, code)
	code, _, _ = runAnalyzeCmd(t, "backlog")
	require.Equal(t, 2, code, "--csv is required")
}

func TestAnalyzeTimestampFormats(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 2, 2, 10, 30, 0, 0, time.UTC)
	for _, s := range []string{"2026-02-02T10:30:00Z", "2026-02-02T11:30:00+01:00", "2026-02-02 10:30:00", "1770028200", "1770028200.0"} {
		got, err := parseTimestamp(s)
		require.NoError(t, err, s)
		require.True(t, want.Equal(got), "%s → %s", s, got)
	}
}

// An OOM kill every 30 minutes for 8 hours is one finding, firing from the first kill
// until an hour after the last, and --fail-on gates on its severity.
func TestAnalyzeWorkersOOMEpisode(t *testing.T) {
	t.Parallel()
	res := analyzeJSON(t, "workers", "workers_oom_episode.csv")
	require.Len(t, res.Findings, 1, "one episode, one finding")
	f := res.Findings[0]
	require.Equal(t, "worker_oom_kills", f.Kind)
	require.Equal(t, "warning", f.Severity, "one kill per 15-minute window")
	start := time.Date(2026, 2, 2, 2, 0, 0, 0, time.UTC)
	require.Equal(t, start, *f.StartedAt)
	require.NotNil(t, f.ResolvedAt)
	require.True(t, f.ResolvedAt.After(start.Add(8*time.Hour+25*time.Minute)), "firing throughout: resolved at %s", f.ResolvedAt)
	require.Equal(t, 3600.0, f.Evidence["keep_firing_seconds"])

	path := filepath.Join("testdata", "workers_oom_episode.csv")
	code, out, errText := runAnalyzeCmd(t, "workers", "--csv", path, "--fail-on", "warning")
	require.Equal(t, 3, code, errText)
	require.Contains(t, out, "worker_oom_kills  warning")
	require.Contains(t, errText, "at or above --fail-on warning")
	code, _, errText = runAnalyzeCmd(t, "workers", "--csv", path, "--fail-on", "critical")
	require.Equal(t, 0, code, "a warning does not fail --fail-on critical: %s", errText)
	code, _, _ = runAnalyzeCmd(t, "workers", "--csv", path)
	require.Equal(t, 0, code, "without --fail-on, findings never fail the command")
}

func TestAnalyzeFailOn(t *testing.T) {
	t.Parallel()
	stall := filepath.Join("testdata", "backlog_stall_unix.csv")
	code, _, _ := runAnalyzeCmd(t, "backlog", "--csv", stall, "--fail-on", "critical")
	require.Equal(t, 3, code, "the stall is critical")
	code, _, _ = runAnalyzeCmd(t, "backlog", "--csv", stall, "--fail-on", "warning", "--json")
	require.Equal(t, 3, code)
	code, _, _ = runAnalyzeCmd(t, "backlog", "--csv", filepath.Join("testdata", "backlog_daily.csv"), "--fail-on", "warning")
	require.Equal(t, 0, code, "no findings")
	code, _, _ = runAnalyzeCmd(t, "outliers", "--csv", filepath.Join("testdata", "outliers.csv"), "--fail-on", "critical")
	require.Equal(t, 3, code)
	code, _, errText := runAnalyzeCmd(t, "backlog", "--csv", stall, "--fail-on", "sometimes")
	require.Equal(t, 2, code)
	require.Contains(t, errText, "--fail-on must be warning or critical")
}

// With the oldest message's age, a stall is judged on whether the head of the queue
// moves, and the finding says so; a constant depth whose head keeps moving is busy,
// not stalled.
func TestAnalyzeBacklogOldestAge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, age func(i int) int) string {
		var b strings.Builder
		b.WriteString("timestamp,value,oldest_age_seconds\n")
		for i := range 120 {
			fmt.Fprintf(&b, "%d,40,%d\n", 1769990400+15*i, age(i))
		}
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o600))
		return p
	}
	stuck := write("stuck.csv", func(i int) int { return 100 + 15*i })
	busy := write("busy.csv", func(i int) int { return 5 + i%4 })
	code, out, errText := runAnalyzeCmd(t, "backlog", "--csv", stuck, "--json")
	require.Equal(t, 0, code, errText)
	var res analyzeOutput
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Len(t, res.Findings, 1)
	require.Equal(t, "backlog_stalled", res.Findings[0].Kind)
	require.Equal(t, 1.0, res.Findings[0].Evidence["evidence_oldest_age"])
	require.Contains(t, res.Findings[0].Summary, "oldest message aged with the clock")
	require.Empty(t, analyzeJSONPath(t, "backlog", busy).Findings)
}

func analyzeJSONPath(t *testing.T, what, path string) analyzeOutput {
	t.Helper()
	code, out, errText := runAnalyzeCmd(t, what, "--csv", path, "--json")
	require.Equal(t, 0, code, errText)
	var res analyzeOutput
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	return res
}

func TestAnalyzeWorkersBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	head := "timestamp,pods,ready,crashlooping,oom_kills_total,restarts_total\n"
	for _, tc := range []struct{ name, body, want string }{
		{"missing column", "timestamp,pods,ready\n1769990400,4,4\n", "line 1: missing header"},
		{"ready above pods", head + "1769990400,4,5,0,0,0\n", "line 2: ready (5) and crashlooping (0) cannot exceed pods (4)"},
		{"negative counter", head + "1769990400,4,4,0,-1,0\n", `line 2: oom_kills_total "-1" is not a non-negative number`},
		{"too many pods", head + "1769990400,999999999,4,0,0,0\n", "line 2: pods (999999999) is more than the 100000 a replay models"},
		{"fractional pods", head + "1769990400,4.5,4,0,0,0\n", `line 2: pods "4.5" is not a non-negative integer`},
		{"out of order", head + "1769990400,4,4,0,0,0\n1769990300,4,4,0,0,0\n", "line 3: timestamp"},
		{"header only", head, "no data rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, tc.name+".csv")
			require.NoError(t, os.WriteFile(path, []byte(tc.body), 0o600))
			code, out, errText := runAnalyzeCmd(t, "workers", "--csv", path, "--json")
			require.Equal(t, 1, code)
			require.Empty(t, out)
			require.Contains(t, errText, tc.want)
		})
	}
}
