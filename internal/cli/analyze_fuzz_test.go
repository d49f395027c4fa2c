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

// FuzzAnalyzeCSV feeds arbitrary bytes to every analyze parser: none may panic, a
// rejected file is rejected with the line at fault, and an accepted one gives only
// findings of known kinds and severities.
func FuzzAnalyzeCSV(f *testing.F) {
	names := []string{"backlog", "outliers", "workers"}
	for i, file := range []string{"backlog_stall_unix.csv", "outliers.csv", "workers_oom_episode.csv", "backlog_incident.csv"} {
		body, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i%3), body[:min(len(body), 4096)])
	}
	f.Add(uint8(0), []byte("timestamp,value,oldest_age_seconds\n1769990400,5,10\n1769990415,5,\n"))
	f.Add(uint8(0), []byte("timestamp,value\n2026-02-02T00:00:00Z,5\nyesterday,6\n"))
	f.Add(uint8(0), []byte("\ufefftimestamp , VALUE\n2026-02-02 00:00:00,\"5\"\n"))
	f.Add(uint8(1), []byte("team_id,size_bytes\n1,100\n1,200\n"))
	f.Add(uint8(2), []byte("timestamp,pods,ready,crashlooping,oom_kills_total,restarts_total\n1769990400,4,5,0,0,0\n"))
	f.Add(uint8(2), []byte("timestamp,pods,ready,crashlooping,oom_kills_total,restarts_total\n1769990400,4,4,1,3,9\n1769990460,4,4,1,1,9\n"))
	det := config.Default().Detectors
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		if len(body) > 64<<10 {
			return // the replay is linear in the rows; big inputs only make the fuzzer slow
		}
		what := names[int(which)%len(names)]
		findings, _, err := analyzers[what](bytes.NewReader(body), det)
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
	})
}
