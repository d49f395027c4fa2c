package rebuild

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// countingRequester records requests per team.
type countingRequester struct {
	inner Requester
	mu    sync.Mutex
	teams map[int64]int
}

func (c *countingRequester) Request(ctx context.Context, team int64, reason string) (RequestResult, error) {
	c.mu.Lock()
	c.teams[team]++
	c.mu.Unlock()
	return c.inner.Request(ctx, team, reason)
}

func (c *countingRequester) count(team int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.teams[team]
}

// TestCeleryConsumerRealProducer has Celery itself put task messages (with priorities,
// args and kwargs) on a real Redis, plus a foreign task and a non-Celery message; the
// consumer turns 300 duplicates into builds of the two teams and acks everything.
func TestCeleryConsumerRealProducer(t *testing.T) {
	t.Parallel()
	py := testenv.Python(t, "celery", "redis")
	b := newEngineBundle(t, false, nil)
	ctx := context.Background()
	brokerURL := testenv.Redis(t)
	opt, err := redis.ParseURL(brokerURL)
	require.NoError(t, err)
	broker := redis.NewClient(opt)
	t.Cleanup(func() { broker.Close() })

	script := `
import sys
from celery import Celery
app = Celery(broker=sys.argv[1])
for i in range(150):
    app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[1], queue='flagwarden', priority=i % 10)
    app.send_task('posthog.tasks.feature_flags.update_team_service_flags_cache', kwargs={'team_id': 2}, queue='flagwarden')
app.send_task('posthog.tasks.something_else', args=[1], queue='flagwarden')
app.send_task('posthog.tasks.feature_flags.update_team_flags_cache', args=[424242], queue='flagwarden')
`
	out, err := exec.Command(py, "-c", script, brokerURL).CombinedOutput()
	require.NoError(t, err, "celery producer: %s", out)
	require.NoError(t, broker.LPush(ctx, "flagwarden", "this is not a celery message").Err())

	req := &countingRequester{inner: b.e, teams: map[int64]int{}}
	c, err := NewCeleryConsumer(broker, req, CeleryOptions{
		Queue: "flagwarden", TeamKwarg: "team_id",
		Tasks: []string{"posthog.tasks.feature_flags.update_team_flags_cache", "update_team_service_flags_cache"},
	})
	require.NoError(t, err)
	taken := 0
	for {
		n, err := c.RunOnce(ctx, time.Second)
		require.NoError(t, err)
		if n == 0 {
			break
		}
		taken += n
	}
	require.Equal(t, 303, taken)
	require.LessOrEqual(t, req.count(1), 2, "duplicates in a batch collapse into one request")
	require.GreaterOrEqual(t, req.count(1), 1)
	require.Equal(t, 1, req.count(424242), "the unknown team is asked for once and dropped")
	require.Zero(t, broker.HLen(ctx, "unacked").Val(), "every message is acked")
	require.Zero(t, broker.ZCard(ctx, "unacked_index").Val())
	require.EqualValues(t, 2, broker.LLen(ctx, "flagwarden.flagwarden_dead").Val(), "the foreign task and the garbage are set aside, not lost")

	require.NoError(t, b.e.Start(ctx))
	b.idle(t)
	require.EqualValues(t, 2, b.builds.Load(), "300 task messages become one build per team")
}

func TestNotifyTriggersAndSweep(t *testing.T) {
	t.Parallel()
	b := newEngineBundle(t, false, nil)
	ctx := context.Background()
	require.NoError(t, posthog.InstallTriggers(ctx, b.pool, "fw_change"))
	require.NoError(t, posthog.InstallTriggers(ctx, b.pool, "fw_change"), "installing twice replaces")
	_, err := posthog.TriggerSQL("Bad-Name")
	require.Error(t, err)

	req := &countingRequester{inner: b.e, teams: map[int64]int{}}
	l, err := NewListener(b.pool, req, "fw_change", nil)
	require.NoError(t, err)
	require.NoError(t, l.Start(ctx))
	t.Cleanup(func() { _ = l.Stop(context.Background()) })
	<-l.Ready()

	_, err = b.pool.Exec(ctx, `UPDATE posthog_featureflag SET name = name || '.' WHERE team_id = 1`)
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `UPDATE posthog_cohort SET description = 'x' WHERE id = 11`)
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `DELETE FROM posthog_featureflagevaluationtag WHERE feature_flag_id = 100`)
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool { return req.count(1) == 3 }, "three transactions on team 1 give three notifications, got %d", req.count(1))

	require.NoError(t, b.e.Start(ctx))
	b.idle(t)
	require.Positive(t, b.builds.Load())

	// The sweep finds nothing stale after the builds, then finds the change no intake saw.
	require.NoError(t, l.Stop(ctx))
	sweepReq := &countingRequester{inner: b.e, teams: map[int64]int{}}
	s := NewSweep(b.src, b.rdb, cachekeys.Layout{}, sweepReq)
	n, err := s.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, n, "team 1 is fresh and team 2 has no data")
	_, err = b.pool.Exec(ctx, `UPDATE posthog_featureflag SET updated_at = now() + interval '1 second' WHERE id = 102`)
	require.NoError(t, err)
	n, err = s.RunOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, sweepReq.count(1))
}
