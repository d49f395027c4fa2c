package rebuild

import (
	"context"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// clockSkewMargin is how much earlier than a job's not-before time this process stops
// trusting that the job still waits: replicas' and the database's clocks may differ
// by this much.
const clockSkewMargin = 50 * time.Millisecond

// coalescer is this process's knowledge of each team's job, so that a burst of
// requests costs one database round trip per team instead of one per request.
//
// What a slot says:
//   - running: a build of the team runs in this process. A request marks a follow-up
//     in memory; the worker reads and clears it under the same lock when the build ends.
//   - waiting, before notBefore: the team's job cannot start before notBefore on any
//     replica (it was inserted or snoozed with a not-before time, and River fetches no
//     job before its scheduled_at). A request joins it; nothing to check.
//   - waiting, after notBefore: the job may have been started by another replica. A
//     request joins it at once and the team is queued for verification: one query per
//     verification pass (verify) checks which of the queued teams' jobs still wait; a
//     team whose job started meanwhile gets the database path (a follow-up mark, or a
//     new job when the build already ended), so the request is never lost.
//
// Requests the slots cannot answer go to the database, where River's unique job and
// the follow-up mark in flagwarden_rebuild_teams stay the guarantee across replicas.
type coalescer struct {
	mu    sync.Mutex
	slots map[int64]*slot
	// nextSweep is the map size at which expired waiting slots are dropped.
	nextSweep int
	// unverified holds teams joined after their job's notBefore, with the joined job's
	// id, until a verification pass confirms the job had not started.
	unverified map[int64]pendingJoin
	// wake signals the verification loop that unverified is not empty.
	wake chan struct{}
}

type pendingJoin struct {
	jobID int64
	lane  Lane
}

type slot struct {
	jobID     int64
	lane      Lane
	notBefore time.Time // waiting: the job starts no earlier than this
	running   bool      // a build of the team runs in this process
	followUp  bool      // a request arrived during that build
}

func newCoalescer() *coalescer {
	return &coalescer{slots: map[int64]*slot{}, nextSweep: 1024, unverified: map[int64]pendingJoin{}, wake: make(chan struct{}, 1)}
}

// join tries to answer a request for team in lane from memory.
func (c *coalescer) join(team int64, lane Lane, now time.Time) (RequestResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.slots[team]
	if !ok {
		return RequestResult{}, false
	}
	res := RequestResult{TeamID: team, JobID: s.jobID, Joined: true, Lane: s.lane}
	switch {
	case s.running:
		// The running build's job runs once more when it ends; its lane is decided
		// again then, so the request's lane does not matter here.
		s.followUp = true
		return res, true
	case s.lane != lane:
		return RequestResult{}, false
	case now.Before(s.notBefore.Add(-clockSkewMargin)):
		return res, true
	}
	c.unverified[team] = pendingJoin{jobID: s.jobID, lane: s.lane}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return res, true
}

// takeUnverified hands the queued teams to a verification pass.
func (c *coalescer) takeUnverified() map[int64]pendingJoin {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.unverified) == 0 {
		return nil
	}
	out := c.unverified
	c.unverified = map[int64]pendingJoin{}
	return out
}

// requeue puts teams whose verification failed back for the next pass.
func (c *coalescer) requeue(teams map[int64]pendingJoin) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for team, p := range teams {
		if _, ok := c.unverified[team]; !ok {
			c.unverified[team] = p
		}
	}
}

// waiting records that team's job waits in lane and starts no earlier than notBefore.
// It does not replace a running slot: the running build decides what comes next.
func (c *coalescer) waiting(team, jobID int64, lane Lane, notBefore time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.slots[team]; ok && s.running {
		return
	}
	c.slots[team] = &slot{jobID: jobID, lane: lane, notBefore: notBefore}
	if len(c.slots) >= c.nextSweep {
		c.sweepLocked(time.Now())
		c.nextSweep = max(1024, 2*len(c.slots))
	}
}

// begin marks team's build as running in this process.
func (c *coalescer) begin(team, jobID int64, lane Lane) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slots[team] = &slot{jobID: jobID, lane: lane, running: true}
	// Requests joined before this build began are covered by it: it reads the data
	// after now.
	if p, ok := c.unverified[team]; ok && p.jobID == jobID {
		delete(c.unverified, team)
	}
}

// end finishes team's build in this process. With again (the build succeeded and a
// request arrived during it, here or on another replica) or a follow-up marked in
// memory, the job is about to be snoozed until notBefore: the slot turns into a
// waiting one, and end reports true. Otherwise the slot is dropped.
func (c *coalescer) end(team int64, ok, again bool, notBefore time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, found := c.slots[team]
	if !found || !s.running {
		return ok && again
	}
	if ok && (again || s.followUp) {
		s.running, s.followUp, s.notBefore = false, false, notBefore
		return true
	}
	// A failed build is retried by River on its own schedule, which covers the
	// requests that arrived during it.
	delete(c.slots, team)
	return false
}

// forget drops whatever this process knows about team's job.
func (c *coalescer) forget(team int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.slots[team]; ok && !s.running {
		delete(c.slots, team)
	}
}

// sweepLocked drops waiting slots whose not-before time has passed, bounding the map
// to the teams with a job in flight.
func (c *coalescer) sweepLocked(now time.Time) {
	for team, s := range c.slots {
		if _, pending := c.unverified[team]; !s.running && !pending && now.After(s.notBefore.Add(time.Minute)) {
			delete(c.slots, team)
		}
	}
}

// notBeforeKey carries a not-before time from an insert to notBeforeMiddleware.
type notBeforeKey struct{}

func withNotBefore(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, notBeforeKey{}, t)
}

// notBeforeMiddleware inserts a rebuild job as available but with scheduled_at in the
// near future, the way River itself handles short snoozes: no worker on any replica
// fetches it before then, and it needs no pass of River's scheduler (every 5s) to
// become runnable. River's InsertOpts.ScheduledAt would make the job "scheduled" and
// add up to that scheduler interval to every build.
type notBeforeMiddleware struct {
	river.MiddlewareDefaults
}

func (*notBeforeMiddleware) InsertMany(ctx context.Context, many []*rivertype.JobInsertParams,
	doInner func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
	if t, ok := ctx.Value(notBeforeKey{}).(time.Time); ok {
		for _, p := range many {
			if p.Kind == jobKind && p.State == rivertype.JobStateAvailable {
				at := t.UTC()
				p.ScheduledAt = &at
			}
		}
	}
	return doInner(ctx)
}

// quarantineCache holds the set of quarantined teams for a short time so that a
// request needs no query to learn its lane. This process's quarantines and releases
// update it at once; another replica's are seen within the TTL (and every build
// checks the database before it starts).
type quarantineCache struct {
	ttl    time.Duration
	load   func(ctx context.Context) ([]Quarantine, error)
	mu     sync.Mutex
	teams  map[int64]struct{}
	loaded time.Time
}

func (q *quarantineCache) quarantined(ctx context.Context, team int64) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.teams == nil || time.Since(q.loaded) >= q.ttl {
		list, err := q.load(ctx)
		if err != nil {
			return false, err
		}
		q.teams = make(map[int64]struct{}, len(list))
		for _, e := range list {
			q.teams[e.TeamID] = struct{}{}
		}
		q.loaded = time.Now()
	}
	_, ok := q.teams[team]
	return ok, nil
}

// set records this process's own quarantine (true) or release (false) of team.
func (q *quarantineCache) set(team int64, quarantined bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.teams == nil {
		return // loaded on the next request
	}
	if quarantined {
		q.teams[team] = struct{}{}
	} else {
		delete(q.teams, team)
	}
}
