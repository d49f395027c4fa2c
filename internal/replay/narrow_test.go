package replay

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// TestNarrowTableFits: the default table fits 100 columns however long the pages'
// text and the parameters are, and loses none of the text.
func TestNarrowTableFits(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	at := start.Add(38 * time.Hour)
	long := strings.Repeat("a long summary of what the page said ", 6)
	r := Report{
		Seed: 1, Start: start, Duration: "168h0m0s",
		AsItHappened:   Outcome{FirstOOMKill: &at, FirstPage: &Page{At: at, Kind: "KubePodCrashLooping", Severity: "warning", Summary: long}, WorstTeam: 2},
		WithFlagwarden: Outcome{FirstPage: &Page{At: start, Kind: "outlier_team", Severity: "critical", Summary: long}, WorstTeam: 2},
		Parameters:     []Param{{Name: strings.Repeat("parameter name ", 5), Value: strings.Repeat("value ", 30)}},
		Notes:          []string{strings.Repeat("a note that goes on ", 20)},
	}
	var b bytes.Buffer
	require.NoError(t, r.WriteNarrowTable(&b, 100))
	for _, line := range strings.Split(b.String(), "\n") {
		require.LessOrEqual(t, utf8.RuneCountInString(line), 100, line)
	}
	flat := strings.Join(strings.Fields(b.String()), " ")
	require.Contains(t, flat, strings.TrimSpace(long), "the page's text is all there")
	require.Contains(t, flat, strings.TrimSpace(strings.Repeat("value ", 30)))
}
