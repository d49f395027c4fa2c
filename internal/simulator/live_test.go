package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/collectors/pods"
	"github.com/flagwarden/flagwarden/rebuild"
)

func newTestLive(t *testing.T, speed float64) (*Live, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { c.Close() })
	l, err := NewLive(t.Context(), LiveOptions{
		Sim: Options{Seed: 3, Fleet: FleetOptions{Teams: 200}}, Speed: speed, Redis: c,
		CopyTo: []string{"flagwarden"},
	})
	require.NoError(t, err)
	return l, mr
}

func TestLiveRequiresRedisAndPositiveSpeed(t *testing.T) {
	_, err := NewLive(t.Context(), LiveOptions{})
	require.ErrorContains(t, err, "Redis client is required")
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer c.Close()
	_, err = NewLive(t.Context(), LiveOptions{Redis: c, Speed: -1})
	require.ErrorContains(t, err, "speed must be positive")
}

// TestLivePublishesRealMessagesAndWorkersConsume drives the clock by hand: the changes
// land on Redis as Celery messages on both queues, the simulated workers take the
// original queue's from Redis, and the copies wait for flagwarden.
func TestLivePublishesRealMessagesAndWorkersConsume(t *testing.T) {
	l, mr := newTestLive(t, 1)
	wall := l.wall0
	l.wallNow = func() time.Time { return wall }
	wall = wall.Add(2 * time.Hour)
	require.NoError(t, l.Advance(t.Context()))
	require.Equal(t, l.sim0.Add(2*time.Hour), l.Now())

	var enqueued, builds int64
	l.With(func(s *Sim, _ *CeleryWorkers) { enqueued, builds = s.Enqueued, s.Builds })
	require.Positive(t, enqueued)
	require.Positive(t, builds, "the workers consumed from Redis")
	require.True(t, mr.Exists("_kombu.binding.feature_flags"))
	require.True(t, mr.Exists("_kombu.binding.flagwarden"))

	// every task was copied to flagwarden's queue, and nobody consumes that here.
	copies, err := mr.List("flagwarden")
	require.NoError(t, err)
	require.Len(t, copies, int(enqueued))
	task, tag, err := DecodeMessage([]byte(copies[0]))
	require.NoError(t, err)
	require.Equal(t, "flagwarden", task.Queue)
	require.Contains(t, tag, ".flagwarden")
	require.Contains(t, []string{TaskDefinitions, TaskFlags}, task.Name)
}

func TestLiveClockAndService(t *testing.T) {
	l, _ := newTestLive(t, 120)
	wall := l.wall0.Add(30 * time.Second)
	require.Equal(t, l.sim0.Add(time.Hour), l.FromWall(wall))
	require.Equal(t, 120.0, l.Speed())

	require.NoError(t, l.Start(t.Context()))
	deadline := time.Now().Add(10 * time.Second)
	for {
		var changes int64
		l.With(func(s *Sim, _ *CeleryWorkers) { changes = s.Changes })
		if changes > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the driver advances the simulation")
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, l.Stop(ctx))
	require.NoError(t, l.Stop(ctx), "Stop is idempotent")
}

func TestLiveForecast(t *testing.T) {
	l, _ := newTestLive(t, 1)
	first, every := l.Forecast()
	require.Positive(t, first)
	require.Greater(t, every, first)
	// the model's incident: first kills on the second day, every attempt within a week.
	require.Greater(t, first, 12*time.Hour)
	require.Less(t, every, 7*24*time.Hour)
}

func TestTeamSource(t *testing.T) {
	l, _ := newTestLive(t, 1)
	src := TeamSource{L: l}
	ctx := t.Context()

	lo, hi, ok, err := src.TeamIDBounds(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, [2]int64{1, 200}, [2]int64{lo, hi})

	all, err := src.MeasureRange(ctx, lo, hi+1)
	require.NoError(t, err)
	require.NotEmpty(t, all)
	for _, s := range all {
		require.True(t, s.Flags > 0 || s.Cohorts > 0, "teams without flag data are left out")
	}
	some, err := src.MeasureTeams(ctx, []int64{2, 999999, -1})
	require.NoError(t, err)
	require.Len(t, some, 1, "unknown teams are left out")
	require.Equal(t, int64(2), some[0].TeamID)
	require.Greater(t, some[0].DefinitionsPayloadBytes, int64(400<<20))

	changed, err := src.ChangedSince(ctx, l.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Empty(t, changed)
	changed, err = src.ChangedSince(ctx, l.sim0)
	require.NoError(t, err)
	require.Len(t, changed, 200, "every team was stamped at the start")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = src.MeasureRange(cancelled, lo, hi)
	require.ErrorIs(t, err, context.Canceled)
}

// TestPodSourceClassifiedByTheCollector puts an OOM-killed, crash-looping simulated
// pod through the pod collector's own classifier.
func TestPodSourceClassifiedByTheCollector(t *testing.T) {
	l, _ := newTestLive(t, 1)
	now := l.Now()
	l.With(func(_ *Sim, w *CeleryWorkers) {
		p := w.Pods[1]
		p.Busy, p.JobStart, p.JobEnd, p.JobMemory = true, now.Add(-time.Second), now.Add(time.Second), 9<<30
		p.OOMKill(now)
	})
	src := PodSource{L: l}
	require.Equal(t, "simulated", src.Source())
	list, err := src.Pods(t.Context())
	require.NoError(t, err)
	require.Len(t, list, 4)

	healthy, _ := pods.Classify(list[0], pods.Seen{}, now, time.Minute)
	require.True(t, healthy.Ready)
	require.Empty(t, healthy.Waiting)
	require.Equal(t, int64(8<<30), healthy.MemoryLimit)

	killed, _ := pods.Classify(list[1], pods.Seen{}, now, time.Minute)
	require.False(t, killed.Ready)
	require.Equal(t, pods.ReasonCrashLoop, killed.Waiting)
	require.Equal(t, pods.ReasonOOMKilled, killed.LastTermination)
	require.Equal(t, int32(137), killed.LastExitCode)
	require.Equal(t, int32(1), killed.Restarts)
	require.True(t, killed.NewOOMKill)

	mem, err := src.PodMemory(t.Context())
	require.NoError(t, err)
	require.Zero(t, mem[list[1].Name], "a waiting container uses nothing")
	require.Positive(t, mem[list[0].Name])
}

// TestFlagSourceBuildsWithTheRealBuilder builds a simulated team with flagwarden's
// streaming builder and checks the payloads are the team's flags and cohorts.
func TestFlagSourceBuildsWithTheRealBuilder(t *testing.T) {
	l, _ := newTestLive(t, 1)
	src := FlagSource{L: l}
	ctx := t.Context()

	// a team with cohorts, so that references resolve.
	var team Team
	l.With(func(s *Sim, _ *CeleryWorkers) {
		for _, tm := range s.Fleet.Teams {
			if !tm.TestAutomation && tm.Flags >= 20 && tm.Cohorts >= 3 {
				team = *tm
				return
			}
		}
	})
	require.NotZero(t, team.ID, "the fleet has a mid-sized team with cohorts")

	var sink rebuild.BufferSink
	st, err := rebuild.NewBuilder(rebuild.BuilderOptions{PageSize: 7}).Build(ctx, src, team.ID, &sink)
	require.NoError(t, err)
	require.Equal(t, team.Flags, st.Flags)
	require.Empty(t, st.Problems)
	require.Zero(t, st.Skipped, "simulated flags satisfy the Rust reader's contract")
	require.Equal(t, 1, st.Attempts, "the first pass predicts the simulated team exactly")
	flagsJSON, defsJSON := &sink.Flags, &sink.Definitions

	var flags struct {
		Flags []struct {
			Key string `json:"key"`
		} `json:"flags"`
	}
	require.NoError(t, json.Unmarshal(flagsJSON.Bytes(), &flags))
	require.Len(t, flags.Flags, int(team.Flags))
	for i := 1; i < len(flags.Flags); i++ {
		require.Less(t, flags.Flags[i-1].Key, flags.Flags[i].Key, "paged in key order without gaps or repeats")
	}
	require.True(t, json.Valid(defsJSON.Bytes()))

	size, err := src.TeamSize(ctx, team.ID)
	require.NoError(t, err)
	require.Equal(t, team.Flags, size.Flags)

	_, err = src.Team(ctx, 999999)
	require.True(t, errors.Is(err, rebuild.ErrUnknownTeam))
	_, err = src.TeamSize(ctx, 999999)
	require.True(t, errors.Is(err, rebuild.ErrUnknownTeam))
	_, err = src.Open(ctx, 999999, rebuild.ReadOptions{})
	require.True(t, errors.Is(err, rebuild.ErrUnknownTeam))
	rd, err := src.Open(ctx, team.ID, rebuild.ReadOptions{})
	require.NoError(t, err)
	defer rd.Close()
	stop := errors.New("stop")
	n := 0
	err = rd.Flags(ctx, func(*rebuild.FlagRow) error { n++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n)

	var cohorts []int64
	require.NoError(t, rd.Cohorts(ctx, []int64{3, 1, 0, team.Cohorts + 1}, false, func(c *rebuild.CohortRow) error {
		require.True(t, json.Valid(c.Filters))
		cohorts = append(cohorts, c.ID)
		return nil
	}))
	require.Equal(t, []int64{1, 3}, cohorts, "unknown cohort ids are skipped")

	gts, err := rd.GroupTypes(ctx)
	require.NoError(t, err)
	require.Len(t, gts, int(team.GroupTypes))

	// Ids as strings sort as the decimal forms do, numerically otherwise.
	got := map[bool][]int64{}
	require.NoError(t, rd.FlagIDs(ctx, rebuild.IDFilter{}, func(id int64, byText bool) error {
		require.False(t, !byText && len(got[true]) > 0, "numeric order first")
		got[byText] = append(got[byText], id)
		return nil
	}))
	for _, byText := range []bool{false, true} {
		want := make([]int64, team.Flags)
		for i := range want {
			want[i] = int64(i) + 1
		}
		if byText {
			slices.SortFunc(want, func(a, b int64) int { return strings.Compare(strconv.FormatInt(a, 10), strconv.FormatInt(b, 10)) })
		}
		require.Equal(t, want, got[byText], "byText %v", byText)
	}

	changed, err := src.ChangedSince(ctx, l.sim0.Add(-time.Second), 5)
	require.NoError(t, err)
	require.Len(t, changed, 5, "bounded by the limit")
}
