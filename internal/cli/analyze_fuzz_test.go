package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/config"
)

// analyzeSeeds are each reader's seed inputs: its test files' openings and hand-made
// edge cases.
var analyzeSeeds = map[string]struct {
	files  []string
	bodies []string
}{
	"backlog": {
		files: []string{"backlog_stall_unix.csv", "backlog_incident.csv", "backlog_daily.csv"},
		bodies: []string{
			"timestamp,value,oldest_age_seconds\n1769990400,5,10\n1769990415,5,\n",
			"timestamp,value\n2026-02-02T00:00:00Z,5\nyesterday,6\n",
			"\ufefftimestamp , VALUE\n2026-02-02 00:00:00,\"5\"\n",
		},
	},
	"outliers": {
		files:  []string{"outliers.csv"},
		bodies: []string{"team_id,size_bytes\n1,100\n1,200\n", "team_id,size_bytes,flags\n1,100,-3\n"},
	},
	"workers": {
		files: []string{"workers_oom_episode.csv"},
		bodies: []string{
			"timestamp,pods,ready,crashlooping,oom_kills_total,restarts_total\n1769990400,4,5,0,0,0\n",
			"timestamp,pods,ready,crashlooping,oom_kills_total,restarts_total\n1769990400,4,4,1,3,9\n1769990460,4,4,1,1,9\n",
		},
	},
}

func analyzeSeedBodies(f *testing.F, what string) [][]byte {
	s := analyzeSeeds[what]
	var out [][]byte
	for _, file := range s.files {
		body, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, body[:min(len(body), 4096)])
	}
	for _, b := range s.bodies {
		out = append(out, []byte(b))
	}
	return out
}

// checkAnalyze runs one reader over body: it may not panic, a rejected file is
// rejected with the line at fault, and an accepted one gives only findings of known
// kinds and severities.
func checkAnalyze(t *testing.T, what string, body []byte) {
	if len(body) > 64<<10 {
		return // the replay is linear in the rows; big inputs only make the fuzzer slow
	}
	findings, _, err := analyzers[what](bytes.NewReader(body), config.Default().Detectors)
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "line ") && msg != "no data rows after the header" {
			t.Fatalf("%s: error without a line: %q", what, msg)
		}
		return
	}
	for _, fd := range findings {
		if !slices.Contains(detectors.Kinds, fd.Kind) {
			t.Fatalf("%s: unknown kind %q", what, fd.Kind)
		}
		if fd.Severity != string(detectors.SeverityWarning) && fd.Severity != string(detectors.SeverityCritical) {
			t.Fatalf("%s: unknown severity %q", what, fd.Severity)
		}
	}
}

// FuzzAnalyzeCSV feeds arbitrary bytes to every analyze reader, chosen by the first
// argument, so that one input can be tried against all three.
func FuzzAnalyzeCSV(f *testing.F) {
	names := []string{"backlog", "outliers", "workers"}
	for i, what := range names {
		for _, b := range analyzeSeedBodies(f, what) {
			f.Add(uint8(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		checkAnalyze(t, names[int(which)%len(names)], body)
	})
}

// FuzzAnalyzeBacklog fuzzes the backlog reader (timestamp,value[,oldest_age_seconds]).
func FuzzAnalyzeBacklog(f *testing.F) { fuzzAnalyzer(f, "backlog") }

// FuzzAnalyzeOutliers fuzzes the team-size reader (team_id,size_bytes,...).
func FuzzAnalyzeOutliers(f *testing.F) { fuzzAnalyzer(f, "outliers") }

// FuzzAnalyzeWorkers fuzzes the worker fleet reader (timestamp,pods,ready,...).
func FuzzAnalyzeWorkers(f *testing.F) { fuzzAnalyzer(f, "workers") }

func fuzzAnalyzer(f *testing.F, what string) {
	for _, b := range analyzeSeedBodies(f, what) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkAnalyze(t, what, body) })
}
