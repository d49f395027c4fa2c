package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/replay"
)

// livePolicy is flagwarden as the default configuration runs it, as the replay
// command uses it.
func livePolicy() replay.Policy { return app.ReplayPolicy(config.Default()) }

var update = flag.Bool("update", false, "rewrite the golden files")

// The full week is simulated once and shared: it is the expensive part.
var (
	once     sync.Once
	seeded   replay.Report
	seedErr  error
	seedText []byte
)

func incident(t *testing.T) (replay.Report, []byte) {
	t.Helper()
	once.Do(func() {
		seeded, seedErr = replay.Run(context.Background(), replay.Options{Seed: 1, Policy: livePolicy()})
		var b bytes.Buffer
		if seedErr == nil {
			seedErr = seeded.WriteTable(&b)
		}
		seedText = b.Bytes()
	})
	require.NoError(t, seedErr)
	return seeded, seedText
}

func TestReplayGolden(t *testing.T) {
	_, text := incident(t)
	golden := filepath.Join("testdata", "incident_seed1.txt")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, text, 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run with -update to create the golden file")
	require.Equal(t, string(want), string(text))
}

// TestAsItHappenedResemblesTheIncident checks the first column against the real
// timeline: days of intermittent OOM kills, then crash loops and a backlog past 100k.
func TestAsItHappenedResemblesTheIncident(t *testing.T) {
	r, _ := incident(t)
	a := r.AsItHappened
	require.NotNil(t, a.FirstOOMKill)
	require.Greater(t, a.PeakBacklog, int64(100_000))
	require.Greater(t, a.OOMKills, 100)
	require.Greater(t, a.CrashLoopMinutes, 60.0)
	require.Greater(t, a.OthersP99Seconds, time.Hour.Seconds(), "every team's changes waited behind the backlog")
	require.Greater(t, a.StableAfterSeconds, (3 * 24 * time.Hour).Seconds(), "days, not hours")
	require.EqualValues(t, 2, a.WorstTeam, "the test-automation team is the worst off")
	require.NotNil(t, a.FirstPage)
	require.True(t, a.FirstPage.At.After(*a.FirstOOMKill), "nothing paged before the kills")
}

func TestWithFlagwarden(t *testing.T) {
	r, _ := incident(t)
	w := r.WithFlagwarden
	require.NotNil(t, w.FirstPage, "flagwarden pages")
	require.Less(t, w.FirstPage.Backlog, int64(1000), "the page comes before the backlog passes 1,000")
	require.True(t, w.FirstPage.At.Before(*r.AsItHappened.FirstOOMKill), "before the first OOM kill would have happened")
	require.Contains(t, w.FirstPage.Summary, "Team 2")
	require.Zero(t, w.OOMKills)
	require.Zero(t, w.CrashLoopMinutes)
	require.Less(t, w.OthersP99Seconds, time.Minute.Seconds())
	require.Less(t, w.PeakBacklog, int64(1000))
	require.Less(t, w.Builds, r.AsItHappened.Builds, "dedup collapses requests")
	require.Equal(t, r.AsItHappened.TasksEnqueued, w.TasksEnqueued, "same traffic in both runs")
}

func TestJSONMatchesTable(t *testing.T) {
	r, _ := incident(t)
	var b bytes.Buffer
	require.NoError(t, r.WriteJSON(&b))
	var back replay.Report
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	require.Equal(t, r.AsItHappened.PeakBacklog, back.AsItHappened.PeakBacklog)
	require.Equal(t, r.WithFlagwarden.OthersP99Seconds, back.WithFlagwarden.OthersP99Seconds)
	require.Equal(t, r.WithFlagwarden.FirstPage.Summary, back.WithFlagwarden.FirstPage.Summary)
	require.Len(t, back.Parameters, len(r.Parameters))
}

func TestSeedsDiffer(t *testing.T) {
	if testing.Short() {
		t.Skip("a second week of simulation")
	}
	r2, err := replay.Run(context.Background(), replay.Options{Seed: 2, Duration: 24 * time.Hour, Policy: livePolicy()})
	require.NoError(t, err)
	r3, err := replay.Run(context.Background(), replay.Options{Seed: 2, Duration: 24 * time.Hour, Policy: livePolicy()})
	require.NoError(t, err)
	require.Equal(t, r2, r3, "same seed, same report")
	r4, err := replay.Run(context.Background(), replay.Options{Seed: 4, Duration: 24 * time.Hour, Policy: livePolicy()})
	require.NoError(t, err)
	require.NotEqual(t, r2.AsItHappened.TasksEnqueued, r4.AsItHappened.TasksEnqueued)
}
