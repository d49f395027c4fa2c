package rebuild

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// TestCoalescerSlots walks one team's slot through its states with explicit times.
func TestCoalescerSlots(t *testing.T) {
	t.Parallel()
	c := newCoalescer()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	_, ok := c.join(1, LaneSmall, t0)
	require.False(t, ok, "nothing known: the database decides")

	c.waiting(1, 7, LaneSmall, t0.Add(time.Second))
	res, ok := c.join(1, LaneSmall, t0.Add(500*time.Millisecond))
	require.True(t, ok)
	require.Equal(t, RequestResult{TeamID: 1, JobID: 7, Joined: true, Lane: LaneSmall}, res)
	_, ok = c.join(1, LaneLarge, t0)
	require.False(t, ok, "another lane goes to the database")
	require.Nil(t, c.takeUnverified(), "joins before the not-before time need no check")
	_, ok = c.join(1, LaneSmall, t0.Add(time.Second-clockSkewMargin))
	require.True(t, ok, "after the not-before time (less the clock margin) the join is optimistic")
	require.Equal(t, map[int64]pendingJoin{1: {jobID: 7, lane: LaneSmall}}, c.takeUnverified(), "and queued for verification")
	_, _ = c.join(1, LaneSmall, t0.Add(2*time.Second))
	c.begin(1, 7, LaneSmall)
	require.Nil(t, c.takeUnverified(), "a build starting in this process covers the joins before it")
	c.end(1, false, false, t0)
	c.waiting(1, 7, LaneSmall, t0.Add(time.Second))

	c.begin(1, 7, LaneSmall)
	c.waiting(1, 9, LaneSmall, t0.Add(time.Hour))
	_, ok = c.join(1, LaneLarge, t0.Add(2*time.Second))
	require.True(t, ok, "a running build takes requests for any lane as its follow-up")
	require.True(t, c.end(1, true, false, t0.Add(3*time.Second)), "the request during the run gives one follow-up")
	res, ok = c.join(1, LaneSmall, t0.Add(2500*time.Millisecond))
	require.True(t, ok, "the snoozed follow-up is waiting")
	require.EqualValues(t, 7, res.JobID)

	c.begin(1, 7, LaneSmall)
	require.False(t, c.end(1, true, false, t0), "no request during the run: no follow-up")
	_, ok = c.join(1, LaneSmall, t0)
	require.False(t, ok)

	c.begin(1, 7, LaneSmall)
	require.True(t, c.end(1, true, true, t0.Add(time.Second)), "another replica's request (database mark) gives a follow-up")
	c.begin(1, 7, LaneSmall)
	_, _ = c.join(1, LaneSmall, t0)
	require.False(t, c.end(1, false, false, t0), "a failed build is retried by River, not followed up")
	_, ok = c.join(1, LaneSmall, t0)
	require.False(t, ok)

	c.waiting(2, 8, LaneSmall, t0.Add(time.Hour))
	c.forget(2)
	_, ok = c.join(2, LaneSmall, t0)
	require.False(t, ok, "forgotten on quarantine, release or reroute")
}

// TestCoalescerSweepBoundsSlots: expired waiting slots are dropped as the map grows.
func TestCoalescerSweepBoundsSlots(t *testing.T) {
	t.Parallel()
	c := newCoalescer()
	past := time.Now().Add(-2 * time.Minute)
	for team := range int64(10_000) {
		c.waiting(team, team, LaneSmall, past)
	}
	c.mu.Lock()
	n := len(c.slots)
	c.mu.Unlock()
	require.Less(t, n, 2048)
}

// TestEngineCoalescesAcrossReplicas: two engines share one Postgres. Requests to A are
// answered from A's memory while the job waits; B, which runs the build, cannot start
// it before its not-before time; requests to A while B builds are verified and still
// yield exactly one follow-up, through the database.
func TestEngineCoalescesAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const delay = 300 * time.Millisecond
	b := newEngineBundle(t, false, func(o *Options) { o.CoalesceDelay = delay })
	regA := prometheus.NewRegistry()
	a, err := NewPostgres(b.pool, Options{Source: b.src, Sizes: b.src, Publisher: NewPublisher(b.rdb, PublisherOptions{}),
		CoalesceDelay: delay, Registerer: regA})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Stop(context.Background()) })

	var started atomic.Int64 // unix nanos of B's first build start
	gate := make(chan struct{})
	b.setGate(gate)
	prev := b.e.testHook
	b.e.testHook = func(team int64) {
		started.CompareAndSwap(0, time.Now().UnixNano())
		prev(team)
	}

	before := time.Now()
	first, err := a.Request(ctx, 1, "api")
	require.NoError(t, err)
	require.False(t, first.Joined)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				res, err := a.Request(ctx, 1, "api")
				require.NoError(t, err)
				require.True(t, res.Joined)
				require.Equal(t, first.JobID, res.JobID)
			}
		}()
	}
	wg.Wait()
	coalesced := testutil.ToFloat64(a.metrics.requests.WithLabelValues("api", "coalesced"))
	joined := testutil.ToFloat64(a.metrics.requests.WithLabelValues("api", "joined"))
	require.Equal(t, 200.0, coalesced+joined)

	require.NoError(t, b.e.Start(ctx))
	eventually(t, 20*time.Second, func() bool { return b.builds.Load() == 1 }, "B did not start the build")
	require.GreaterOrEqual(t, time.Unix(0, started.Load()).Sub(before), delay-clockSkewMargin,
		"no replica starts a job before its not-before time")

	// A knows nothing of B's run: past the not-before time its requests join from
	// memory optimistically, and A's verification finds the job started and marks the
	// follow-up in the database.
	for range 5 {
		res, err := a.Request(ctx, 1, "notify")
		require.NoError(t, err)
		require.True(t, res.Joined)
	}
	require.Equal(t, 5.0, testutil.ToFloat64(a.metrics.requests.WithLabelValues("notify", "coalesced")))
	require.NoError(t, a.Flush(ctx))
	b.setGate(nil)
	close(gate)
	b.idle(t)
	require.EqualValues(t, 2, b.builds.Load(), "one build plus exactly one follow-up")
}

// TestEngineVerifiesOptimisticJoins runs the verification pass on both drivers: a join
// after the not-before time to a job that still waits needs nothing more; once the
// job has run, the next verified join gets a new build.
func TestEngineVerifiesOptimisticJoins(t *testing.T) {
	t.Parallel()
	for _, driver := range []string{"postgres", "sqlite"} {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			const delay = 30 * time.Millisecond
			b := newEngineBundle(t, driver == "sqlite", func(o *Options) { o.CoalesceDelay = delay })
			first, err := b.e.Request(ctx, 1, "api")
			require.NoError(t, err)
			deadline := time.Now().Add(delay + clockSkewMargin)
			eventually(t, 10*time.Second, func() bool { return time.Now().After(deadline) }, "clock did not move")

			res, err := b.e.Request(ctx, 1, "api")
			require.NoError(t, err)
			require.Equal(t, first.JobID, res.JobID)
			require.Equal(t, 1.0, testutil.ToFloat64(b.e.metrics.requests.WithLabelValues("api", "coalesced")))
			require.NoError(t, b.e.Flush(ctx))
			require.Zero(t, b.builds.Load(), "the job still waits: it covers the join")

			require.NoError(t, b.e.Start(ctx))
			b.idle(t)
			require.EqualValues(t, 1, b.builds.Load())
			// This process ran the build, so it knows the job is gone; simulate a
			// replica that does not: a stale waiting slot for the finished job.
			b.e.jobs.waiting(1, first.JobID, LaneSmall, time.Now().Add(-time.Second))
			_, err = b.e.Request(ctx, 1, "api")
			require.NoError(t, err)
			require.Equal(t, 2.0, testutil.ToFloat64(b.e.metrics.requests.WithLabelValues("api", "coalesced")))
			require.NoError(t, b.e.Flush(ctx))
			eventually(t, 20*time.Second, func() bool { return b.builds.Load() == 2 }, "the verified join did not get its build")
		})
	}
}
