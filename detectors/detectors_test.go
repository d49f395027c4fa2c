package detectors

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

var t0 = time.Date(2026, 2, 10, 12, 0, 0, 0, time.UTC)

func TestNormalQuantile(t *testing.T) {
	t.Parallel()
	require.InDelta(t, 3.719, normalQuantile(1-1e-4), 0.001)
}

func TestTrackerLifecycle(t *testing.T) {
	t.Parallel()
	tr := NewTracker(Links{RunbookBase: "https://docs/runbook.md", ExternalURL: "https://fw.example/"}, 15*time.Minute)
	obs := Observation{Kind: "backlog_growth", Severity: SeverityWarning, Subject: "celery",
		Labels: map[string]string{"queue": "celery"}, For: 5 * time.Minute, Link: queueLink("celery")}
	ch := tr.Update(t0, []Observation{obs})
	require.Len(t, ch, 1)
	f := ch[0].Finding
	require.Equal(t, StatePending, f.State)
	require.Equal(t, "backlog_growth{queue=celery}", f.ID)
	require.Equal(t, "https://docs/runbook.md#backlog_growth", f.RunbookURL)
	require.Equal(t, "https://fw.example/?queue=celery", f.GeneratorURL)
	require.Equal(t, map[string]string{"alertname": "backlog_growth", "severity": "warning", "queue": "celery"}, f.Labels)
	require.Empty(t, tr.Relevant(), "pending does not page")

	f = tr.Update(t0.Add(5*time.Minute), []Observation{obs})[0].Finding
	require.Equal(t, StateFiring, f.State)
	require.Equal(t, t0, f.ActiveAt)
	require.Equal(t, t0.Add(5*time.Minute), f.FiredAt)
	require.True(t, tr.IsFiring(f.ID))

	// Severity moves; identity does not.
	obs.Severity = SeverityCritical
	f = tr.Update(t0.Add(6*time.Minute), []Observation{obs})[0].Finding
	require.Equal(t, "backlog_growth{queue=celery}", f.ID)
	require.Equal(t, "critical", f.Labels["severity"])

	ch = tr.Update(t0.Add(7*time.Minute), nil)
	require.Len(t, ch, 1)
	require.Equal(t, StateResolved, ch[0].Finding.State)
	require.Equal(t, t0.Add(7*time.Minute), ch[0].Finding.ResolvedAt)
	require.Len(t, tr.Relevant(), 1, "resolved findings are resent for the retention")
	tr.Update(t0.Add(30*time.Minute), nil)
	require.Empty(t, tr.Relevant())

	// A pending finding that clears is dropped, never resolved.
	tr.Update(t0.Add(40*time.Minute), []Observation{obs})
	ch = tr.Update(t0.Add(41*time.Minute), nil)
	require.True(t, ch[0].Dropped)

	// Restore continues a firing finding without re-pending it.
	tr2 := NewTracker(Links{}, time.Minute)
	tr2.Restore([]Finding{{ID: obs.ID(), Kind: obs.Kind, State: StateFiring, ActiveAt: t0, FiredAt: t0}})
	f = tr2.Update(t0.Add(time.Hour), []Observation{obs})[0].Finding
	require.Equal(t, StateFiring, f.State)
	require.Equal(t, t0, f.FiredAt)
}

func teams(sizes ...int64) []snapshot.TeamSize {
	out := make([]snapshot.TeamSize, len(sizes))
	for i, s := range sizes {
		out[i] = snapshot.TeamSize{TeamID: int64(i + 1), FlagsPayloadBytes: s}
	}
	return out
}

func TestOutliers(t *testing.T) {
	t.Parallel()
	normal := make([]int64, 0, 200)
	for i := range 200 {
		normal = append(normal, 50_000+int64(i)*1000)
	}
	for _, tc := range []struct {
		name      string
		teams     []snapshot.TeamSize
		opts      OutlierOptions
		want      []string // subjects flagged
		critical  []string
		insuff    bool
		fallback  bool
		wantMaxZ0 bool
	}{
		{name: "no giant", teams: teams(normal...), opts: OutlierOptions{MinBytes: 1}},
		{name: "one giant", teams: teams(append(slices.Clone(normal), 5_000_000_000)...), opts: OutlierOptions{MinBytes: 1}, want: []string{"201"}},
		{name: "giant under the absolute floor", teams: teams(append(slices.Clone(normal), 900_000)...), opts: OutlierOptions{MinBytes: 1 << 20}},
		{name: "too few teams: only the memory rule", teams: teams(1000, 2000, 3_000_000_000),
			opts: OutlierOptions{MinBytes: 1, WorkerMemoryLimit: 8 << 30}, critical: []string{"3"}, insuff: true, wantMaxZ0: true},
		{name: "MAD zero: most teams the same size", teams: teams(append(slices.Repeat([]int64{4096}, 150), 4097, 4100, 4200, 900_000_000)...),
			opts: OutlierOptions{MinBytes: 1}, want: []string{"154"}, fallback: true},
		{name: "all equal", teams: teams(slices.Repeat([]int64{4096}, 100)...), opts: OutlierOptions{MinBytes: 1}, wantMaxZ0: true},
		{name: "memory rule fires on a team that is not a statistical outlier",
			teams: teams(append(slices.Repeat([]int64{2 << 30}, 60), 3<<30)...), opts: OutlierOptions{MinBytes: 1, WorkerMemoryLimit: 8 << 30},
			fallback: true,
			critical: func() []string {
				var ids []string
				for i := 1; i <= 61; i++ {
					ids = append(ids, itoa(int64(i)))
				}
				return ids
			}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := ScoreTeams(tc.teams, tc.opts)
			require.Equal(t, tc.insuff, r.Insufficient)
			require.Equal(t, tc.fallback, r.Fallback)
			if tc.wantMaxZ0 {
				require.Zero(t, r.MaxZ)
			}
			var warn, crit []string
			for _, o := range Outliers(r, tc.opts) {
				require.Equal(t, "outlier_team", o.Kind)
				require.Equal(t, "/teams/"+o.Subject, o.Link)
				for _, k := range []string{"value_bytes", "median_bytes", "p99_bytes", "p999_bytes", "rank", "z", "ratio_to_p999", "estimated_memory_bytes"} {
					require.Contains(t, o.Evidence, k)
				}
				if o.Severity == SeverityCritical {
					crit = append(crit, o.Subject)
				} else {
					warn = append(warn, o.Subject)
				}
			}
			slices.Sort(crit)
			want := slices.Clone(tc.critical)
			slices.Sort(want)
			require.Equal(t, tc.want, warn)
			require.Equal(t, want, crit)
		})
	}
}

func pts(start time.Time, every time.Duration, vals ...float64) []series.Point {
	out := make([]series.Point, len(vals))
	for i, v := range vals {
		out[i] = series.Point{T: start.Add(time.Duration(i) * every), V: v}
	}
	return out
}

func never(string) bool { return false }

func TestBacklog(t *testing.T) {
	t.Parallel()
	ramp := func(n int, from, step float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = from + step*float64(i)
		}
		return out
	}
	// wobble adds ±3 so that a series goes down now and then, as real depths do.
	wobble := func(v []float64) []float64 {
		for i := range v {
			v[i] += float64(i%2*6 - 3)
		}
		return v
	}
	opts := BacklogOptions{Limit: 100000, Floor: 100}
	for _, tc := range []struct {
		name         string
		points       []series.Point
		kinds        []string
		severity     Severity
		insufficient bool
		note         string
	}{
		{name: "no samples", insufficient: true},
		{name: "20 minutes of history", points: pts(t0.Add(-20*time.Minute), time.Minute, wobble(ramp(21, 500, 1))...), insufficient: true},
		// Steep growth in the first hours: the limit is close, so it pages even before a
		// day of history rules out a daily cycle.
		// Filling at every sample, with no oldest-message age: slow workers and stopped
		// ones look the same, so it is growth, not a stall.
		{name: "steep growth, limit near", points: pts(t0.Add(-3*time.Hour), time.Minute, ramp(181, 1000, 300)...),
			kinds: []string{"backlog_growth"}, severity: SeverityCritical},
		{name: "slow growth, first day: insufficient data, no page", points: pts(t0.Add(-3*time.Hour), time.Minute, wobble(ramp(181, 1000, 1))...),
			insufficient: true},
		{name: "flat queue touching zero", points: pts(t0.Add(-3*time.Hour), time.Minute, ramp(181, 0, 0)...)},
		// A depth that never moved: 7 stuck messages look exactly like 7 parked ones
		// without the oldest message's age. Not judged, and the note says why.
		{name: "constant from the start: not judged", points: pts(t0.Add(-30*time.Minute), 15*time.Second, slices.Repeat([]float64{7}, 121)...),
			insufficient: true, note: "cannot be told from an idle one"},
		// The same stuck messages after two hours in which the depth went up and down.
		{name: "activity, then stuck: stalled", points: pts(t0.Add(-150*time.Minute), 15*time.Second,
			append(wobble(ramp(480, 10, 0)), slices.Repeat([]float64{7}, 121)...)...),
			kinds: []string{"backlog_stalled"}, severity: SeverityWarning},
		{name: "draining queue is not stalled", points: pts(t0.Add(-30*time.Minute), 15*time.Second, ramp(121, 5000, -10)...), insufficient: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obs, st := EvaluateBacklog("celery", tc.points, t0, never, opts)
			require.Equal(t, tc.insufficient, st.Insufficient, "status %+v", st)
			if tc.insufficient {
				require.Contains(t, st.Note, "insufficient data")
			}
			require.Contains(t, st.Note, tc.note)
			var kinds []string
			for _, o := range obs {
				kinds = append(kinds, o.Kind)
				require.Equal(t, tc.severity, o.Severity)
				require.Equal(t, map[string]string{"queue": "celery"}, o.Labels)
				require.Equal(t, "/?queue=celery", o.Link)
				require.NotEmpty(t, o.Description)
				if o.Kind == "backlog_stalled" {
					require.Contains(t, o.Description, "Evidence: depth only", "the finding says which evidence it used")
					require.Equal(t, 0.0, o.Evidence["evidence_oldest_age"])
				}
			}
			require.Equal(t, tc.kinds, kinds)
		})
	}
}

func TestBacklogHysteresisAndStallRecovery(t *testing.T) {
	t.Parallel()
	opts := BacklogOptions{Limit: 100000, Floor: 100, StallAfter: 15 * time.Minute}
	// Stalled at 800, then one message taken: the stall clears only on a real drain.
	vals := slices.Repeat([]float64{800}, 60)
	vals = append(vals, 799)
	p := pts(t0.Add(-15*time.Minute), 15*time.Second, vals...)
	_, st := EvaluateBacklog("q", p, t0, never, opts)
	require.False(t, st.Stalled, "a decrease while not yet firing")
	firing := func(k string) bool { return k == "backlog_stalled" }
	obs, st := EvaluateBacklog("q", p, t0, firing, opts)
	require.True(t, st.Stalled, "while firing, one message is not a drain")
	require.Equal(t, SeverityCritical, obs[0].Severity)
	vals = append(vals, 500)
	_, st = EvaluateBacklog("q", pts(t0.Add(-15*time.Minute), 15*time.Second, vals...), t0.Add(15*time.Second), firing, opts)
	require.False(t, st.Stalled)
}

func TestReplayBacklogReportsStartAndResolve(t *testing.T) {
	t.Parallel()
	// Healthy for 3 hours, stuck for an hour, then drained.
	var vals []float64
	for i := range 180 {
		vals = append(vals, float64(i%3))
	}
	vals = append(vals, slices.Repeat([]float64{400}, 60)...)
	vals = append(vals, slices.Repeat([]float64{0}, 30)...)
	eps := ReplayBacklog("q", pts(t0, time.Minute, vals...), BacklogOptions{}, 30*time.Second)
	require.Len(t, eps, 1)
	require.Equal(t, "backlog_stalled", eps[0].Kind)
	// Within 20 minutes (20 one-minute samples) of the stall (the last healthy samples before it count as
	// "not decreasing" too).
	require.WithinRange(t, eps[0].StartedAt, t0.Add(190*time.Minute), t0.Add(200*time.Minute))
	require.Equal(t, t0.Add(240*time.Minute), eps[0].ResolvedAt)
}

func TestWorkerHealth(t *testing.T) {
	t.Parallel()
	pod := func(name, waiting string) snapshot.Pod {
		return snapshot.Pod{Namespace: "posthog", Name: name, Waiting: waiting, MemoryLimit: 8 << 30}
	}
	// Many OOM kills an hour ago, none in the last 15 minutes.
	kills := pts(t0.Add(-90*time.Minute), 5*time.Minute, 2, 3, 2, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	for _, tc := range []struct {
		name  string
		in    WorkerInput
		kinds []string
	}{
		{"healthy", WorkerInput{Namespace: "posthog", Pods: []snapshot.Pod{pod("w1", ""), pod("w2", "")}}, nil},
		{"false calm: kills fell, pods in back-off", WorkerInput{Namespace: "posthog",
			Pods: []snapshot.Pod{pod("w1", "CrashLoopBackOff"), pod("w2", "CrashLoopBackOff"), pod("w3", "")}, OOMKills: kills},
			[]string{"workers_crashlooping", "workers_false_calm"}},
		{"false calm: kills fell, queue not draining", WorkerInput{Namespace: "posthog",
			Pods: []snapshot.Pod{pod("w1", "")}, OOMKills: kills, NotDraining: []string{"celery"}},
			[]string{"workers_false_calm"}},
		{"real recovery: kills fell, pods fine, queues draining", WorkerInput{Namespace: "posthog",
			Pods: []snapshot.Pod{pod("w1", "")}, OOMKills: kills}, nil},
		{"OOM kills now", WorkerInput{Namespace: "posthog", Pods: []snapshot.Pod{pod("w1", "")},
			OOMKills: pts(t0.Add(-10*time.Minute), 5*time.Minute, 1, 1, 2)}, []string{"worker_oom_kills"}},
		{"memory near limit", WorkerInput{Namespace: "posthog", Pods: []snapshot.Pod{{Namespace: "posthog", Name: "w1",
			MemoryLimit: 8 << 30, MemoryUsage: 7800 << 20}}}, []string{"worker_memory_near_limit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var kinds []string
			for _, o := range WorkerHealth(tc.in, t0, WorkerOptions{}) {
				kinds = append(kinds, o.Kind)
				require.Equal(t, "posthog", o.Labels["namespace"])
				if o.Kind == "workers_false_calm" {
					require.Equal(t, SeverityCritical, o.Severity)
					require.Contains(t, o.Description, "Do not stand down")
					require.Positive(t, o.Evidence["oom_kills_before"])
				}
			}
			require.Equal(t, tc.kinds, kinds)
		})
	}
}

func TestStaleCachesCollectorsQuarantineGrowth(t *testing.T) {
	t.Parallel()
	caches := snapshot.Caches{At: t0, Teams: []snapshot.CacheState{
		{TeamID: 1, Kind: "flags", BuiltAt: t0.Add(-time.Hour), SourceUpdatedAt: t0.Add(-50 * time.Minute)},
		{TeamID: 2, Kind: "flags", BuiltAt: t0, SourceUpdatedAt: t0.Add(-time.Minute)},
	}}
	obs := StaleCaches(caches, t0, CacheOptions{StaleAfter: 15 * time.Minute})
	require.Len(t, obs, 2)
	require.Equal(t, "cache_stale", obs[0].Kind)
	require.Equal(t, "1", obs[0].Subject)
	require.Equal(t, 3000.0, obs[0].Evidence["lag_seconds"], "waiting since the change, 50 minutes")
	require.Equal(t, "fleet_cache_stale", obs[1].Kind)

	health := []loop.Health{
		{Name: "celery", LastSuccess: t0.Add(-10 * time.Minute), LastError: "dial tcp: connection refused"},
		{Name: "pods", LastSuccess: t0.Add(-time.Minute)},
		{Name: "teams"}, // never succeeded, first seen 20 minutes ago
	}
	down := CollectorsDown(health, map[string]time.Time{"teams": t0.Add(-20 * time.Minute)}, t0, 5*time.Minute)
	require.Len(t, down, 2)
	require.Equal(t, "celery", down[0].Labels["collector"])
	require.Contains(t, down[0].Description, "connection refused")
	require.Contains(t, down[1].Description, "never succeeded")

	q := Quarantined([]snapshot.Quarantine{{TeamID: 42, Reason: "estimated build 12 GiB over the 4 GiB hard limit", Auto: true, Since: t0.Add(-time.Hour)}}, t0)
	require.Len(t, q, 1)
	require.Equal(t, "team_quarantined", q[0].Kind)
	require.Contains(t, q[0].Summary, "12 GiB")
	require.Equal(t, "/teams/42", q[0].Link)

	day := 24 * time.Hour
	growing := []series.Point{{T: t0.Add(-6 * day), V: 2e6}, {T: t0.Add(-5 * day), V: 3e6}, {T: t0.Add(-4 * day), V: 4.5e6},
		{T: t0.Add(-3 * day), V: 6e6}, {T: t0.Add(-2 * day), V: 8e6}, {T: t0.Add(-day), V: 11e6}}
	o, found, insuff := TeamGrowth(7, growing, t0, GrowthOptions{MinBytes: 1 << 20})
	require.True(t, found)
	require.False(t, insuff)
	require.Equal(t, "team_growth", o.Kind)
	require.InDelta(t, 4.5, o.Evidence["growth_ratio"], 0.01)
	_, found, insuff = TeamGrowth(7, growing[4:], t0, GrowthOptions{MinBytes: 1 << 20})
	require.False(t, found)
	require.True(t, insuff, "two days of history are not enough")
	flat := []series.Point{{T: t0.Add(-6 * day), V: 11e6}, {T: t0.Add(-3 * day), V: 10e6}, {T: t0.Add(-day), V: 11e6}}
	_, found, _ = TeamGrowth(7, flat, t0, GrowthOptions{MinBytes: 1 << 20})
	require.False(t, found)
}

func TestStallFromOldestMessageAge(t *testing.T) {
	t.Parallel()
	opts := BacklogOptions{StallAfter: 15 * time.Minute}
	// The depth wobbles (producers and a retry loop) so the depth rule would not fire,
	// but the head of the queue ages with the clock: nothing consumes it.
	var depth, age []float64
	for i := range 80 {
		depth = append(depth, float64(300+(i%3)*5))
		age = append(age, float64(600+15*i))
	}
	obs, st := EvaluateBacklogAge("q", pts(t0.Add(-20*time.Minute), 15*time.Second, depth...), pts(t0.Add(-20*time.Minute), 15*time.Second, age...),
		t0.Add(-20*time.Minute+79*15*time.Second), never, opts)
	require.True(t, st.Stalled)
	require.Equal(t, "backlog_stalled", obs[0].Kind)
	// Same depths, but the head keeps moving: consumed, not stalled.
	for i := range age {
		age[i] = float64(30 + (i%8)*15)
	}
	_, st = EvaluateBacklogAge("q", pts(t0.Add(-20*time.Minute), 15*time.Second, depth...), pts(t0.Add(-20*time.Minute), 15*time.Second, age...),
		t0.Add(-20*time.Minute+79*15*time.Second), never, opts)
	require.False(t, st.Stalled)
	// A depth that never went down but whose head moves is a busy queue, not a stall.
	_, st = EvaluateBacklogAge("q", pts(t0.Add(-20*time.Minute), 15*time.Second, slices.Repeat([]float64{700}, 80)...), pts(t0.Add(-20*time.Minute), 15*time.Second, age...),
		t0.Add(-20*time.Minute+79*15*time.Second), never, opts)
	require.False(t, st.Stalled)
}

func TestTrackerKeepFiring(t *testing.T) {
	t.Parallel()
	tr := NewTracker(Links{}, 15*time.Minute)
	obs := Observation{Kind: "worker_oom_kills", Severity: SeverityWarning, Subject: "posthog",
		Labels: map[string]string{"namespace": "posthog"}, KeepFiringFor: time.Hour, Description: "1 kill"}
	f := tr.Update(t0, []Observation{obs})[0].Finding
	require.Equal(t, StateFiring, f.State, "For 0 fires at once")
	require.Equal(t, 3600.0, f.Evidence[keepFiringKey])
	// The condition goes away: still firing, and the description says until when.
	ch := tr.Update(t0.Add(20*time.Minute), nil)
	require.Len(t, ch, 1)
	require.Equal(t, StateFiring, ch[0].Finding.State)
	require.Contains(t, ch[0].Finding.Description, "keeps firing until 13:00:00")
	require.Equal(t, t0, ch[0].Finding.FiredAt)
	// It comes back within the hour: the same finding, not a new page.
	f = tr.Update(t0.Add(50*time.Minute), []Observation{obs})[0].Finding
	require.Equal(t, t0, f.FiredAt)
	require.Equal(t, "1 kill", f.Description)
	// An hour without it: resolved, with the description as last observed.
	tr.Update(t0.Add(80*time.Minute), nil)
	ch = tr.Update(t0.Add(110*time.Minute), nil)
	require.Len(t, ch, 1)
	require.Equal(t, StateResolved, ch[0].Finding.State)
	require.Equal(t, t0.Add(110*time.Minute), ch[0].Finding.ResolvedAt)
	require.Equal(t, "1 kill", ch[0].Finding.Description)

	// A pending finding is not kept: it must hold its condition throughout For.
	pending := obs
	pending.For = 5 * time.Minute
	pending.Labels = map[string]string{"namespace": "other"}
	tr.Update(t0.Add(3*time.Hour), []Observation{pending})
	ch = tr.Update(t0.Add(3*time.Hour+time.Minute), nil)
	require.True(t, ch[0].Dropped)

	// A new leader keeps a restored finding firing for its window, from the evidence.
	tr2 := NewTracker(Links{}, time.Minute)
	tr2.Restore([]Finding{{ID: obs.ID(), Kind: obs.Kind, State: StateFiring, ActiveAt: t0, FiredAt: t0,
		Evidence: map[string]float64{keepFiringKey: 3600}}})
	require.Equal(t, StateFiring, tr2.Update(t0.Add(4*time.Hour), nil)[0].Finding.State)
	require.Equal(t, StateFiring, tr2.Update(t0.Add(4*time.Hour+59*time.Minute), nil)[0].Finding.State)
	require.Equal(t, StateResolved, tr2.Update(t0.Add(5*time.Hour), nil)[0].Finding.State)
}

func TestWorkerHealthEpisodes(t *testing.T) {
	t.Parallel()
	pods := []snapshot.Pod{{Namespace: "posthog", Name: "w1"}, {Namespace: "posthog", Name: "w2"}}
	// The snapshot catches the crash-looping pod running between back-offs: the
	// pods_crashlooping series of the last ten minutes still counts it.
	in := WorkerInput{Namespace: "posthog", Pods: pods, CrashLooping: pts(t0.Add(-8*time.Minute), time.Minute, 1, 1, 1, 0, 1, 1, 1, 1, 0)}
	obs := WorkerHealth(in, t0, WorkerOptions{})
	require.Len(t, obs, 1)
	require.Equal(t, "workers_crashlooping", obs[0].Kind)
	require.Equal(t, 15*time.Minute, obs[0].KeepFiringFor)

	// An OOM episode stays observed while pods crash-loop after a kill in the lookback,
	// once it fires; a first look does not start one without a recent kill.
	kills := pts(t0.Add(-90*time.Minute), 30*time.Minute, 1, 0, 0, 0)
	in = WorkerInput{Namespace: "posthog", Pods: pods, OOMKills: kills, CrashLooping: pts(t0, time.Minute, 1)}
	kinds := func(obs []Observation) []string {
		var k []string
		for _, o := range obs {
			k = append(k, o.Kind)
		}
		return k
	}
	require.NotContains(t, kinds(WorkerHealth(in, t0, WorkerOptions{})), "worker_oom_kills")
	in.Firing = func(kind string) bool { return kind == "worker_oom_kills" }
	require.Contains(t, kinds(WorkerHealth(in, t0, WorkerOptions{})), "worker_oom_kills")

	// A kill every 30 minutes is not calm between kills, even with pods crash-looping.
	var steady []float64
	for m := range 120 {
		steady = append(steady, float64(boolInt(m%30 == 0)))
	}
	in = WorkerInput{Namespace: "posthog", Pods: pods, OOMKills: pts(t0.Add(-119*time.Minute), time.Minute, steady...),
		CrashLooping: pts(t0, time.Minute, 1)}
	for _, at := range []time.Duration{0, 10 * time.Minute, 20 * time.Minute, 29 * time.Minute} {
		require.NotContains(t, kinds(WorkerHealth(in, t0.Add(at), WorkerOptions{})), "workers_false_calm", "at +%s", at)
	}
}
