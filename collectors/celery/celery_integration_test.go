package celery

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// kombuView is what producer.py measure prints: kombu's own numbers.
type kombuView struct {
	Queues map[string]struct {
		Size       int64            `json:"size"`
		ByPriority map[string]int64 `json:"by_priority"`
	} `json:"queues"`
	Unacked int64 `json:"unacked"`
	Overdue int64 `json:"overdue"`
}

type celeryEnv struct {
	t   *testing.T
	py  string
	dir string
	env []string
}

func (e celeryEnv) run(args ...string) []byte {
	e.t.Helper()
	cmd := exec.Command(e.py, append([]string{"producer.py"}, args...)...)
	cmd.Dir = e.dir
	cmd.Env = e.env
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		e.t.Fatalf("producer.py %v: %v\n%s", args, err, stderr)
	}
	return out
}

func (e celeryEnv) measure(horizon time.Time) kombuView {
	e.t.Helper()
	var v kombuView
	out := e.run("measure", strconv.FormatFloat(float64(horizon.UnixNano())/1e9, 'f', 6, 64))
	require.NoError(e.t, json.Unmarshal(out, &v), "%s", out)
	return v
}

// startWorker runs a real prefork Celery worker on queue "work" in its own process group
// and kills the group when the test ends.
func (e celeryEnv) startWorker() {
	e.t.Helper()
	cmd := exec.Command(e.py, "-m", "celery", "-A", "producer", "worker", "-Q", "work",
		"--concurrency", "1", "--pool", "prefork", "--without-mingle", "--without-gossip", "-l", "warning")
	cmd.Dir = e.dir
	cmd.Env = e.env
	logf, err := os.Create(filepath.Join(e.t.TempDir(), "worker.log"))
	require.NoError(e.t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(e.t, cmd.Start())
	e.t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
		if e.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			e.t.Logf("worker log:\n%s", b)
		}
	})
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestCollectAgainstRealCelery puts real Celery messages on a private Redis with a key
// prefix and a custom sep, runs a real prefetching worker, and checks every number the
// collector reports against kombu's own view of the same broker.
func TestCollectAgainstRealCelery(t *testing.T) {
	py := testenv.Python(t, "celery", "redis")
	url := testenv.Redis(t)
	const prefix, sep = "fw:", ":"
	dir, err := filepath.Abs("testdata")
	require.NoError(t, err)
	e := celeryEnv{t: t, py: py, dir: dir, env: append(os.Environ(),
		"FW_BROKER_URL="+url, "FW_PREFIX="+prefix, "FW_SEP="+sep, "PYTHONDONTWRITEBYTECODE=1")}

	var sent struct {
		SentTeams []int64        `json:"sent_teams"`
		SentTasks map[string]int `json:"sent_tasks"`
		Pickled   int            `json:"pickled"`
	}
	require.NoError(t, json.Unmarshal(e.run("produce"), &sent))

	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	// A message that is not Celery's at all, at the head of the unconsumed queue.
	require.NoError(t, rdb.LPush(ctx, prefix+"nobody", "not a kombu message").Err())

	e.startWorker()
	// Wait until the worker has prefetched and the broker is still: the blocking task
	// holds every reserved message unacked.
	var prev kombuView
	deadline := time.Now().Add(60 * time.Second)
	for {
		v := e.measure(time.Now())
		if v.Unacked > 0 && v.Unacked == prev.Unacked && v.Queues["work"].Size == prev.Queues["work"].Size {
			break
		}
		require.True(t, time.Now().Before(deadline), "worker never prefetched; kombu says %+v", v)
		prev = v
		time.Sleep(500 * time.Millisecond)
	}

	// The collector's clock runs two hours ahead so that with a one-hour visibility
	// timeout every unacked message is overdue, as kombu's ZCOUNT over the same horizon
	// says.
	at := time.Now().Add(2 * time.Hour)
	reg := prometheus.NewRegistry()
	snaps := snapshot.NewStore()
	ss := series.New(series.Options{Retention: time.Hour, MaxPoints: 100, MaxSeries: 1000}, nil)
	c, err := New(rdb, Options{
		Queues: []string{"ghost"}, Sep: sep, GlobalKeyPrefix: prefix, VisibilityTimeout: time.Hour,
		SampleSize: 100, SampleQueues: 10, TeamKwarg: "team_id", TeamPosition: 0,
		Clock: clock.Func(func() time.Time { return at }),
	}, snaps, ss, reg, discardLogger())
	require.NoError(t, err)

	require.NoError(t, c.RunOnce(ctx))
	want := e.measure(at.Add(-time.Hour))
	got := snaps.Queues()

	names := map[string]snapshot.Queue{}
	for _, q := range got.Queues {
		names[q.Name] = q
	}
	require.ElementsMatch(t, []string{"work", "nobody", "ghost"}, keysOf(names),
		"bound queues plus configured ones, and no celeryev/pidbox/reply plumbing")
	require.True(t, names["nobody"].Bound, "a queue nobody consumes is found through its binding")
	require.False(t, names["ghost"].Bound)
	require.Zero(t, names["ghost"].Depth)

	for _, qn := range []string{"work", "nobody"} {
		k := want.Queues[qn]
		require.Equal(t, k.Size, names[qn].Depth, "queue %s depth vs kombu _size", qn)
		for step, n := range k.ByPriority {
			s, _ := strconv.Atoi(step)
			require.Equal(t, n, names[qn].ByPriority[s], "queue %s priority %s", qn, step)
			require.Equal(t, float64(n), gaugeValue(t, reg, "flagwarden_celery_queue_depth", map[string]string{"queue": qn, "priority": step}))
		}
	}
	require.Positive(t, want.Unacked)
	require.Equal(t, want.Unacked, got.Unacked, "HLEN unacked")
	require.Equal(t, want.Overdue, got.Overdue, "overdue unacked")
	require.Equal(t, want.Unacked, names["work"].Unacked, "every unacked message came from work")
	require.Equal(t, want.Overdue, names["work"].Overdue)
	require.Zero(t, names["nobody"].Unacked)
	require.Equal(t, float64(want.Unacked), gaugeValue(t, reg, "flagwarden_celery_unacked_messages", map[string]string{"queue": "work"}))
	require.Zero(t, gaugeValue(t, reg, "flagwarden_celery_unacked_messages", map[string]string{"queue": Unattributed}),
		"every unacked message was traced to its queue, so the sum over queues is HLEN")
	require.Equal(t, float64(want.Overdue), gaugeValue(t, reg, "flagwarden_celery_overdue_messages", map[string]string{"queue": "work"}))

	comp := names["nobody"].Composition
	require.EqualValues(t, want.Queues["nobody"].Size, comp.Sampled, "a small queue is sampled whole")
	require.Equal(t, sent.Pickled+1, comp.Undecodable, "the pickled message and the foreign one")
	wantTeams := map[int64]int{}
	for _, tm := range sent.SentTeams {
		wantTeams[tm]++
	}
	require.Equal(t, wantTeams, comp.ByTeam)
	require.Equal(t, len(wantTeams), comp.DistinctTeams)
	require.InDelta(t, 1-float64(len(wantTeams))/float64(len(sent.SentTeams)), comp.DuplicateRatio, 1e-9)
	wantTasks := map[string]int{}
	for name, n := range sent.SentTasks {
		wantTasks[name] = n
	}
	require.Equal(t, wantTasks, comp.ByTask)
	require.Equal(t, float64(comp.DistinctTeams), gaugeValue(t, reg, "flagwarden_celery_backlog_distinct_teams", map[string]string{"queue": "nobody"}))
	require.GreaterOrEqual(t, counterValue(t, reg, "flagwarden_celery_undecodable_messages_total"), float64(comp.Undecodable))

	p, ok := ss.Last(series.Key(series.QueueDepth, "nobody"))
	require.True(t, ok)
	require.Equal(t, float64(want.Queues["nobody"].Size), p.V)

	// Nothing consumes "nobody": its tail stays, so its age is the time between looks.
	require.Zero(t, names["nobody"].OldestAge)
	at = at.Add(30 * time.Second)
	require.NoError(t, c.RunOnce(ctx))
	for _, q := range snaps.Queues().Queues {
		if q.Name == "nobody" {
			require.Equal(t, 30*time.Second, q.OldestAge)
		}
	}
	require.Equal(t, 30.0, gaugeValue(t, reg, "flagwarden_celery_queue_oldest_age_seconds", map[string]string{"queue": "nobody"}))
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func findMetric(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return m
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return nil
}

func gaugeValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return findMetric(t, reg, name, labels).GetGauge().GetValue()
}

func counterValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	return findMetric(t, reg, name, nil).GetCounter().GetValue()
}

func labelValues(t *testing.T, reg prometheus.Gatherer, name, label string) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					out[lp.GetValue()] = true
				}
			}
		}
	}
	return out
}
