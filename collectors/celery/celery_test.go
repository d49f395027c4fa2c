package celery

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/kombu"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func envelopeJSON(body string, headers string) string {
	return fmt.Sprintf(`{"body": %q, "content-type": "application/json", "headers": %s, "properties": {"body_encoding": "base64", "delivery_tag": "x"}}`,
		base64.StdEncoding.EncodeToString([]byte(body)), headers)
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
			pipe.LPush(ctx, kombu.Keys{}.List(q, s), envelopeJSON(`[[`+strconv.Itoa(i%500)+`], {}, {}]`, `{"task": "update_team_flags_cache"}`))
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

// TestSampleReadsBoundedBytes puts large messages among small ones: the sample decodes
// the small ones, counts the large ones as oversized, and the bytes read stay within
// the pass's budget whatever the messages weigh.
func TestSampleReadsBoundedBytes(t *testing.T) {
	t.Parallel()
	rdb := newTestRedis(t)
	ctx := context.Background()
	big := envelopeJSON(`[[7], {"pad": "`+strings.Repeat("z", 4<<20)+`"}, {}]`, `{"task": "update_team_flags_cache"}`)
	for i := range 40 {
		require.NoError(t, rdb.LPush(ctx, "feature_flags", envelopeJSON(`[[`+strconv.Itoa(i%4+1)+`], {}, {}]`, `{"task": "update_team_flags_cache"}`)).Err())
		if i%10 == 0 {
			require.NoError(t, rdb.LPush(ctx, "feature_flags", big).Err())
		}
	}
	reg := prometheus.NewRegistry()
	c, err := New(rdb, Options{Queues: []string{"feature_flags"}, SampleSize: 100, MaxMessageBytes: 64 << 10, SampleBytes: 256 << 10},
		snapshot.NewStore(), nil, reg, discardLogger())
	require.NoError(t, err)
	q, err := c.Collect(ctx)
	require.NoError(t, err)
	require.Len(t, q.Queues, 1)
	comp := q.Queues[0].Composition
	require.Equal(t, 44, comp.Sampled)
	require.Equal(t, 40, comp.ByTask["update_team_flags_cache"])
	require.Equal(t, 4, comp.DistinctTeams)
	require.Equal(t, 4, comp.Undecodable)
	require.Equal(t, 4.0, counterValue(t, reg, "flagwarden_celery_oversized_messages_total"))
	read := counterValue(t, reg, "flagwarden_celery_read_bytes_total")
	require.Less(t, read, float64(256<<10), "four 5 MB messages were never read")
	require.Positive(t, read)
	require.Greater(t, q.Queues[0].OldestAge, time.Duration(-1))
}

// lateContext is a pass context whose deadline has passed while its Redis commands
// carry on (go-redis does not stop a command at the deadline unless told to).
type lateContext struct{ context.Context }

func (lateContext) Err() error { return context.DeadlineExceeded }

// TestOverrunPassFails: a pass that outlives its timeout fails instead of publishing
// late, and the loop records the failure.
func TestOverrunPassFails(t *testing.T) {
	t.Parallel()
	rdb := newTestRedis(t)
	ctx := context.Background()
	require.NoError(t, rdb.LPush(ctx, "feature_flags", envelopeJSON(`[[1], {}, {}]`, `{"task": "t"}`)).Err())
	reg := prometheus.NewRegistry()
	snaps := snapshot.NewStore()
	c, err := New(rdb, Options{Queues: []string{"feature_flags"}}, snaps, nil, reg, discardLogger())
	require.NoError(t, err)
	_, err = c.Collect(lateContext{ctx})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "overran its timeout")

	l := loop.New("celery", loop.Timing{Interval: time.Minute, Timeout: time.Minute},
		func(ctx context.Context) error { return c.RunOnce(lateContext{ctx}) }, discardLogger(), loop.NewMetrics(reg))
	require.Error(t, l.RunOnce(ctx))
	require.False(t, l.Health().Up)
	require.Contains(t, l.Health().LastError, "overran its timeout")
	require.Equal(t, 1.0, counterValue(t, reg, "flagwarden_collector_failures_total"))
	require.Empty(t, snaps.Queues().Queues, "nothing is published from an overrun pass")
}
