// Package simulator is a deterministic, seeded model of a feature-flag platform's cache
// pipeline: a fleet of teams whose flags change at a realistic rate, each change
// enqueued as real Celery task messages on a kombu-on-Redis layout, simulated Celery
// worker pods that build naively (load everything) under a memory limit and are
// OOM-killed, crash-loop with Kubernetes' backoff and recover, and one test-automation
// team whose data grows until its builds no longer fit. Time is simulated: the caller
// advances it, so days pass in moments (replay) or at a chosen speed (demo).
package simulator

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Options configure a simulation. Zero values take the documented defaults.
type Options struct {
	// Seed makes every run with the same options identical.
	Seed uint64
	// Start is the simulated time at the beginning (default 2026-02-01T00:00:00Z).
	Start time.Time
	Fleet FleetOptions
	// ChangesPerMinute is the fleet's average rate of flag changes (default 20); each
	// change enqueues both cache tasks. The rate follows a day/night curve of
	// ±DiurnalAmplitude (default 0.5).
	ChangesPerMinute float64
	DiurnalAmplitude float64
	// TestRunEvery is how often the test-automation suite runs (default 30m); each run
	// saves TestRunFlags flags (default 40) and adds TestRunCohorts cohorts (default 20),
	// and nothing is ever cleaned up.
	TestRunEvery   time.Duration
	TestRunFlags   int
	TestRunCohorts int64
	// FixAt, when non-zero, is how long after Start the test team's data is cleaned up
	// and its suite stopped (what ended the incident).
	FixAt time.Duration
	// Queue is the Celery queue both tasks are routed to (default feature_flags).
	Queue string
	// Broker carries the tasks (default an in-process MemoryBroker); a *Kombu puts real
	// Celery messages on Redis.
	Broker Broker
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	}
	o.Fleet.Seed = o.Seed
	o.Fleet.Start = o.Start
	if o.ChangesPerMinute == 0 {
		o.ChangesPerMinute = 20
	}
	if o.DiurnalAmplitude == 0 {
		o.DiurnalAmplitude = 0.5
	}
	if o.TestRunEvery == 0 {
		o.TestRunEvery = 30 * time.Minute
	}
	if o.TestRunFlags == 0 {
		o.TestRunFlags = 40
	}
	if o.TestRunCohorts == 0 {
		o.TestRunCohorts = 20
	}
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if o.Broker == nil {
		o.Broker = NewMemoryBroker()
	}
	return o
}

// Consumer takes tasks off the broker and builds caches: simulated Celery workers, or
// flagwarden's engine. Tick advances it from now to until.
type Consumer interface {
	Tick(ctx context.Context, s *Sim, now, until time.Time) error
}

// Sim is one running simulation. It is not safe for concurrent use; Live wraps it for
// readers on other goroutines.
type Sim struct {
	Opts   Options
	Fleet  *Fleet
	Broker Broker
	Now    time.Time

	rng         *rand.Rand
	nextArrival time.Time
	nextRun     time.Time
	fixed       bool
	tasks       int64

	teams []teamState
	index map[int64]int

	// Changes counts flag changes; Enqueued counts task messages published.
	Changes  int64
	Enqueued int64
	// Builds counts successful builds.
	Builds int64

	// othersLag is how long each reflected change of every team but the test team waited.
	othersLag []time.Duration
}

// teamState tracks, per cache kind, the times of changes no live cache reflects yet.
type teamState struct {
	pending [2][]time.Time
	// worst is the longest any change waited to be reflected.
	worst time.Duration
	// builtAt is when each kind was last built successfully.
	builtAt [2]time.Time
}

// New builds a simulation; it declares the queue on the broker.
func New(ctx context.Context, o Options) (*Sim, error) {
	o = o.WithDefaults()
	s := &Sim{
		Opts:   o,
		Fleet:  NewFleet(o.Fleet),
		Broker: o.Broker,
		Now:    o.Start,
		rng:    rand.New(rand.NewPCG(o.Seed, 0x73696d)),
		index:  map[int64]int{},
	}
	s.teams = make([]teamState, len(s.Fleet.Teams))
	for i, t := range s.Fleet.Teams {
		s.index[t.ID] = i
		// every cache starts fresh, built just before the simulation starts.
		s.teams[i].builtAt = [2]time.Time{o.Start, o.Start}
	}
	if err := s.Broker.Declare(ctx, o.Queue); err != nil {
		return nil, err
	}
	s.nextArrival = s.Now.Add(s.interArrival())
	s.nextRun = s.Now.Add(o.TestRunEvery / 2)
	return s, nil
}

func kindIndex(kind string) int {
	if kind == "flags" {
		return 1
	}
	return 0
}

// maxRatePerSecond is the peak of the day/night curve, for thinning.
func (s *Sim) maxRatePerSecond() float64 {
	return s.Opts.ChangesPerMinute / 60 * (1 + s.Opts.DiurnalAmplitude)
}

func (s *Sim) interArrival() time.Duration {
	return time.Duration(s.rng.ExpFloat64() / s.maxRatePerSecond() * float64(time.Second))
}

// rateFactor is the day/night curve: busiest at 15:00 UTC, quietest at 03:00.
func (s *Sim) rateFactor(t time.Time) float64 {
	h := float64(t.Hour()) + float64(t.Minute())/60
	return (1 + s.Opts.DiurnalAmplitude*math.Sin(2*math.Pi*(h-9)/24)) / (1 + s.Opts.DiurnalAmplitude)
}

// Advance runs the simulation up to until in steps of at most step, calling c for the
// builds. Arrivals are exact (an event queue); c sees each step.
func (s *Sim) Advance(ctx context.Context, c Consumer, until time.Time, step time.Duration) error {
	for s.Now.Before(until) {
		next := s.Now.Add(step)
		if next.After(until) {
			next = until
		}
		// changes up to the step's start are on the broker before the consumer looks, so
		// no build reads a change before it happened; a change waits at most one step.
		if err := s.produce(ctx, s.Now); err != nil {
			return err
		}
		if c != nil {
			if err := c.Tick(ctx, s, s.Now, next); err != nil {
				return err
			}
		}
		s.Now = next
	}
	return nil
}

// produce publishes every change that happens before until (exclusive).
func (s *Sim) produce(ctx context.Context, until time.Time) error {
	if s.Opts.FixAt > 0 && !s.fixed && !until.Before(s.Opts.Start.Add(s.Opts.FixAt)) {
		s.fix()
	}
	for s.nextArrival.Before(until) {
		at := s.nextArrival
		s.nextArrival = at.Add(s.interArrival())
		if s.rng.Float64() > s.rateFactor(at) {
			continue
		}
		if err := s.Change(ctx, s.Fleet.pick(s.rng), at); err != nil {
			return err
		}
	}
	for !s.fixed && s.nextRun.Before(until) {
		at := s.nextRun
		s.nextRun = at.Add(s.Opts.TestRunEvery)
		t := s.Fleet.Test
		t.Cohorts += s.Opts.TestRunCohorts
		t.Flags += int64(s.Opts.TestRunFlags)
		for range s.Opts.TestRunFlags {
			if err := s.Change(ctx, t, at); err != nil {
				return err
			}
		}
	}
	return nil
}

// fix is the clean-up that ended the incident: the test account's accumulated data is
// deleted and its suite stops writing to it.
func (s *Sim) fix() {
	s.fixed = true
	t := s.Fleet.Test
	t.Flags, t.Cohorts = 120, 40
}

// Fixed reports whether the clean-up has happened.
func (s *Sim) Fixed() bool { return s.fixed }

// Change records a flag change of team at time at and enqueues both cache tasks, as the
// post_save receivers do on commit.
func (s *Sim) Change(ctx context.Context, t *Team, at time.Time) error {
	s.Changes++
	t.UpdatedAt = at
	st := &s.teams[s.index[t.ID]]
	for _, name := range []string{TaskDefinitions, TaskFlags} {
		task := Task{ID: s.uuid(), Name: name, TeamID: t.ID, Queue: s.Opts.Queue}
		st.pending[kindIndex(task.Kind())] = append(st.pending[kindIndex(task.Kind())], at)
		if err := s.Broker.Publish(ctx, task, s.uuid(), "gen1@web-0"); err != nil {
			return err
		}
		s.Enqueued++
	}
	return nil
}

// uuid returns a deterministic version-4 UUID.
func (s *Sim) uuid() string {
	s.tasks++
	a, b := s.rng.Uint64(), s.rng.Uint64()
	a = a&^(0xf<<12) | 0x4<<12
	b = b&^(0x3<<62) | 0x2<<62
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

// Built records a successful build of team's kind cache that read the team's data at
// readAt and went live at doneAt: every change up to readAt is now reflected.
func (s *Sim) Built(teamID int64, kind string, readAt, doneAt time.Time) {
	i, ok := s.index[teamID]
	if !ok {
		return
	}
	s.Builds++
	st := &s.teams[i]
	k := kindIndex(kind)
	p := st.pending[k]
	n := 0
	for n < len(p) && !p[n].After(readAt) {
		lag := doneAt.Sub(p[n])
		st.worst = max(st.worst, lag)
		if !s.Fleet.Teams[i].TestAutomation {
			s.othersLag = append(s.othersLag, lag)
		}
		n++
	}
	st.pending[k] = slices.Delete(p, 0, n)
	st.builtAt[k] = doneAt
}

// Lag is how far team's kind cache is behind at now: the age of the oldest change it
// does not reflect, 0 when current.
func (s *Sim) Lag(teamID int64, kind string, now time.Time) time.Duration {
	i, ok := s.index[teamID]
	if !ok {
		return 0
	}
	p := s.teams[i].pending[kindIndex(kind)]
	if len(p) == 0 {
		return 0
	}
	return now.Sub(p[0])
}

// BuiltAt is when team's kind cache last went live.
func (s *Sim) BuiltAt(teamID int64, kind string) time.Time {
	if i, ok := s.index[teamID]; ok {
		return s.teams[i].builtAt[kindIndex(kind)]
	}
	return time.Time{}
}

// StalenessReport summarises how long changes waited to go live, counting changes still
// waiting at now with their age so far.
type StalenessReport struct {
	// OthersP99 is the 99th percentile over every change of every team except the
	// test-automation team.
	OthersP99 time.Duration
	// OthersMax is the longest wait among those changes.
	OthersMax time.Duration
	// WorstTeam is the team whose change waited longest, and how long.
	WorstTeam    int64
	WorstTeamLag time.Duration
}

// Staleness computes the report at now.
func (s *Sim) Staleness(now time.Time) StalenessReport {
	others := slices.Clone(s.othersLag)
	var r StalenessReport
	for i, st := range s.teams {
		worst := st.worst
		for k := range st.pending {
			for _, at := range st.pending[k] {
				lag := now.Sub(at)
				worst = max(worst, lag)
				if !s.Fleet.Teams[i].TestAutomation {
					others = append(others, lag)
				}
			}
		}
		if worst > r.WorstTeamLag {
			r.WorstTeam, r.WorstTeamLag = s.Fleet.Teams[i].ID, worst
		}
	}
	if len(others) > 0 {
		slices.Sort(others)
		r.OthersP99 = others[min(len(others)-1, int(math.Ceil(0.99*float64(len(others))))-1)]
		r.OthersMax = others[len(others)-1]
	}
	return r
}
