package verify

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/verdict"
)

// ServiceOptions configure the periodic check.
type ServiceOptions struct {
	// TeamsPerPass bounds one pass; the next continues after the last team checked.
	// Default 1000.
	TeamsPerPass int
	// MaxTeams bounds the teams whose problems are kept (the worst are the first
	// found; the rest are counted). Default 1000.
	MaxTeams int
	Logger   *slog.Logger
	// Registerer receives the check's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock problems are stamped with. Default time.Now.
	Now func() time.Time
}

// TeamProblems is one team's wrong checks from its last verification.
type TeamProblems = verdict.TeamProblems

// Service runs bounded passes over every team (its RunOnce is a leader-only loop's
// pass) and keeps each team's latest problems until the team checks out clean, for the
// detectors to turn into findings.
type Service struct {
	v       *Verifier
	teams   TeamLister
	opts    ServiceOptions
	metrics *serviceMetrics

	mu         sync.Mutex
	cursor     int64
	cycleStart time.Time
	problems   map[int64]TeamProblems
	last       *Report
}

type serviceMetrics struct {
	checks    *prometheus.CounterVec
	problems  *prometheus.CounterVec
	wrong     prometheus.Gauge
	teams     prometheus.Counter
	duration  prometheus.Gauge
	lastPass  prometheus.Gauge
	cycleDone prometheus.Counter
	dropped   prometheus.Counter
}

// NewService returns the periodic check over teams.
func NewService(v *Verifier, teams TeamLister, opts ServiceOptions) *Service {
	opts.TeamsPerPass = cmp.Or(opts.TeamsPerPass, 1000)
	opts.MaxTeams = cmp.Or(opts.MaxTeams, 1000)
	opts.Logger = cmp.Or(opts.Logger, slog.New(slog.DiscardHandler))
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := promauto.With(opts.Registerer)
	return &Service{v: v, teams: teams, opts: opts, problems: map[int64]TeamProblems{}, metrics: &serviceMetrics{
		checks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_verify_checks_total",
			Help: "Cache entries verified against a fresh build, by tier (redis, s3), kind and outcome.",
		}, []string{"tier", "kind", "outcome"}),
		problems: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_verify_side_problems_total",
			Help: "Redis entries whose :etag (missing, wrong, undecodable) or expiry tracking (missing) is wrong, by kind.",
		}, []string{"kind", "check", "result"}),
		wrong: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_verify_teams_wrong",
			Help: "Teams whose caches the last verification of each found wrong.",
		}),
		teams: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_verify_teams_checked_total",
			Help: "Teams verified.",
		}),
		duration: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_verify_pass_duration_seconds",
			Help: "How long the last verification pass took.",
		}),
		lastPass: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_verify_last_pass_timestamp_seconds",
			Help: "When the last verification pass finished.",
		}),
		cycleDone: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_verify_cycles_total",
			Help: "Verification cycles that reached the last team.",
		}),
		dropped: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_verify_problems_dropped_total",
			Help: "Teams found wrong but not kept, because max teams already had problems.",
		}),
	}}
}

// RunOnce checks the next TeamsPerPass teams. Problems found stay until the team is
// checked again and is clean, or a whole cycle passes without the team (deleted).
func (s *Service) RunOnce(ctx context.Context) error {
	s.mu.Lock()
	after := s.cursor
	if after == 0 {
		s.cycleStart = s.opts.Now()
	}
	s.mu.Unlock()
	start := time.Now()
	rep := &Report{StartedAt: s.opts.Now()}
	last, done, err := s.v.Pass(ctx, s.teams, after, s.opts.TeamsPerPass, rep, s.record)
	rep.FinishedAt = s.opts.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = rep
	s.cursor = last
	if done {
		s.cursor = 0
		s.metrics.cycleDone.Inc()
		// Teams not seen during the whole cycle no longer exist.
		for id, p := range s.problems {
			if p.CheckedAt.Before(s.cycleStart) {
				delete(s.problems, id)
			}
		}
	}
	s.metrics.wrong.Set(float64(len(s.problems)))
	s.metrics.duration.Set(time.Since(start).Seconds())
	s.metrics.lastPass.Set(float64(time.Now().Unix()))
	if rep.ProblemCount > 0 {
		s.opts.Logger.WarnContext(ctx, "cache verification found problems", "teams", rep.Teams,
			"problems", rep.ProblemCount, "failures", rep.Failures, "from_team", after, "to_team", last)
	} else {
		s.opts.Logger.InfoContext(ctx, "cache verification passed", "teams", rep.Teams, "from_team", after, "to_team", last)
	}
	return err
}

// record keeps one team's verdict.
func (s *Service) record(checks []Check) {
	if len(checks) == 0 {
		return
	}
	team := checks[0].TeamID
	var wrong []Check
	for _, c := range checks {
		s.metrics.checks.WithLabelValues(c.Tier, string(c.Kind), string(c.Outcome)).Inc()
		if c.ETag != "" && c.ETag != CheckOK {
			s.metrics.problems.WithLabelValues(string(c.Kind), "etag", c.ETag).Inc()
		}
		if c.Expiry != "" && c.Expiry != CheckOK {
			s.metrics.problems.WithLabelValues(string(c.Kind), "expiry", c.Expiry).Inc()
		}
		if c.Wrong() {
			wrong = append(wrong, c)
		}
	}
	s.metrics.teams.Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(wrong) == 0 {
		delete(s.problems, team)
		return
	}
	if _, known := s.problems[team]; !known && len(s.problems) >= s.opts.MaxTeams {
		s.metrics.dropped.Inc()
		return
	}
	s.problems[team] = TeamProblems{TeamID: team, CheckedAt: s.opts.Now(), Checks: wrong}
}

// Problems returns every team with problems, by team id.
func (s *Service) Problems() []TeamProblems {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TeamProblems, 0, len(s.problems))
	for _, p := range s.problems {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b TeamProblems) int { return cmp.Compare(a.TeamID, b.TeamID) })
	return out
}

// LastReport is the last pass's report, nil before the first.
func (s *Service) LastReport() *Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
