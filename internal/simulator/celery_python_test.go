package simulator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/testenv"
)

// TestCeleryReadsSimulatedMessages has the simulator publish through its kombu layout to
// a real Redis, then real kombu consumes the messages and real Celery runs them as the
// PostHog task names: the simulated broker traffic is what a Celery worker would see.
func TestCeleryReadsSimulatedMessages(t *testing.T) {
	t.Parallel()
	py := testenv.Python(t, "celery", "redis")
	url := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A simulated fleet drives the producer: real changes, both tasks per change.
	s, err := New(ctx, Options{Seed: 3, Broker: &Kombu{Store: RedisStore{C: c}}, ChangesPerMinute: 60})
	require.NoError(t, err)
	require.NoError(t, s.Advance(ctx, nil, s.Now.Add(2*time.Minute), time.Second))
	// and a few with priorities, to cover every priority list.
	for i, pri := range []int{0, 3, 6, 9} {
		task := Task{ID: s.uuid(), Name: TaskFlags, TeamID: int64(1000 + i), Queue: DefaultQueue, Priority: pri}
		require.NoError(t, s.Broker.Publish(ctx, task, s.uuid(), "gen1@web-0"))
		s.Enqueued++
	}
	depth, err := s.Broker.Depth(ctx, DefaultQueue)
	require.NoError(t, err)
	require.Equal(t, s.Enqueued, depth)
	require.Greater(t, depth, int64(20))

	cmd := exec.CommandContext(ctx, py, "testdata/consume.py", url, DefaultQueue, itoa(depth))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "celery consumer failed: %s", stderr.String())

	type row struct {
		Task     string `json:"task"`
		TeamID   int64  `json:"team_id"`
		Kind     string `json:"kind"`
		Priority int    `json:"priority"`
	}
	var rows []row
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r row
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), sc.Text())
		rows = append(rows, r)
	}
	require.Len(t, rows, int(depth))
	byName := map[string]int{}
	priorities := map[int]bool{}
	for _, r := range rows {
		byName[r.Task]++
		priorities[r.Priority] = true
		_, known := s.Fleet.Team(r.TeamID)
		require.True(t, known || r.TeamID >= 1000, "team %d", r.TeamID)
		if r.Task == TaskFlags {
			require.Equal(t, "flags", r.Kind)
		} else {
			require.Equal(t, "definitions", r.Kind)
		}
	}
	require.Equal(t, byName[TaskDefinitions]+4, byName[TaskFlags], "one of each per change, plus the four prioritised")
	require.Equal(t, map[int]bool{0: true, 3: true, 6: true, 9: true}, priorities)
	// kombu acked everything: the queue and the unacked hash are empty.
	depth, err = s.Broker.Depth(ctx, DefaultQueue)
	require.NoError(t, err)
	require.Zero(t, depth)
	require.Zero(t, c.HLen(ctx, "unacked").Val())
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
