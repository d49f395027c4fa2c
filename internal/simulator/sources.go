package simulator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/rebuild"
)

// The adapters below put a Live simulation behind the interfaces flagwarden's real
// sources implement, so that the demo runs the real collectors and the real rebuild
// engine: TeamSource for the team-size collector, PodSource for the pod collector and
// FlagSource for the builder. Each locks the simulation only to copy what it needs.

// TeamSource measures simulated teams as the team-size collector's Postgres source
// measures real ones.
type TeamSource struct{ L *Live }

// TeamIDBounds implements the team-size collector's Source.
func (s TeamSource) TeamIDBounds(context.Context) (lo, hi int64, ok bool, err error) {
	s.L.With(func(sim *Sim, _ *CeleryWorkers) {
		if n := len(sim.Fleet.Teams); n > 0 {
			lo, hi, ok = sim.Fleet.Teams[0].ID, sim.Fleet.Teams[n-1].ID, true
		}
	})
	return lo, hi, ok, nil
}

// MeasureRange implements the team-size collector's Source.
func (s TeamSource) MeasureRange(ctx context.Context, lo, hi int64) ([]snapshot.TeamSize, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.L.Now()
	var out []snapshot.TeamSize
	s.L.With(func(sim *Sim, _ *CeleryWorkers) {
		for _, t := range sim.Fleet.Teams {
			if t.ID >= lo && t.ID < hi && (t.Flags > 0 || t.Cohorts > 0) {
				out = append(out, t.Size(now))
			}
		}
	})
	return out, nil
}

// MeasureTeams implements the team-size collector's Source; unknown ids are left out.
func (s TeamSource) MeasureTeams(ctx context.Context, ids []int64) ([]snapshot.TeamSize, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.L.Now()
	out := make([]snapshot.TeamSize, 0, len(ids))
	s.L.With(func(sim *Sim, _ *CeleryWorkers) {
		for _, id := range ids {
			if t, ok := sim.Fleet.Team(id); ok && (t.Flags > 0 || t.Cohorts > 0) {
				out = append(out, t.Size(now))
			}
		}
	})
	return out, nil
}

// ChangedSince implements the team-size collector's Source.
func (s TeamSource) ChangedSince(_ context.Context, since time.Time) ([]int64, error) {
	var ids []int64
	s.L.With(func(sim *Sim, _ *CeleryWorkers) {
		for _, t := range sim.Fleet.Teams {
			if !t.UpdatedAt.Before(since) {
				ids = append(ids, t.ID)
			}
		}
	})
	return ids, nil
}

// PodSource lists the simulated worker pods as Kubernetes pod objects, with the
// status fields the kubelet sets: readiness, restart count, CrashLoopBackOff with its
// back-off message, and the last termination (OOMKilled, exit code 137).
type PodSource struct{ L *Live }

// Source implements the pod collector's Lister.
func (PodSource) Source() string { return "simulated" }

// Pods implements the pod collector's Lister.
func (s PodSource) Pods(context.Context) ([]*corev1.Pod, error) {
	now := s.L.Now()
	var out []*corev1.Pod
	s.L.With(func(_ *Sim, w *CeleryWorkers) {
		for _, p := range w.Pods {
			out = append(out, kubePod(p, now))
		}
	})
	return out, nil
}

// PodMemory implements the pod collector's MemoryReader: each pod's working set, as
// the PromQL source would read it from cAdvisor.
func (s PodSource) PodMemory(context.Context) (map[string]int64, error) {
	now := s.L.Now()
	out := map[string]int64{}
	s.L.With(func(_ *Sim, w *CeleryWorkers) {
		for _, p := range w.Pods {
			out[p.Name] = min(p.Memory(now), p.Limit)
		}
	})
	return out, nil
}

func kubePod(p *Pod, now time.Time) *corev1.Pod {
	ready := corev1.ConditionFalse
	if p.Running(now) {
		ready = corev1.ConditionTrue
	}
	cs := corev1.ContainerStatus{
		Name: "worker", RestartCount: p.Restarts, Ready: ready == corev1.ConditionTrue,
		Image: "posthog/posthog:latest",
	}
	if p.Waiting(now) {
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: snapshot.ReasonCrashLoop, Message: p.WaitingMessage()}
	} else {
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(p.RunningSince)}
	}
	if p.LastTermination != "" {
		code := int32(1)
		if p.LastTermination == snapshot.ReasonOOMKilled {
			code = 137
		}
		cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
			Reason: p.LastTermination, ExitCode: code, FinishedAt: metav1.NewTime(p.LastTerminated),
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name, UID: types.UID(p.Namespace + "/" + p.Name),
			Labels: map[string]string{"app": "celery-worker"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "worker",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
				corev1.ResourceMemory: *resource.NewQuantity(p.Limit, resource.BinarySI),
			}},
		}}},
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}},
			ContainerStatuses: []corev1.ContainerStatus{cs},
		},
	}
}

// FlagSource serves simulated teams' flags and cohorts to the rebuild engine's builder
// as PostHog's tables would: flags in key order, page by page, with filters JSON in
// PostHog's shape; cohorts with nested property groups. It also measures teams for
// admission and lists changed teams for the stale sweep.
type FlagSource struct{ L *Live }

var (
	_ rebuild.FlagSource  = FlagSource{}
	_ rebuild.SizeSource  = FlagSource{}
	_ rebuild.StaleSource = FlagSource{}
)

// team copies a team under the lock, so that generating its rows needs no lock.
func (s FlagSource) team(id int64) (Team, uint64, bool) {
	var t Team
	var seed uint64
	ok := false
	s.L.With(func(sim *Sim, _ *CeleryWorkers) {
		if p, found := sim.Fleet.Team(id); found {
			t, seed, ok = *p, sim.Opts.Seed, true
		}
	})
	return t, seed, ok
}

// Team implements rebuild.FlagSource.
func (s FlagSource) Team(_ context.Context, teamID int64) (rebuild.TeamInfo, error) {
	t, _, ok := s.team(teamID)
	if !ok {
		return rebuild.TeamInfo{ID: teamID}, fmt.Errorf("team %d: %w", teamID, rebuild.ErrUnknownTeam)
	}
	return teamInfo(&t), nil
}

func teamInfo(t *Team) rebuild.TeamInfo {
	return rebuild.TeamInfo{ID: t.ID, ProjectID: t.ProjectID, Watermark: t.UpdatedAt, PropertyMatchingVersion: 1}
}

// Open implements rebuild.FlagSource: the team is copied once, so every read of the
// build sees the same team.
func (s FlagSource) Open(_ context.Context, teamID int64, opts rebuild.ReadOptions) (rebuild.TeamReader, error) {
	t, seed, ok := s.team(teamID)
	if !ok {
		return nil, fmt.Errorf("team %d: %w", teamID, rebuild.ErrUnknownTeam)
	}
	return &simReader{t: t, seed: seed, refsAfter: opts.RefsChangedAfter}, nil
}

// simReader generates one team's rows. Flag i has id i+1 and key flag-NNNNNNN: all
// active, none encrypted, no flag dependencies, cohort conditions on some.
type simReader struct {
	refsAfter time.Time // see rebuild.ReadOptions.RefsChangedAfter
	t         Team
	seed      uint64
}

// flagKey is flag i's key; zero padding makes key order index order.
func flagKey(i int64) string { return fmt.Sprintf("flag-%07d", i) }

func (r *simReader) Team() rebuild.TeamInfo { return teamInfo(&r.t) }
func (r *simReader) Close()                 {}

func (r *simReader) SurveyFlagIDs(context.Context) ([]int64, error) { return nil, nil }

func (r *simReader) References(ctx context.Context, fn func(*rebuild.RefRow) error) error {
	var row rebuild.RefRow
	var buf []byte
	for i := range r.t.Flags {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		row = rebuild.RefRow{ID: i + 1, Key: flagKey(i), Active: true, Changed: r.t.UpdatedAt}
		if !r.refsAfter.IsZero() && !row.Changed.After(r.refsAfter) {
			row.Key = ""
		} else if c := (*Fleet)(nil).FlagCohort(r.seed, &r.t, i); c != 0 {
			buf = fmt.Appendf(buf[:0], `[{"key": "id", "type": "cohort", "value": %d}]`, c)
			row.Refs = buf
		}
		if err := fn(&row); err != nil {
			return err
		}
	}
	return nil
}

func (r *simReader) FlagHeads(_ context.Context, ids []int64, keys []string, fn func(*rebuild.FlagHead) error) error {
	seen := map[int64]bool{}
	emit := func(i int64) error {
		if i < 0 || i >= r.t.Flags || seen[i] {
			return nil
		}
		seen[i] = true
		return fn(&rebuild.FlagHead{ID: i + 1, Key: flagKey(i), Active: true})
	}
	for _, id := range ids {
		if err := emit(id - 1); err != nil {
			return err
		}
	}
	for _, k := range keys {
		var i int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(k, "flag-"), "%d", &i); err == nil && flagKey(i) == k {
			if err := emit(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// FlagIDs yields 1..Flags in numeric order, then in the order their decimal forms sort.
func (r *simReader) FlagIDs(ctx context.Context, _ rebuild.IDFilter, fn func(int64, bool) error) error {
	n := r.t.Flags
	for k := int64(0); k < n; k++ {
		if k%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := fn(k+1, false); err != nil {
			return err
		}
	}
	cur := int64(1)
	for k := int64(0); k < n; k++ {
		if k%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := fn(cur, true); err != nil {
			return err
		}
		if cur*10 <= n {
			cur *= 10
			continue
		}
		for cur%10 == 9 || cur+1 > n {
			cur /= 10
		}
		cur++
	}
	return nil
}

// Flags implements rebuild.TeamReader.
func (r *simReader) Flags(ctx context.Context, fn func(*rebuild.FlagRow) error) error {
	t := &r.t
	var version int64 = 1
	runtime := "all"
	for i := range t.Flags {
		if err := ctx.Err(); err != nil {
			return err
		}
		row := rebuild.FlagRow{
			ID: i + 1, TeamID: t.ID, Key: flagKey(i), Name: "Flag " + flagKey(i),
			Filters: (*Fleet)(nil).FlagFilters(r.seed, t, i), Active: true, Version: &version,
			EvaluationRuntime: &runtime,
		}
		if err := fn(&row); err != nil {
			return err
		}
	}
	return nil
}

// Cohorts implements rebuild.TeamReader. Cohort ids are 1..Cohorts; each has one
// person-property group sized near the team's average cohort size.
func (r *simReader) Cohorts(ctx context.Context, ids []int64, _ bool, fn func(*rebuild.CohortRow) error) error {
	t := &r.t
	for _, id := range slices.Sorted(slices.Values(ids)) {
		if id < 1 || id > t.Cohorts {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := fmt.Sprintf("Cohort %d", id)
		version := int64(1)
		row := rebuild.CohortRow{
			ID: id, TeamID: t.ID, Name: &name, Filters: cohortFilters(id, t.CohortBytes),
			Groups: []byte("[]"), Version: &version, CreatedByID: nil,
		}
		if err := fn(&row); err != nil {
			return err
		}
	}
	return nil
}

// cohortFilters renders a cohort's filters in PostHog's shape: an OR of AND groups of
// property conditions, padded with values to about size bytes.
func cohortFilters(id, size int64) []byte {
	var values []string
	for n := int64(0); n < size; n += 28 {
		values = append(values, fmt.Sprintf("customer-%d-%d@example.com", id, n))
	}
	type prop struct {
		Key      string   `json:"key"`
		Type     string   `json:"type"`
		Value    []string `json:"value"`
		Operator string   `json:"operator"`
	}
	type group struct {
		Type   string `json:"type"`
		Values []any  `json:"values"`
	}
	f := map[string]any{"properties": group{Type: "OR", Values: []any{
		group{Type: "AND", Values: []any{prop{Key: "email", Type: "person", Value: values, Operator: "exact"}}},
	}}}
	b, _ := json.Marshal(f)
	return b
}

// GroupTypes implements rebuild.TeamReader.
func (r *simReader) GroupTypes(context.Context) ([]rebuild.GroupType, error) {
	t := &r.t
	names := []string{"organization", "company", "instance", "project", "account"}
	out := make([]rebuild.GroupType, 0, t.GroupTypes)
	for i := range min(t.GroupTypes, int64(len(names))) {
		out = append(out, rebuild.GroupType{Index: int(i), Type: names[i]})
	}
	return out, nil
}

// TeamSize implements rebuild.SizeSource.
func (s FlagSource) TeamSize(_ context.Context, teamID int64) (snapshot.TeamSize, error) {
	t, _, ok := s.team(teamID)
	if !ok {
		return snapshot.TeamSize{TeamID: teamID}, fmt.Errorf("team %d: %w", teamID, rebuild.ErrUnknownTeam)
	}
	return t.Size(s.L.Now()), nil
}

// ChangedSince implements rebuild.StaleSource: teams changed after since, oldest
// change first, at most limit.
func (s FlagSource) ChangedSince(_ context.Context, since time.Time, limit int) (map[int64]time.Time, error) {
	type changed struct {
		id int64
		at time.Time
	}
	var all []changed
	s.L.With(func(sim *Sim, _ *CeleryWorkers) {
		for _, t := range sim.Fleet.Teams {
			if t.UpdatedAt.After(since) {
				all = append(all, changed{t.ID, t.UpdatedAt})
			}
		}
	})
	slices.SortFunc(all, func(a, b changed) int { return a.at.Compare(b.at) })
	out := make(map[int64]time.Time, min(len(all), max(limit, 0)))
	for _, c := range all[:min(len(all), max(limit, 0))] {
		out[c.id] = c.at
	}
	return out, nil
}
