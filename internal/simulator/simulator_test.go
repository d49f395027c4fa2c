package simulator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestNextBackoff(t *testing.T) {
	t.Parallel()
	cases := []struct {
		prev, ran, want time.Duration
	}{
		{0, time.Second, 10 * time.Second},
		{10 * time.Second, time.Second, 20 * time.Second},
		{40 * time.Second, time.Minute, 80 * time.Second},
		{160 * time.Second, time.Second, 5 * time.Minute},
		{5 * time.Minute, time.Second, 5 * time.Minute},
		{5 * time.Minute, 10 * time.Minute, 10 * time.Second},
	}
	for _, c := range cases {
		require.Equal(t, c.want, NextBackoff(c.prev, c.ran), "prev %s ran %s", c.prev, c.ran)
	}
}

func TestPodCrashLoopAndRecovery(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	p := &Pod{Namespace: "ns", Name: "w-0", Limit: 8 << 30, Baseline: 3 << 30, RunningSince: start}
	now := start.Add(time.Minute)
	var waits []time.Duration
	for range 7 {
		p.OOMKill(now)
		sp := p.Snapshot(now)
		require.Equal(t, "CrashLoopBackOff", sp.Waiting)
		require.Equal(t, "OOMKilled", sp.LastTermination)
		require.EqualValues(t, 137, sp.LastExitCode)
		require.True(t, sp.NewOOMKill)
		require.EqualValues(t, 1, sp.RestartDelta)
		require.False(t, p.Snapshot(now).NewOOMKill, "one kill is reported once")
		waits = append(waits, p.WaitingUntil.Sub(now))
		now = p.WaitingUntil.Add(time.Second) // crashes again right after each restart
	}
	require.Equal(t, []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 5 * time.Minute, 5 * time.Minute}, waits)
	require.EqualValues(t, 7, p.Restarts)
	// after ten clean minutes the next crash starts the backoff over.
	now = p.WaitingUntil.Add(11 * time.Minute)
	require.Empty(t, p.Snapshot(now).Waiting)
	p.OOMKill(now)
	require.Equal(t, 10*time.Second, p.WaitingUntil.Sub(now))
}

func TestMessageRoundTripAndBadInput(t *testing.T) {
	t.Parallel()
	task := Task{ID: "1b4e28ba-2fa1-41d2-883f-0016d3cca427", Name: TaskFlags, TeamID: 42, Queue: DefaultQueue, Priority: 6}
	raw, err := EncodeMessage(task, "tag-1", "gen1@web")
	require.NoError(t, err)
	var env map[string]any
	require.NoError(t, json.Unmarshal(raw, &env))
	h := env["headers"].(map[string]any)
	require.Equal(t, TaskFlags, h["task"])
	require.Equal(t, "(42,)", h["argsrepr"])
	body, err := base64.StdEncoding.DecodeString(env["body"].(string))
	require.NoError(t, err)
	require.JSONEq(t, `[[42],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]`, string(body))

	got, tag, err := DecodeMessage(raw)
	require.NoError(t, err)
	require.Equal(t, task, got)
	require.Equal(t, "tag-1", tag)

	kw := `{"body":"` + base64.StdEncoding.EncodeToString([]byte(`[[],{"team_id":7},{}]`)) +
		`","headers":{"task":"x","id":"i"},"properties":{"body_encoding":"base64","delivery_tag":"t"}}`
	got, _, err = DecodeMessage([]byte(kw))
	require.NoError(t, err)
	require.EqualValues(t, 7, got.TeamID, "kwargs team_id is read")

	for name, bad := range map[string]string{
		"not json":    `hello`,
		"protocol 1":  `{"body":"e30=","headers":{},"properties":{"body_encoding":"base64"}}`,
		"bad base64":  `{"body":"%%%","headers":{"task":"x"},"properties":{"body_encoding":"base64"}}`,
		"no team":     `{"body":"` + base64.StdEncoding.EncodeToString([]byte(`[[],{},{}]`)) + `","headers":{"task":"x"},"properties":{"body_encoding":"base64"}}`,
		"string team": `{"body":"` + base64.StdEncoding.EncodeToString([]byte(`[["abc"],{},{}]`)) + `","headers":{"task":"x"},"properties":{"body_encoding":"base64"}}`,
		"short body":  `{"body":"` + base64.StdEncoding.EncodeToString([]byte(`[[1]]`)) + `","headers":{"task":"x"},"properties":{"body_encoding":"base64"}}`,
	} {
		_, _, err := DecodeMessage([]byte(bad))
		require.ErrorIs(t, err, ErrNotCelery, name)
	}
	_, err = EncodeMessage(Task{}, "t", "o")
	require.Error(t, err)
}

// TestKombuLayoutOnRedis checks the key layout kombu reads: priority lists named with
// sep, the binding set, unacked bookkeeping, and the highest priority served first.
func TestKombuLayoutOnRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { c.Close() })
	k := &Kombu{Store: RedisStore{C: c}}
	require.NoError(t, k.Declare(ctx, "feature_flags"))
	members, err := m.Members("_kombu.binding.feature_flags")
	require.NoError(t, err)
	require.Equal(t, []string{"feature_flags\x06\x16\x06\x16feature_flags"}, members)

	for i, pri := range []int{9, 0, 4, 3} {
		task := Task{ID: "id" + string(rune('a'+i)), Name: TaskDefinitions, TeamID: int64(i + 1), Queue: "feature_flags", Priority: pri}
		require.NoError(t, k.Publish(ctx, task, "tag"+string(rune('a'+i)), "o"))
	}
	require.True(t, m.Exists("feature_flags"))
	require.True(t, m.Exists("feature_flags\x06\x163"))
	require.True(t, m.Exists("feature_flags\x06\x169"))
	l, err := m.List("feature_flags\x06\x163")
	require.NoError(t, err)
	require.Len(t, l, 2, "priorities 3 and 4 share the step-3 list")
	depth, err := k.Depth(ctx, "feature_flags")
	require.NoError(t, err)
	require.EqualValues(t, 4, depth)

	now := time.Unix(1_770_000_000, 0)
	var order []int64
	for {
		d, ok, err := k.Get(ctx, "feature_flags", now)
		require.NoError(t, err)
		if !ok {
			break
		}
		require.NoError(t, d.Err)
		require.Contains(t, m.HGet("unacked", d.Tag), `"feature_flags"]`, "delivery recorded in unacked as [message, exchange, routing_key]")
		_, err = m.ZScore("unacked_index", d.Tag)
		require.NoError(t, err)
		order = append(order, d.Task.TeamID)
		require.NoError(t, k.Ack(ctx, d))
		require.Empty(t, m.HGet("unacked", d.Tag))
	}
	// step 0 first, then the step-3 list oldest first (priority 4 was published before 3), then 9.
	require.Equal(t, []int64{2, 3, 4, 1}, order)

	// a foreign message is still taken (and reported), not lost silently.
	m.Lpush("feature_flags", "not a celery message")
	d, ok, err := k.Get(ctx, "feature_flags", now)
	require.NoError(t, err)
	require.True(t, ok)
	require.ErrorIs(t, d.Err, ErrNotCelery)
	require.NotEmpty(t, m.HGet("unacked", d.Tag), "kept in unacked for inspection")

	// a broken connection is an error, not an empty queue.
	m.Close()
	_, _, err = k.Get(ctx, "feature_flags", now)
	require.Error(t, err)
}

func TestMemoryBrokerPriorities(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := NewMemoryBroker()
	for i, pri := range []int{9, 0, 4, 3, 0} {
		require.NoError(t, b.Publish(ctx, Task{TeamID: int64(i + 1), Queue: "q", Priority: pri}, "", ""))
	}
	n, _ := b.Depth(ctx, "q")
	require.EqualValues(t, 5, n)
	var order []int64
	for {
		d, ok, _ := b.Get(ctx, "q", time.Time{})
		if !ok {
			break
		}
		order = append(order, d.Task.TeamID)
		require.NoError(t, b.Ack(ctx, d))
	}
	require.Equal(t, []int64{2, 5, 3, 4, 1}, order)
	require.Zero(t, b.Unacked)
}

func TestFleetShape(t *testing.T) {
	t.Parallel()
	f := NewFleet(FleetOptions{Seed: 7})
	require.Len(t, f.Teams, 2000)
	require.NotNil(t, f.Test)
	var small, big int
	var maxFlags int64
	for _, tm := range f.Teams {
		if tm.TestAutomation {
			continue
		}
		if tm.Flags <= 5 {
			small++
		}
		if tm.Flags >= 100 {
			big++
		}
		maxFlags = max(maxFlags, tm.Flags)
		require.GreaterOrEqual(t, tm.Flags, int64(1))
	}
	require.Greater(t, small, 1000, "most teams have a handful of flags")
	require.Greater(t, big, 5, "a heavy tail of large teams")
	require.LessOrEqual(t, maxFlags, int64(1033))
	// the test team is the one a naive build cannot hold for long.
	require.Greater(t, f.Test.Size(time.Time{}).EstimatedNaiveBuildBytes(), int64(3<<30))

	raw := f.FlagFilters(7, f.Teams[0], 3)
	var filters struct {
		Groups []struct {
			Properties []map[string]any `json:"properties"`
		} `json:"groups"`
		Payloads map[string]string `json:"payloads"`
	}
	require.NoError(t, json.Unmarshal(raw, &filters))
	require.NotEmpty(t, filters.Groups[0].Properties)
	require.Equal(t, string(raw), string(f.FlagFilters(7, f.Teams[0], 3)), "deterministic")
	other := NewFleet(FleetOptions{Seed: 8})
	same := 0
	for i := range f.Teams {
		if f.Teams[i].Flags == other.Teams[i].Flags {
			same++
		}
	}
	require.Less(t, same, 1900, "the seed matters")
}

// TestIncidentDynamics runs the naive workers for a week: intermittent OOMs first, then
// crash loops and a backlog past 100k, then recovery after the clean-up. Same seed,
// same numbers.
func TestIncidentDynamics(t *testing.T) {
	t.Parallel()
	run := func() (int64, int, int64, StalenessReport) {
		ctx := context.Background()
		s, err := New(ctx, Options{Seed: 1, FixAt: 132 * time.Hour})
		require.NoError(t, err)
		w := NewCeleryWorkers(WorkerOptions{Seed: 1}, s.Now)
		var peak int64
		end := s.Now.Add(7 * 24 * time.Hour)
		for s.Now.Before(end) {
			require.NoError(t, s.Advance(ctx, w, s.Now.Add(15*time.Minute), 5*time.Second))
			d, err := s.Broker.Depth(ctx, DefaultQueue)
			require.NoError(t, err)
			peak = max(peak, d)
		}
		final, _ := s.Broker.Depth(ctx, DefaultQueue)
		return peak, w.OOMKills, final, s.Staleness(s.Now)
	}
	peak, ooms, final, st := run()
	require.Greater(t, peak, int64(100_000))
	require.Greater(t, ooms, 100)
	require.Less(t, final, int64(1000), "the backlog drains after the clean-up")
	require.Greater(t, st.OthersP99, time.Hour)
	require.EqualValues(t, 2, st.WorstTeam)
	peak2, ooms2, final2, st2 := run()
	require.Equal(t, []any{peak, ooms, final, st}, []any{peak2, ooms2, final2, st2})
}
