package faults

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// scenario breaks one part of a running deployment and checks what a user would.
// They run in order against one deployment, each leaving it healthy for the next.
type scenario struct {
	name string
	run  func(t *testing.T, e *env)
}

// scenarios is the suite.
var scenarios = []scenario{
	{"poison among a Celery burst: the valid tasks are built, the poison dead-lettered, nothing unacked", celeryPoisonBurst},
	{"cache Redis restarts empty: every cache comes back", cacheRedisRestart},
	{"state database connections terminated: writes succeed", stateConnectionsTerminated},
	{"serve killed mid-build: the build is rescued and completes", serveKilledMidBuild},
	{"Alertmanager down, then up: no lost alert", alertmanagerOutage},
}

func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs serve as a subprocess; not in -short")
	}
	e := newEnv(t)
	e.start()
	// Every team's caches are built once before anything breaks.
	need := e.teamsNeedingCaches()
	require.NotEmpty(t, need)
	e.eventually(90*time.Second, "the first builds did not cover every team", func() bool { return e.missingCaches(need) == 0 })
	for _, s := range scenarios {
		ok := t.Run(s.name, func(t *testing.T) {
			e.t = t // the scenarios run one after the other
			defer func() { e.t = e.root }()
			s.run(t, e)
		})
		if !ok {
			return // the deployment may be left broken: stop here
		}
	}
}

// cacheRedisRestart: the cache Redis is killed and comes back empty. Nothing in the
// flag data changed, so no intake asks for a build; the sweep finds every cache
// missing from the build index and rebuilds it, and meanwhile the staleness
// detectors say caches are missing.
func cacheRedisRestart(t *testing.T, e *env) {
	need := e.teamsNeedingCaches()
	total := 0
	for _, k := range need {
		total += len(k)
	}
	e.cache.Kill()
	e.cache.Start()
	require.Equal(t, total, e.missingCaches(need), "the restarted Redis holds nothing")
	restarted := time.Now()
	e.eventually(2*time.Minute, "caches still missing after the cache Redis restarted", func() bool { return e.missingCaches(need) == 0 })
	t.Logf("%d caches of %d teams back %s after the restart (sweep interval 3s)", total, len(need), time.Since(restarted).Round(100*time.Millisecond))
	// The look in between judged the missing caches stale.
	found := false
	for _, f := range e.findings() {
		if (f.Kind == "cache_stale" || f.Kind == "fleet_cache_stale") && strings.Contains(f.Summary, "missing") {
			found = true
		}
	}
	require.True(t, found, "no finding said that caches were missing")
}

// stateConnectionsTerminated: every connection to the state database is terminated
// (a failover, an operator's pg_terminate_backend); the next writes succeed, three
// times in a row.
func stateConnectionsTerminated(t *testing.T, e *env) {
	team := firstTeam(e)
	path := "/api/v1/teams/" + strconv.FormatInt(team, 10)
	reads := 0
	// kill makes serve hold state-database connections (a read of the rebuild
	// status, past the response cache) and terminates them.
	kill := func() {
		reads++
		require.Equal(t, http.StatusOK, e.api(http.MethodGet, "/api/v1/rebuilds?n="+strconv.Itoa(reads), nil, nil))
		require.Positive(t, testenv.TerminateBackends(t, e.dbURL), "no connection to terminate")
	}
	for round := range 3 {
		kill()
		require.Equal(t, http.StatusAccepted, e.api(http.MethodPost, path+"/rebuild", map[string]string{"reason": "faults"}, nil),
			"round %d: rebuild request after termination", round)
		kill()
		require.Equal(t, http.StatusOK, e.api(http.MethodPost, path+"/quarantine", map[string]string{"reason": "faults"}, nil),
			"round %d: quarantine after termination", round)
		kill()
		require.Equal(t, http.StatusOK, e.api(http.MethodPost, path+"/release", map[string]string{"reason": "faults"}, nil),
			"round %d: release after termination", round)
	}
}

func firstTeam(e *env) int64 {
	var id int64
	require.NoError(e.t, e.pool.QueryRow(context.Background(),
		`SELECT min(team_id) FROM posthog_featureflag WHERE NOT deleted AND active`).Scan(&id))
	return id
}

// serveKilledMidBuild: serve is killed with SIGKILL while it builds the giant team;
// a new serve rescues the job (the dead replica's heartbeat stopped), builds the team
// after all, and the dead build's temporary keys are gone.
func serveKilledMidBuild(t *testing.T, e *env) {
	giant := strconv.FormatInt(e.giant, 10)
	before := len(e.history(e.giant))
	require.Equal(t, http.StatusAccepted, e.api(http.MethodPost, "/api/v1/teams/"+giant+"/rebuild", map[string]string{"reason": "faults"}, nil))
	// Wait until the build writes its temporary keys, then kill serve.
	building := cachekeys.Layout{}.Building(e.giant, cachekeys.KindFlags)
	e.eventually(60*time.Second, "the giant team's build never started writing", func() bool {
		return e.cdb.SCard(context.Background(), building).Val() > 0
	})
	builds, err := e.cdb.SMembers(context.Background(), building).Result()
	require.NoError(t, err)
	e.serve.stop(syscall.SIGKILL)
	leftover := cachekeys.Layout{}.Temp(e.giant, cachekeys.KindFlags, builds[0])

	e.start()
	e.eventually(2*time.Minute, "the killed build was not rescued and completed", func() bool {
		h := e.history(e.giant)
		return len(h) > before && h[0].OK
	})
	h := e.history(e.giant)
	rescued := false
	for _, r := range h[:len(h)-before] {
		rescued = rescued || (!r.OK && strings.Contains(r.Error, "rescued"))
	}
	require.True(t, rescued, "no rescued attempt in the history: %+v", h[:len(h)-before])
	require.Zero(t, e.cdb.Exists(context.Background(), leftover).Val(), "the dead build's temporary key is still there")
}

// alertmanagerOutage: Alertmanager is down when a finding fires (an operator
// quarantines a team); when it is back, the alert arrives, because flagwarden keeps
// sending what is active.
func alertmanagerOutage(t *testing.T, e *env) {
	team := firstTeam(e)
	path := "/api/v1/teams/" + strconv.FormatInt(team, 10)
	e.am.Kill()
	require.Equal(t, http.StatusOK, e.api(http.MethodPost, path+"/quarantine", map[string]string{"reason": "faults: paging during an outage"}, nil))
	e.eventually(30*time.Second, "the quarantine finding did not fire", func() bool {
		for _, f := range e.findings() {
			if f.Kind == "team_quarantined" && f.Subject == strconv.FormatInt(team, 10) && f.State == "firing" {
				return true
			}
		}
		return false
	})
	e.am.Start()
	e.eventually(60*time.Second, "the alert raised during the outage never reached the receiver", func() bool {
		_, ok := e.hook.Find("FlagwardenTeamQuarantined", "firing", "team", strconv.FormatInt(team, 10))
		return ok
	})
	require.Equal(t, http.StatusOK, e.api(http.MethodPost, path+"/release", map[string]string{"reason": "faults"}, nil))
	e.eventually(60*time.Second, "the release never resolved the alert", func() bool {
		_, ok := e.hook.Find("FlagwardenTeamQuarantined", "resolved", "team", strconv.FormatInt(team, 10))
		return ok
	})
}

// celeryQueue is the broker queue serve's Celery consumer takes PostHog's tasks from.
const celeryQueue = "flagwarden"

// celeryPoisonBurst: real Celery sends a 116,000-task burst of PostHog's two cache
// tasks over every team, with poison in the middle (a team id beyond int4, a task
// nobody routes here, a message that is not JSON). The valid tasks collapse to a few
// builds per team, every poison message is dead-lettered with its reason, and the
// queue and unacked are empty afterwards.
func celeryPoisonBurst(t *testing.T, e *env) {
	ctx := context.Background()
	var first, last int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT min(id), max(id) FROM posthog_team`).Scan(&first, &last))
	var before int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM flagwarden_rebuild_results`).Scan(&before))
	broker := redis.NewClient(mustParseRedis(t, e.broker.URL()))
	defer broker.Close()

	// The incident's backlog: 116,000 tasks queued while no consumer ran (serve is
	// stopped), from two producer processes (one per core), each sending every other
	// round; the poison goes in the middle. While the producers trickle tasks into a
	// running consumer, every task that arrives after its team's build started is a
	// new change and rightly builds again; a backlog is what must collapse.
	e.serve.stop(syscall.SIGTERM)
	teams := int(last - first + 1)
	rounds := (116_000 + teams - 1) / teams
	py := testenv.Python(t, "celery", "redis")
	script := `
import sys
from celery import Celery
app = Celery(broker=sys.argv[1])
queue, first, last, rounds, part = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
names = ['posthog.tasks.feature_flags.update_team_flags_cache', 'posthog.tasks.feature_flags.update_team_service_flags_cache']
with app.producer_or_acquire() as p:
    for r in range(part, rounds, 2):
        for team in range(first, last + 1):
            app.send_task(names[(r + team) % 2], args=[team], queue=queue, producer=p)
        if r == rounds // 2:
            app.send_task(names[0], args=[2147483648], queue=queue, producer=p)
            app.send_task('posthog.tasks.something_else', args=[first], queue=queue, producer=p)
`
	var producers []*exec.Cmd
	outs := make([]*strings.Builder, 2)
	for part := range 2 {
		cmd := exec.Command(py, "-c", script, e.broker.URL(), celeryQueue,
			strconv.FormatInt(first, 10), strconv.FormatInt(last, 10), strconv.Itoa(rounds), strconv.Itoa(part))
		outs[part] = new(strings.Builder)
		cmd.Stdout, cmd.Stderr = outs[part], outs[part]
		require.NoError(t, cmd.Start())
		producers = append(producers, cmd)
	}
	for i, cmd := range producers {
		require.NoError(t, cmd.Wait(), "celery producer: %s", outs[i])
	}
	require.NoError(t, broker.LPush(ctx, celeryQueue, "{this is not json}").Err())
	sent := rounds*teams + 3
	require.EqualValues(t, sent, broker.LLen(ctx, celeryQueue).Val(), "the backlog is queued whole")
	e.start()
	started := time.Now()

	e.eventually(3*time.Minute, "the burst was not drained", func() bool {
		n, _ := broker.LLen(ctx, celeryQueue).Result()
		u, _ := broker.HLen(ctx, "unacked").Result()
		return n == 0 && u == 0
	})
	letters, err := broker.LRange(ctx, celeryQueue+".flagwarden_dead", 0, -1).Result()
	require.NoError(t, err)
	reasons := map[string]int{}
	for _, l := range letters {
		var d struct {
			Reason string `json:"reason"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &d), l)
		reasons[d.Reason]++
	}
	require.Equal(t, map[string]int{"team_id": 1, "unknown_task": 1, "not_celery": 1}, reasons, "every poison message is dead-lettered with its reason")
	require.Zero(t, broker.ZCard(ctx, "unacked_index").Val(), "nothing is left unacked")

	// Every team's caches are there after the burst, and the burst collapsed.
	need := e.teamsNeedingCaches()
	e.eventually(2*time.Minute, "caches missing after the burst", func() bool { return e.missingCaches(need) == 0 })
	e.eventually(2*time.Minute, "builds still running after the burst", func() bool {
		var running int
		_ = e.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state IN ('available', 'running', 'scheduled', 'retryable')`).Scan(&running)
		return running == 0
	})
	var after int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM flagwarden_rebuild_results`).Scan(&after))
	t.Logf("%d Celery tasks over %d teams: %d builds, drained and built %s after serve started", sent, teams, after-before, time.Since(started).Round(100*time.Millisecond))
	require.Positive(t, after-before, "the burst built nothing")
	// The burst target (116,000 tasks → at most 1,000 builds); one build per task
	// would be 116 times that.
	require.LessOrEqual(t, after-before, 1000, "%d tasks over %d teams ran %d builds: duplicates were not collapsed", sent, teams, after-before)
}

func mustParseRedis(t *testing.T, url string) *redis.Options {
	t.Helper()
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	return opt
}
