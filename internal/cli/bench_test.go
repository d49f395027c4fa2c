package cli

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/testenv"
)

// TestBenchRebuildRepeat: with --repeat every mode of a size is measured that often and
// reports its fastest run beside every run's time; a single run keeps the keys it had;
// every mode but copy says how many times the copy's time it took.
func TestBenchRebuildRepeat(t *testing.T) {
	url := testenv.Postgres(t)
	rows, modes := benchRows(t, "--url", url, "--flags", "40", "--layout", "posthog", "--naive-max", "100", "--repeat", "3")
	for _, r := range rows {
		require.Empty(t, r.Note, r.Mode)
		require.Equal(t, 40, r.Flags)
		require.Equal(t, 3, r.Runs, r.Mode)
		require.Len(t, r.RunSeconds, 3, r.Mode)
		require.Equal(t, slices.Min(r.RunSeconds), r.Seconds, r.Mode)
		require.Positive(t, r.PayloadBytes, r.Mode)
		require.Positive(t, r.PeakLiveHeapBytes, r.Mode)
		require.Positive(t, r.ClientCPUSeconds, r.Mode)
		if r.Mode == "streaming" || r.Mode == "warm" {
			require.Positive(t, r.FirstPassSeconds, "the %s build's first pass", r.Mode)
			require.Less(t, r.FirstPassSeconds, r.Seconds, "the first pass is part of the build")
		} else {
			require.Zero(t, r.FirstPassSeconds, "%s has no first pass", r.Mode)
		}
	}
	require.Equal(t, []string{"copy", "streaming", "warm", "naive"}, modes)
	require.Zero(t, rows[0].CopyRatio, "copy")
	for _, r := range rows[1:] {
		require.InDelta(t, r.Seconds/rows[0].Seconds, r.CopyRatio, 1e-9, r.Mode)
	}

	code, out, errOut := runCLI(t, nil, "bench", "rebuild", "--url", url, "--flags", "40", "--naive-max", "10", "-o", "json")
	require.Equal(t, 0, code, errOut)
	var single []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &single), out)
	require.Len(t, single, 4)
	for _, r := range single {
		require.NotContains(t, r, "runs")
		require.NotContains(t, r, "run_seconds")
	}
	require.Contains(t, single[3]["note"], "skipped")

	code, out, errOut = runCLI(t, nil, "bench", "rebuild", "--url", url, "--flags", "40", "--naive-max", "10", "--repeat", "2")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "vs copy")
	require.Contains(t, out, "live heap")
	require.Contains(t, out, "client cpu")
	require.Contains(t, out, "seconds: the fastest of 2 runs")

	// Several sizes still give one profile, which pprof can read: one gzip stream.
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	code, _, errOut = runCLI(t, nil, "bench", "rebuild", "--url", url, "--flags", "20,40", "--naive-max", "10", "--repeat", "2", "--cpuprofile", prof)
	require.Equal(t, 0, code, errOut)
	f, err := os.Open(prof)
	require.NoError(t, err)
	defer f.Close()
	br := bufio.NewReader(f)
	zr, err := gzip.NewReader(br)
	require.NoError(t, err)
	zr.Multistream(false)
	body, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.NotEmpty(t, body)
	rest, err := io.ReadAll(br)
	require.NoError(t, err)
	require.Empty(t, rest, "a second profile follows the first")

	code, _, errOut = runCLI(t, nil, "bench", "rebuild", "--url", url, "--repeat", "0")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--repeat must be at least 1")
}

// TestBenchRebuildWithRedis: with --redis the bench adds the publish path and the
// shared mode, a new builder that predicts from the team's last build in Redis.
func TestBenchRebuildWithRedis(t *testing.T) {
	rows, modes := benchRows(t, "--url", testenv.Postgres(t), "--redis", testenv.Redis(t), "--flags", "40", "--layout", "posthog",
		"--naive-max", "10", "--repeat", "2")
	require.Equal(t, []string{"copy", "streaming", "warm", "publish", "shared", "naive"}, modes)
	shared := rows[4]
	require.Equal(t, 2, shared.Runs)
	require.Positive(t, shared.FirstPassSeconds)
	require.Equal(t, rows[1].PayloadBytes, shared.PayloadBytes, "the same payloads as the cold build")
	require.Equal(t, rows[1].StoredBytes, shared.StoredBytes)
}

// benchRows runs bench rebuild with args and -o json: its rows and their modes.
func benchRows(t *testing.T, args ...string) ([]benchRow, []string) {
	t.Helper()
	code, out, errOut := runCLI(t, nil, append(append([]string{"bench", "rebuild"}, args...), "-o", "json")...)
	require.Equal(t, 0, code, errOut)
	var rows []benchRow
	require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	var modes []string
	for _, r := range rows {
		modes = append(modes, r.Mode)
	}
	return rows, modes
}
