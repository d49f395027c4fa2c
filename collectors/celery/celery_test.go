package celery

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func envelopeJSON(body string, headers string) string {
	return fmt.Sprintf(`{"body": %q, "content-type": "application/json", "headers": %s, "properties": {"body_encoding": "base64", "delivery_tag": "x"}}`,
		base64.StdEncoding.EncodeToString([]byte(body)), headers)
}

func TestDecodeMessage(t *testing.T) {
	t.Parallel()
	loc := teamLocator{kwarg: "team_id", position: 0}
	task2 := `{"task": "update_team_flags_cache"}`
	cases := []struct {
		name     string
		raw      string
		wantTask string
		team     int64
		hasTeam  bool
		wantErr  bool
	}{
		{"protocol 2 args", envelopeJSON(`[[42], {}, {}]`, task2), "update_team_flags_cache", 42, true, false},
		{"protocol 2 kwarg wins", envelopeJSON(`[[1], {"team_id": 43}, {}]`, task2), "update_team_flags_cache", 43, true, false},
		{"team id as string", envelopeJSON(`[["44"], {}, {}]`, task2), "update_team_flags_cache", 44, true, false},
		{"no team", envelopeJSON(`[[], {}, {}]`, task2), "update_team_flags_cache", 0, false, false},
		{"team not a number", envelopeJSON(`[["abc"], {}, {}]`, task2), "update_team_flags_cache", 0, false, false},
		{"protocol 1", envelopeJSON(`{"task": "old.task", "args": [5], "kwargs": {}}`, `{}`), "old.task", 5, true, false},
		{"not json", `hello`, "", 0, false, true},
		{"pickle content", `{"body": "gAN9cQA=", "content-type": "application/x-python-serialize", "properties": {"body_encoding": "base64"}}`, "", 0, false, true},
		{"bad base64", `{"body": "!!!", "content-type": "application/json", "headers": {"task": "t"}, "properties": {"body_encoding": "base64"}}`, "", 0, false, true},
		{"body not a list", envelopeJSON(`{"x": 1}`, task2), "", 0, false, true},
		{"no task anywhere", envelopeJSON(`{"args": []}`, `{}`), "", 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeMessage([]byte(tc.raw), loc)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantTask, got.Name)
			require.Equal(t, tc.hasTeam, got.HasTeam)
			require.Equal(t, tc.team, got.Team)
		})
	}
}

func TestTailTrackAge(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_000_000, 0)
	var tr tailTrack
	// First look: the tail was already there; its age starts now.
	require.Zero(t, tr.observe(2, 1, t0))
	// The tail stays: age grows.
	require.Equal(t, 10*time.Second, tr.observe(3, 1, t0.Add(10*time.Second)))
	// Message 1 is consumed; 2 becomes the tail. It was seen at the head at t0.
	require.Equal(t, 20*time.Second, tr.observe(4, 2, t0.Add(20*time.Second)))
	// An unseen message becomes the tail: the age starts when it was first seen.
	require.Zero(t, tr.observe(9, 8, t0.Add(30*time.Second)))
}

func TestKeyspace(t *testing.T) {
	t.Parallel()
	k := keyspace{prefix: "p[1]:", sep: "\x06\x16", steps: []int{0, 3}}
	require.Equal(t, "p[1]:celery", k.list("celery", 0))
	require.Equal(t, "p[1]:celery\x06\x163", k.list("celery", 3))
	require.Equal(t, `p\[1\]:_kombu.binding.*`, k.bindingPattern())
	b, ok := k.parseBinding("ex", "rk\x06\x16\x06\x16q")
	require.True(t, ok)
	require.Equal(t, binding{exchange: "ex", routingKey: "rk", queue: "q"}, b)
	_, ok = k.parseBinding("ex", "rk:pattern:q") // written with another sep
	require.False(t, ok)
	for _, n := range []string{"celeryev", "celeryev.1234", "celery.pidbox", "reply.celery.pidbox"} {
		require.True(t, plumbing(n), n)
	}
	require.False(t, plumbing("feature_flags"))
}

func newTestRedis(t testing.TB) *redis.Client {
	opt, err := redis.ParseURL(testenv.Redis(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestLabelCardinalityIsCapped: 60 queues with a cap of 5 export 5 labelled queues plus
// __other__, whose depth is the sum of the rest; malformed keys are counted, not fatal.
func TestLabelCardinalityIsCapped(t *testing.T) {
	t.Parallel()
	rdb := newTestRedis(t)
	ctx := context.Background()
	var total int64
	for i := range 60 {
		q := "q" + strconv.Itoa(i)
		require.NoError(t, rdb.SAdd(ctx, "_kombu.binding."+q, q+"\x06\x16\x06\x16"+q).Err())
		for range i % 7 {
			require.NoError(t, rdb.LPush(ctx, q, "x").Err())
			total++
		}
	}
	require.NoError(t, rdb.SAdd(ctx, "_kombu.binding.bad", "only-one-field").Err())
	require.NoError(t, rdb.SAdd(ctx, "_kombu.binding.str", "str\x06\x16\x06\x16str").Err())
	require.NoError(t, rdb.Set(ctx, "str", "a string where a list should be", 0).Err())

	reg := prometheus.NewRegistry()
	snaps := snapshot.NewStore()
	c, err := New(rdb, Options{MaxLabelledQueues: 5, SampleQueues: 3}, snaps, nil, reg, discardLogger())
	require.NoError(t, err)
	require.NoError(t, c.RunOnce(ctx))

	labels := labelValues(t, reg, "flagwarden_celery_queue_depth", "queue")
	require.Len(t, labels, 6)
	require.True(t, labels[OtherQueues])
	var sum float64
	for q := range labels {
		for _, p := range []string{"0", "3", "6", "9"} {
			sum += gaugeValue(t, reg, "flagwarden_celery_queue_depth", map[string]string{"queue": q, "priority": p})
		}
	}
	require.Equal(t, float64(total), sum, "no message is lost by folding queues into __other__")
	require.Len(t, snaps.Queues().Queues, 61)
	require.Equal(t, 1.0, counterValue(t, reg, "flagwarden_celery_malformed_bindings_total"))
	require.Equal(t, 1.0, counterValue(t, reg, "flagwarden_celery_key_errors_total"))
	// Undecodable "x" messages in the sampled queues are counted, and the pass still succeeds.
	require.Positive(t, counterValue(t, reg, "flagwarden_celery_undecodable_messages_total"))
}

// TestBrokenBrokerShowsInHealth: a pass against a Redis that is gone fails, and the
// loop's up metric says so.
func TestBrokenBrokerShowsInHealth(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	c, err := New(rdb, Options{}, snapshot.NewStore(), nil, reg, discardLogger())
	require.NoError(t, err)
	l := loop.New("celery", loop.Timing{Interval: time.Minute, Timeout: 5 * time.Second}, c.RunOnce, discardLogger(), loop.NewMetrics(reg))
	require.Error(t, l.RunOnce(context.Background()))
	require.False(t, l.Health().Up)
	require.Contains(t, l.Health().LastError, "scan bindings")
	require.Equal(t, 0.0, gaugeValue(t, reg, "flagwarden_collector_up", map[string]string{"collector": "celery"}))
}

// BenchmarkCollect10kQueues is one collection over 10,000 bound queues with a message in
// each of their 4 priority lists (40,000 lists) on a private local Redis.
//
//	go test ./collectors/celery -run '^$' -bench Collect10k -benchtime 10x
func BenchmarkCollect10kQueues(b *testing.B) {
	rdb := newTestRedis(b)
	ctx := context.Background()
	const queues = 10_000
	pipe := rdb.Pipeline()
	for i := range queues {
		q := "queue-" + strconv.Itoa(i)
		pipe.SAdd(ctx, "_kombu.binding."+q, q+"\x06\x16\x06\x16"+q)
		for _, s := range []int{0, 3, 6, 9} {
			pipe.LPush(ctx, keyspace{sep: "\x06\x16"}.list(q, s), envelopeJSON(`[[`+strconv.Itoa(i%500)+`], {}, {}]`, `{"task": "update_team_flags_cache"}`))
		}
		if i%1000 == 999 {
			_, err := pipe.Exec(ctx)
			require.NoError(b, err)
		}
	}
	c, err := New(rdb, Options{}, snapshot.NewStore(), nil, prometheus.NewRegistry(), discardLogger())
	require.NoError(b, err)
	b.ResetTimer()
	for b.Loop() {
		q, err := c.Collect(ctx)
		require.NoError(b, err)
		require.Len(b, q.Queues, queues)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/collection")
}
