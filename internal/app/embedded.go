package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, for River in embedded mode

	"github.com/flagwarden/flagwarden/collectors/pods"
	"github.com/flagwarden/flagwarden/collectors/teams"
	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/detectors/pgstore"
	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/service"
	"github.com/flagwarden/flagwarden/rebuild"
)

// Embedded runs the app without Postgres or Kubernetes: a single replica that always
// leads, River on SQLite, findings in memory, and the given sources in place of the
// flag database and the pod informer. The broker and cache are still Redis, at the
// configured URLs (the demo points them at an embedded miniredis). The demo uses it;
// so could a single-node install that brings its own sources.
type Embedded struct {
	// SQLitePath is the SQLite file River and the rebuild engine's tables live in.
	SQLitePath string
	// Teams replaces the team-size collector's flag-database source.
	Teams teams.Source
	// Pods replaces the pod informer; PodMemory, if set, supplies working-set usage.
	Pods      pods.Lister
	PodMemory pods.MemoryReader
	// Flags replaces the flag database for the rebuild engine: builds read from it,
	// admission measures with it, and the stale sweep asks it what changed.
	Flags RebuildSource
	// Clock is the clock builds are stamped with and every collector, the sweep, the
	// detectors and the API judge by (the demo's simulated time); nil is the wall
	// clock. Its FromWall moves the times of parts that keep wall time (loop passes,
	// quarantines) onto it, and ToWall moves findings back for Alertmanager.
	Clock clock.Clock
	// Services start before every other service and stop after them (the simulation
	// that feeds the sources).
	Services []service.Service
}

// RebuildSource is everything the rebuild engine reads from the flag database.
type RebuildSource interface {
	rebuild.FlagSource
	rebuild.SizeSource
	rebuild.StaleSource
}

func (e *Embedded) validate() error {
	var errs []error
	if e.SQLitePath == "" {
		errs = append(errs, errors.New("embedded: SQLitePath is required"))
	}
	if e.Teams == nil || e.Pods == nil || e.Flags == nil {
		errs = append(errs, errors.New("embedded: the Teams, Pods and Flags sources are required"))
	}
	return errors.Join(errs...)
}

// useEmbedded sets the app up for embedded mode in place of opening the databases.
func (a *App) useEmbedded(e *Embedded) error {
	if err := e.validate(); err != nil {
		return err
	}
	a.embedded = e
	a.clock = clock.Or(e.Clock)
	a.now = a.clock.Now
	a.services = append(a.services, e.Services...)
	return nil
}

// rebuildSource is where the rebuild engine reads flags: the embedded source, or the
// flag database.
func (a *App) rebuildSource() RebuildSource {
	if a.embedded != nil {
		return a.embedded.Flags
	}
	return rebuild.NewPGSource(a.flagPool, a.snapshots)
}

// newRebuildEngine builds the engine on the state database, or on SQLite in embedded
// mode (NewSQLite applies River's migrations itself).
func (a *App) newRebuildEngine(ctx context.Context, opts rebuild.Options) (*rebuild.Engine, error) {
	if a.embedded == nil {
		return rebuild.NewPostgres(a.statePool, opts)
	}
	// SQLite allows one writer: one connection, and a busy timeout so that River's
	// maintenance and the workers wait for each other instead of failing.
	db, err := sql.Open("sqlite", "file:"+a.embedded.SQLitePath+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", a.embedded.SQLitePath, err)
	}
	db.SetMaxOpenConns(1)
	a.closers = append(a.closers, func() { db.Close() })
	e, err := rebuild.NewSQLite(ctx, db, opts)
	if err != nil {
		return nil, fmt.Errorf("rebuild engine on %s: %w", a.embedded.SQLitePath, err)
	}
	return e, nil
}

// newFindingStore keeps findings in the state database, or in memory in embedded mode.
func (a *App) newFindingStore() detectors.FindingStore {
	if a.embedded != nil {
		return detectors.NewMemStore()
	}
	return pgstore.New(a.statePool)
}

// Now is the app's clock: wall time, or the embedded source's (simulated) time.
func (a *App) Now() time.Time { return a.now() }

// teamSource is where the team-size collector measures: the flag database, or the
// embedded source.
func (a *App) teamSource() teams.Source {
	if a.embedded != nil {
		return a.embedded.Teams
	}
	return teams.NewPostgres(a.flagPool, a.cfg.FlagDatabase.StatementTimeout)
}

// fromWall maps a wall-clock time onto the app's clock.
func (a *App) fromWall(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return a.clock.FromWall(t)
}

// healthOf is the loops' health with its times on the app's clock: the detectors and
// the API compare them with a.now.
func (a *App) healthOf(loops []*loop.Loop) []loop.Health {
	hs := loopHealth(loops)
	for i := range hs {
		hs[i].LastSuccess, hs[i].LastAttempt = a.fromWall(hs[i].LastSuccess), a.fromWall(hs[i].LastAttempt)
	}
	return hs
}

// quarantineSource is the rebuild engine's quarantine list for the detectors, with
// the times on the app's clock; nil (a nil interface) when the engine is off.
func (a *App) quarantineSource() detectors.QuarantineSource {
	if a.quarantines == nil || a.clock == clock.Wall {
		return a.quarantines
	}
	return clockedQuarantines{src: a.quarantines, fromWall: a.fromWall}
}

type clockedQuarantines struct {
	src      detectors.QuarantineSource
	fromWall func(time.Time) time.Time
}

func (c clockedQuarantines) Quarantined(ctx context.Context) ([]rebuild.Quarantine, error) {
	qs, err := c.src.Quarantined(ctx)
	for i := range qs {
		qs[i].Since = c.fromWall(qs[i].Since)
	}
	return qs, err
}

// pagerFor is the notifier as the detectors see it: in embedded mode every time is
// moved from the simulated clock back onto the wall clock first, so that Alertmanager
// gets alerts that start and end now rather than hours ahead.
func (a *App) pagerFor(p detectors.Pager) detectors.Pager {
	if a.clock == clock.Wall {
		return p
	}
	return wallPager{p: p, toWall: a.clock.ToWall}
}

type wallPager struct {
	p      detectors.Pager
	toWall func(time.Time) time.Time
}

func (w wallPager) Update(now time.Time, relevant []detectors.Finding) {
	out := make([]detectors.Finding, len(relevant))
	for i, f := range relevant {
		for _, t := range []*time.Time{&f.ActiveAt, &f.FiredAt, &f.ResolvedAt} {
			if !t.IsZero() {
				*t = w.toWall(*t)
			}
		}
		out[i] = f
	}
	w.p.Update(w.toWall(now), out)
}
