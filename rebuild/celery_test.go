package rebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

var cacheTasks = []string{"posthog.tasks.feature_flags.update_team_flags_cache", "update_team_service_flags_cache"}

func brokerClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// produce runs script with Debian's Python and Celery against the broker.
func produce(t *testing.T, brokerURL, script string) {
	t.Helper()
	py := testenv.Python(t, "celery", "redis")
	out, err := exec.Command(py, "-c", "import sys\nfrom celery import Celery\napp = Celery(broker=sys.argv[1])\n"+script, brokerURL).CombinedOutput()
	require.NoError(t, err, "celery producer: %s", out)
}

type deadLetter struct {
	Reason  string `json:"reason"`
	Error   string `json:"error"`
	Queue   string `json:"queue"`
	Bytes   int64  `json:"bytes"`
	Message string `json:"message"`
}

// TestCeleryConsumerPoisonBatch puts one message of every kind of poison among valid
// Celery tasks in one batch: the valid ones are built, each poison message is
// dead-lettered with its reason and counted, and nothing stays unacked.
func TestCeleryConsumerPoisonBatch(t *testing.T) {
	t.Parallel()
	b := newEngineBundle(t, false, nil)
	ctx := context.Background()
	brokerURL := testenv.Redis(t)
	broker := brokerClient(t, brokerURL)

	produce(t, brokerURL, `
for i in range(40):
    app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[1], queue='flagwarden')
    app.send_task('posthog.tasks.feature_flags.update_team_service_flags_cache', kwargs={'team_id': 2}, queue='flagwarden', priority=6)
app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[2147483648], queue='flagwarden')
app.send_task('posthog.tasks.something_else', args=[1], queue='flagwarden')
app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[1], kwargs={'pad': 'x' * 400000}, queue='flagwarden')
app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[1], queue='template')
`)
	// A real message with its body broken, and bytes that are no message at all.
	tmpl, err := broker.RPop(ctx, "template").Result()
	require.NoError(t, err)
	var env map[string]any
	require.NoError(t, json.Unmarshal([]byte(tmpl), &env))
	env["body"] = "%%% not base64 %%%"
	bad, err := json.Marshal(env)
	require.NoError(t, err)
	require.NoError(t, broker.LPush(ctx, "flagwarden", bad, "{this is not json}").Err())

	reg := prometheus.NewRegistry()
	c, err := NewCeleryConsumer(broker, b.e, CeleryOptions{
		Queue: "flagwarden", TeamKwarg: "team_id", Tasks: cacheTasks,
		MaxMessageBytes: 256 << 10, Registerer: reg,
	})
	require.NoError(t, err)
	taken := 0
	for {
		n, err := c.RunOnce(ctx, 200*time.Millisecond)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		taken += n
	}
	require.Equal(t, 85, taken)
	require.Zero(t, broker.HLen(ctx, "unacked").Val(), "nothing is left unacked")
	require.Zero(t, broker.ZCard(ctx, "unacked_index").Val())

	letters, err := broker.LRange(ctx, "flagwarden.flagwarden_dead", 0, -1).Result()
	require.NoError(t, err)
	reasons := map[string]int{}
	for _, l := range letters {
		var d deadLetter
		require.NoError(t, json.Unmarshal([]byte(l), &d), l)
		reasons[d.Reason]++
		require.Equal(t, "flagwarden", d.Queue)
		require.NotEmpty(t, d.Error)
		require.EqualValues(t, len(d.Message), d.Bytes, "the message is kept whole: %s", d.Reason)
		if d.Reason == "oversized" {
			require.Greater(t, d.Bytes, int64(256<<10))
		}
	}
	want := map[string]int{"team_id": 1, "unknown_task": 1, "oversized": 1, "bad_encoding": 1, "not_celery": 1}
	require.Equal(t, want, reasons)
	for reason, n := range want {
		require.EqualValues(t, n, testutil.ToFloat64(c.m.dead.WithLabelValues(reason)), reason)
	}
	require.EqualValues(t, 80, testutil.ToFloat64(c.m.messages.WithLabelValues("requested")))
	require.EqualValues(t, 5, testutil.ToFloat64(c.m.deadLetterLen), "the dead-letter list is watched")
	require.Empty(t, testenv.PromtoolCheckMetrics(t, gather(t, reg)))

	require.NoError(t, b.e.Start(ctx))
	b.idle(t)
	require.EqualValues(t, 2, b.builds.Load(), "the valid messages beside the poison are built")
}

func gather(t *testing.T, reg *prometheus.Registry) []byte {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var buf bytes.Buffer
	for _, mf := range mfs {
		_, err := expfmt.MetricFamilyToText(&buf, mf)
		require.NoError(t, err)
	}
	return buf.Bytes()
}

// blockedRequester never answers: a consumer using it has taken its messages and is
// stuck before any ack, as one killed mid-batch is.
type blockedRequester struct{}

func (blockedRequester) Request(ctx context.Context, _ int64, _ string) (RequestResult, error) {
	<-ctx.Done()
	return RequestResult{}, ctx.Err()
}

// TestCeleryConsumerHelperProcess is the consumer that TestCeleryConsumerKilledMidBatch
// kills; it runs only in the child process.
func TestCeleryConsumerHelperProcess(t *testing.T) {
	url := os.Getenv("FLAGWARDEN_CELERY_HELPER_BROKER")
	if url == "" {
		t.Skip("helper process for TestCeleryConsumerKilledMidBatch")
	}
	broker := brokerClient(t, url)
	c, err := NewCeleryConsumer(broker, blockedRequester{}, CeleryOptions{Queue: "flagwarden", TeamKwarg: "team_id", Tasks: cacheTasks})
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	select {} // until killed
}

// TestCeleryConsumerKilledMidBatch kills -9 a consumer process that has taken a batch
// and acked none of it; a second consumer leaves the messages alone until the
// visibility timeout, then restores them and processes each once.
func TestCeleryConsumerKilledMidBatch(t *testing.T) {
	t.Parallel()
	b := newEngineBundle(t, false, nil)
	ctx := context.Background()
	brokerURL := testenv.Redis(t)
	broker := brokerClient(t, brokerURL)
	produce(t, brokerURL, `
for i in range(30):
    app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[1], queue='flagwarden', priority=i % 10)
    app.send_task('posthog.tasks.feature_flags.update_team_service_flags_cache', kwargs={'team_id': 2}, queue='flagwarden')
`)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCeleryConsumerHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FLAGWARDEN_CELERY_HELPER_BROKER="+brokerURL)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 30*time.Second, func() bool { return broker.HLen(ctx, "unacked").Val() == 60 },
		"the helper took the batch (unacked %d)", broker.HLen(ctx, "unacked").Val())
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.Zero(t, broker.LLen(ctx, "flagwarden").Val()+broker.LLen(ctx, "flagwarden\x06\x163").Val())

	req := &countingRequester{inner: b.e, teams: map[int64]int{}}
	c, err := NewCeleryConsumer(broker, req, CeleryOptions{
		Queue: "flagwarden", TeamKwarg: "team_id", Tasks: cacheTasks,
		VisibilityTimeout: 2 * time.Second, RestoreInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	// Not yet due: a live consumer's deliveries are never taken from it.
	n, err := c.RunOnce(ctx, 10*time.Millisecond)
	require.NoError(t, err)
	require.Zero(t, n)
	require.EqualValues(t, 60, broker.HLen(ctx, "unacked").Val())

	require.NoError(t, c.Start(ctx))
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	eventually(t, 30*time.Second, func() bool {
		return testutil.ToFloat64(c.m.messages.WithLabelValues("requested")) == 60
	}, "the restored messages were not processed")
	require.NoError(t, c.Stop(ctx))
	require.EqualValues(t, 60, testutil.ToFloat64(c.m.restored), "each message restored once")
	require.Zero(t, broker.HLen(ctx, "unacked").Val())
	require.Zero(t, broker.ZCard(ctx, "unacked_index").Val())
	for _, k := range []string{"flagwarden", "flagwarden\x06\x163", "flagwarden\x06\x166", "flagwarden\x06\x169"} {
		require.Zero(t, broker.LLen(ctx, k).Val(), k)
	}
	require.Zero(t, broker.LLen(ctx, "flagwarden.flagwarden_dead").Val())

	require.NoError(t, b.e.Start(ctx))
	b.idle(t)
	require.EqualValues(t, 2, b.builds.Load(), "one build per team")
	require.LessOrEqual(t, req.count(1)+req.count(2), 4)
}

// TestCeleryConsumerBoundedReads puts two 30 MB messages among small ones: the
// consumer never reads them (they are dead-lettered inside Redis) and holds no more
// than its per-pass budget.
func TestCeleryConsumerBoundedReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerURL := testenv.Redis(t)
	broker := brokerClient(t, brokerURL)
	produce(t, brokerURL, `
for i in range(200):
    app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[i % 7 + 1], queue='flagwarden')
    if i in (50, 150):
        app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[1], kwargs={'pad': 'y' * (22 << 20)}, queue='flagwarden')
`)
	req := &countingRequester{inner: okRequester{}, teams: map[int64]int{}}
	c, err := NewCeleryConsumer(broker, req, CeleryOptions{Queue: "flagwarden", Tasks: cacheTasks, Batch: 50, PassBytes: 64 << 10})
	require.NoError(t, err)
	for {
		n, err := c.RunOnce(ctx, 10*time.Millisecond)
		require.NoError(t, err)
		if n == 0 {
			break
		}
	}
	read := testutil.ToFloat64(c.m.readBytes)
	require.Less(t, read, float64(1<<20), "only the small messages were read")
	require.Greater(t, read, float64(200*500))
	require.LessOrEqual(t, c.PeakPassBytes(), int64(64<<10)+(1<<20), "a pass holds at most its budget plus one message")
	require.EqualValues(t, 2, testutil.ToFloat64(c.m.dead.WithLabelValues("oversized")))
	require.EqualValues(t, 200, testutil.ToFloat64(c.m.messages.WithLabelValues("requested")))
	require.EqualValues(t, 7, len(req.teams))
	require.Zero(t, broker.HLen(ctx, "unacked").Val())
	l, err := broker.LIndex(ctx, "flagwarden.flagwarden_dead", 0).Result()
	require.NoError(t, err)
	require.Greater(t, len(l), 29<<20, "the oversized message is kept whole in the dead-letter list")
}

// okRequester accepts every request.
type okRequester struct{}

func (okRequester) Request(_ context.Context, team int64, _ string) (RequestResult, error) {
	return RequestResult{TeamID: team}, nil
}

// TestCeleryConsumerStampsOnItsClock runs consumers on a clock years away from the
// wall clock: deliveries are stamped in the unacked index on that clock, and another
// consumer restores them only once that clock, not the wall clock, says they are due.
func TestCeleryConsumerStampsOnItsClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerURL := testenv.Redis(t)
	broker := brokerClient(t, brokerURL)
	produce(t, brokerURL, `
for i in range(3):
    app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[i + 1], queue='flagwarden')
`)
	stamped := time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC)
	var simNow atomic.Int64
	simNow.Store(stamped.UnixNano())
	sim := clock.Func(func() time.Time { return time.Unix(0, simNow.Load()) })
	opts := CeleryOptions{
		Queue: "flagwarden", Tasks: cacheTasks, Clock: sim,
		VisibilityTimeout: time.Hour, RestoreInterval: time.Nanosecond,
	}
	taker, err := NewCeleryConsumer(broker, nil, opts)
	require.NoError(t, err)
	n, err := taker.intake(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	scores := broker.ZRangeWithScores(ctx, "unacked_index", 0, -1).Val()
	require.Len(t, scores, 3)
	for _, z := range scores {
		require.InDelta(t, float64(stamped.Unix()), z.Score, 1, "delivery %v stamped on the consumer's clock", z.Member)
	}

	restorer, err := NewCeleryConsumer(broker, nil, opts)
	require.NoError(t, err)
	simNow.Store(stamped.Add(59 * time.Minute).UnixNano())
	restorer.housekeep(ctx)
	require.EqualValues(t, 3, broker.HLen(ctx, "unacked").Val(), "not due on the consumer's clock")
	require.Zero(t, testutil.ToFloat64(restorer.m.restored))
	simNow.Store(stamped.Add(61 * time.Minute).UnixNano())
	restorer.housekeep(ctx)
	require.EqualValues(t, 3, testutil.ToFloat64(restorer.m.restored), "due on the consumer's clock")
	require.Zero(t, broker.HLen(ctx, "unacked").Val())
	require.EqualValues(t, 3, broker.LLen(ctx, "flagwarden").Val())
}
