package rebuild

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/sync/semaphore"

	"github.com/flagwarden/flagwarden/internal/pgretry"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/rebuild/defaults"
)

// jobKind is the one River job kind: rebuild team T.
const jobKind = "flagwarden_rebuild_team"

// jobArgs is the job's payload. Only TeamID is part of the unique key, so requests for
// one team with different reasons still collapse.
type jobArgs struct {
	TeamID int64  `json:"team_id" river:"unique"`
	Reason string `json:"reason,omitempty"`
}

func (jobArgs) Kind() string { return jobKind }

// uniqueStates are the states in which a team's job absorbs new requests: waiting in
// any form, or running (River requires running; a request against a running build is
// turned into one follow-up by the engine).
var uniqueStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
	rivertype.JobStateScheduled, rivertype.JobStateRetryable,
}

// Options configure the engine.
type Options struct {
	// Source is where builds read flags; Sizes measures teams for admission.
	Source FlagSource
	Sizes  SizeSource
	// Publisher writes the payloads.
	Publisher *Publisher
	// Builder configures the streaming builder (page size, malformed-data policy).
	Builder BuilderOptions

	// SmallWorkers, LargeWorkers and QuarantineWorkers bound concurrent builds per lane
	// in this process. Defaults 8, 2, 1.
	SmallWorkers, LargeWorkers, QuarantineWorkers int
	// LargeTeamBytes routes teams whose estimated payload is at least this to the large
	// lane. Default 16 MiB.
	LargeTeamBytes int64
	// HardLimitBytes quarantines teams whose estimated payload is at least this.
	// Default 4 GiB.
	HardLimitBytes int64
	// QuarantineAfterFailures quarantines a team after this many failed builds in a
	// row. Default 3.
	QuarantineAfterFailures int
	// QuarantineHold makes quarantined teams' builds wait for release instead of running
	// one at a time.
	QuarantineHold bool
	// HoldRecheck is how often a held build checks whether its team was released.
	// Default 30s.
	HoldRecheck time.Duration
	// MemoryBudget is what concurrent builds in this process may hold together,
	// estimated before each starts. Default 512 MiB.
	MemoryBudget int64
	// GoMemoryLimit, when positive, is set as the process's soft memory limit.
	GoMemoryLimit int64
	// BuildTimeout bounds one build. Default 10m.
	BuildTimeout time.Duration
	// MaxAttempts is how often a failing build is tried. Default 5.
	MaxAttempts int
	// RetryBase is the first retry delay; later ones double up to RetryMax.
	// Defaults 5s and 5m.
	RetryBase, RetryMax time.Duration
	// FetchPollInterval is how often idle workers look for jobs when no notification
	// arrives (SQLite has none). Default 1s.
	FetchPollInterval time.Duration
	// CoalesceDelay is how long a new job and a follow-up wait before they may start.
	// Requests for the team meanwhile join the job in memory, without a database round
	// trip. At most 5s (River's scheduler interval; a longer snooze waits for the
	// scheduler). Default 500ms.
	CoalesceDelay time.Duration
	// QuarantineCacheTTL is how long this process trusts its copy of the quarantined
	// teams when routing requests; its own quarantines and releases apply at once.
	// Default 5s.
	QuarantineCacheTTL time.Duration
	// ReplicaID names this process in River's job attempts (River's client ID); it
	// must be unique among running processes and match the id this process
	// heartbeats under in flagwarden_replicas. Empty lets River pick one.
	ReplicaID string
	// RescueDeadAfter, when positive (Postgres only, with every replica
	// heartbeating into flagwarden_replicas), rescues a running build whose process
	// has not been seen for this long, instead of waiting for River's rescue after
	// BuildTimeout + 1 min, and removes the temporary keys it left.
	RescueDeadAfter time.Duration
	// OnQuarantine, if set, is called when a team is quarantined (automatically or by
	// an operator): the detectors page on it.
	OnQuarantine func(Quarantine)
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

// DefaultOptions are the settings the engine uses where Options leave a field unset.
// The composition's test holds the config file's defaults to them.
func DefaultOptions() Options { return Options{}.withDefaults() }

func (o Options) withDefaults() Options {
	o.SmallWorkers = cmp.Or(o.SmallWorkers, defaults.SmallWorkers)
	o.LargeWorkers = cmp.Or(o.LargeWorkers, defaults.LargeWorkers)
	o.QuarantineWorkers = cmp.Or(o.QuarantineWorkers, defaults.QuarantineWorkers)
	o.LargeTeamBytes = cmp.Or(o.LargeTeamBytes, defaults.LargeTeamBytes)
	o.HardLimitBytes = cmp.Or(o.HardLimitBytes, defaults.HardLimitBytes)
	o.QuarantineAfterFailures = cmp.Or(o.QuarantineAfterFailures, defaults.QuarantineAfterFailures)
	o.HoldRecheck = cmp.Or(o.HoldRecheck, 30*time.Second)
	o.MemoryBudget = cmp.Or(o.MemoryBudget, defaults.MemoryBudget)
	o.BuildTimeout = cmp.Or(o.BuildTimeout, defaults.BuildTimeout)
	o.MaxAttempts = cmp.Or(o.MaxAttempts, defaults.MaxAttempts)
	o.RetryBase = cmp.Or(o.RetryBase, 5*time.Second)
	o.RetryMax = cmp.Or(o.RetryMax, 5*time.Minute)
	o.FetchPollInterval = cmp.Or(o.FetchPollInterval, time.Second)
	o.CoalesceDelay = cmp.Or(o.CoalesceDelay, defaults.CoalesceDelay)
	o.QuarantineCacheTTL = cmp.Or(o.QuarantineCacheTTL, defaults.QuarantineCacheTTL)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Source == nil:
		return errors.New("Options.Source is required")
	case o.Sizes == nil:
		return errors.New("Options.Sizes is required")
	case o.Publisher == nil:
		return errors.New("Options.Publisher is required")
	case o.SmallWorkers < 1 || o.LargeWorkers < 1 || o.QuarantineWorkers < 1:
		return errors.New("Options workers per lane must be at least 1")
	case o.HardLimitBytes <= o.LargeTeamBytes:
		return errors.New("Options.HardLimitBytes must exceed LargeTeamBytes")
	case o.MemoryBudget < 1<<20:
		return errors.New("Options.MemoryBudget must be at least 1 MiB")
	case o.BuildTimeout <= 0 || o.RetryBase <= 0 || o.RetryMax < o.RetryBase:
		return errors.New("Options.BuildTimeout, RetryBase and RetryMax must be positive and RetryMax >= RetryBase")
	case o.MaxAttempts < 1:
		return errors.New("Options.MaxAttempts must be at least 1")
	case o.CoalesceDelay < 0 || o.CoalesceDelay > maxCoalesceDelay:
		return fmt.Errorf("Options.CoalesceDelay must be between 0 and %s", maxCoalesceDelay)
	case o.QuarantineCacheTTL < 0:
		return errors.New("Options.QuarantineCacheTTL must not be negative")
	case o.RescueDeadAfter < 0:
		return errors.New("Options.RescueDeadAfter must not be negative")
	}
	return nil
}

// maxCoalesceDelay is River's scheduler interval: a snooze up to it makes the job
// available at once (with a not-before time), a longer one waits for the scheduler.
const maxCoalesceDelay = 5 * time.Second

// jobClient is the part of River's client the engine uses, free of River's
// transaction type parameter so that the Postgres and SQLite drivers share the engine.
type jobClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	JobRetry(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
}

// Engine is the rebuild engine: intake with per-team dedup, admission into lanes,
// quarantine, the memory budget, and the River workers that run builds.
type Engine struct {
	opts     Options
	rebuild  *Rebuilder
	store    *store
	client   jobClient
	budget   *semaphore.Weighted
	metrics  *metrics
	logger   *slog.Logger
	sizes    *sizeCache
	jobs     *coalescer
	quar     *quarantineCache
	stopOnce sync.Once
	// verifyMu serializes verification passes; stopVerify ends the loop.
	verifyMu   sync.Mutex
	stopVerify context.CancelFunc
	verifyDone chan struct{}
	closeDB    func() error
	// rescues is set on Postgres, where the replicas' heartbeats live; stopRescue
	// ends the loop that rescues builds of dead processes.
	rescues    bool
	stopRescue context.CancelFunc
	rescueDone chan struct{}
	// retry repeats a database call once when its connection was dead.
	retry pgretry.Retrier

	mu      sync.Mutex
	inUse   int64
	running map[Lane]int

	// testHook, set only by tests, runs at the start of every build.
	testHook func(team int64)
}

// NewPostgres builds an engine whose jobs and state live in the Postgres behind pool
// (River's tables must be migrated: MigratePostgres).
func NewPostgres(pool *pgxpool.Pool, opts Options) (*Engine, error) {
	db := stdlib.OpenDBFromPool(pool)
	e, err := newEngine(opts, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	e.closeDB = db.Close
	// A dead connection usually has dead siblings (the server restarted, or every
	// backend was terminated): drop them all before the retry.
	e.retry.Reset = pool.Reset
	e.store.retry = e.retry
	e.rescues = e.opts.RescueDeadAfter > 0
	c, err := river.NewClient(riverpgxv5.New(pool), e.riverConfig())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("river client: %w", err)
	}
	e.client = c
	return e, nil
}

// NewSQLite builds an engine on an embedded SQLite database (the demo and single-node
// default). It applies River's migrations and the engine's tables itself. db should
// allow one open connection (db.SetMaxOpenConns(1)).
func NewSQLite(ctx context.Context, db *sql.DB, opts Options) (*Engine, error) {
	if err := MigrateSQLite(ctx, db); err != nil {
		return nil, err
	}
	e, err := newEngine(opts, db)
	if err != nil {
		return nil, err
	}
	c, err := river.NewClient(riversqlite.New(db), e.riverConfig())
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	e.client = c
	return e, nil
}

// MigratePostgres applies River's migrations to the state database (the engine's own
// table comes with flagwarden's migrations).
func MigratePostgres(ctx context.Context, pool *pgxpool.Pool) error {
	return migrateRiver(ctx, riverpgxv5.New(pool))
}

// MigrateSQLite applies River's migrations and the engine's tables to db.
func MigrateSQLite(ctx context.Context, db *sql.DB) error {
	if err := migrateRiver(ctx, riversqlite.New(db)); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, sqliteSchema); err != nil {
		return fmt.Errorf("create rebuild tables: %w", err)
	}
	return nil
}

func migrateRiver[TTx any](ctx context.Context, d riverdriver.Driver[TTx]) error {
	m, err := rivermigrate.New(d, nil)
	if err != nil {
		return fmt.Errorf("river migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("apply river migrations: %w", err)
	}
	return nil
}

func newEngine(opts Options, db *sql.DB) (*Engine, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.GoMemoryLimit > 0 {
		debug.SetMemoryLimit(opts.GoMemoryLimit)
	}
	e := &Engine{
		opts:    opts,
		rebuild: NewRebuilder(opts.Source, NewBuilder(opts.Builder), opts.Publisher),
		store:   &store{db: db},
		budget:  semaphore.NewWeighted(opts.MemoryBudget),
		metrics: newMetrics(opts.Registerer),
		logger:  opts.Logger.With("component", "rebuild"),
		sizes:   newSizeCache(opts.Sizes, 10*time.Second, 50_000),
		running: map[Lane]int{},
		jobs:    newCoalescer(),
	}
	e.retry = pgretry.Retrier{OnRetry: e.metrics.dbRetries.Inc}
	e.store.retry = e.retry
	e.quar = &quarantineCache{ttl: opts.QuarantineCacheTTL, load: e.store.listQuarantined}
	e.metrics.budget.Set(float64(opts.MemoryBudget))
	return e, nil
}

func (e *Engine) riverConfig() *river.Config {
	workers := river.NewWorkers()
	river.AddWorker(workers, &worker{e: e})
	quarantineWorkers := e.opts.QuarantineWorkers
	return &river.Config{
		ID: e.opts.ReplicaID,
		Queues: map[string]river.QueueConfig{
			string(LaneSmall):      {MaxWorkers: e.opts.SmallWorkers},
			string(LaneLarge):      {MaxWorkers: e.opts.LargeWorkers},
			string(LaneQuarantine): {MaxWorkers: quarantineWorkers},
		},
		Workers:              workers,
		Middleware:           []rivertype.Middleware{&notBeforeMiddleware{}},
		JobTimeout:           e.opts.BuildTimeout,
		MaxAttempts:          e.opts.MaxAttempts,
		RetryPolicy:          &retryPolicy{base: e.opts.RetryBase, max: e.opts.RetryMax},
		RescueStuckJobsAfter: e.opts.BuildTimeout + time.Minute,
		FetchPollInterval:    e.opts.FetchPollInterval,
		FetchCooldown:        min(e.opts.FetchPollInterval, 100*time.Millisecond),
		Logger:               e.logger.With("subsystem", "river"),
		ErrorHandler:         &panicHandler{logger: e.logger},
	}
}

// Name implements service.Service.
func (e *Engine) Name() string { return "rebuild" }

// Start starts the workers and the loop that verifies requests answered from memory.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.client.Start(ctx); err != nil {
		return fmt.Errorf("start rebuild workers: %w", err)
	}
	vctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.stopVerify, e.verifyDone = cancel, make(chan struct{})
	go e.verifyLoop(vctx)
	if e.rescues {
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		e.stopRescue, e.rescueDone = cancel, make(chan struct{})
		go e.rescueLoop(rctx, max(e.opts.RescueDeadAfter/3, time.Second))
	}
	return nil
}

// verifyBatching is how long the verification loop gathers joins before one pass.
const verifyBatching = 10 * time.Millisecond

func (e *Engine) verifyLoop(ctx context.Context) {
	defer close(e.verifyDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.jobs.wake:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(verifyBatching):
		}
		if err := e.Flush(ctx); err != nil && ctx.Err() == nil {
			e.logger.WarnContext(ctx, "verifying coalesced requests failed; retrying", "err", err)
			select {
			case e.jobs.wake <- struct{}{}:
			default:
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// Flush returns once every request this process answered from memory so far is
// covered by a build: one query finds which of the joined jobs still wait (those
// cover their requests); a team whose job was started by another replica meanwhile
// gets the database path (a follow-up mark, or a new job). The verification loop
// calls it within milliseconds of a join; the Celery consumer calls it before acking.
func (e *Engine) Flush(ctx context.Context) error {
	e.verifyMu.Lock()
	defer e.verifyMu.Unlock()
	pending := e.jobs.takeUnverified()
	if len(pending) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(pending))
	for _, p := range pending {
		ids = append(ids, p.jobID)
	}
	waiting := make(map[int64]bool, len(ids))
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		res, err := pgretry.Value(ctx, e.retry, func() (*river.JobListResult, error) {
			return e.client.JobList(ctx, river.NewJobListParams().IDs(chunk...).
				States(rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable, rivertype.JobStatePending).
				First(len(chunk)))
		})
		if err != nil {
			e.jobs.requeue(pending)
			return fmt.Errorf("verify coalesced requests: %w", err)
		}
		for _, j := range res.Jobs {
			waiting[j.ID] = true
		}
	}
	var errs error
	failed := map[int64]pendingJoin{}
	for team, p := range pending {
		if waiting[p.jobID] {
			continue // the job had not started after the joins: its build covers them
		}
		e.jobs.forget(team)
		if _, err := e.insert(ctx, team, "coalesced", p.lane); err != nil {
			failed[team] = p
			errs = errors.Join(errs, err)
		}
	}
	if len(failed) > 0 {
		e.jobs.requeue(failed)
	}
	return errs
}

// Stop stops fetching and waits for running builds within ctx; builds still running
// when ctx ends are cancelled and picked up again after restart. Idempotent.
func (e *Engine) Stop(ctx context.Context) error {
	var err error
	e.stopOnce.Do(func() {
		if e.stopRescue != nil {
			e.stopRescue()
			<-e.rescueDone
		}
		if e.stopVerify != nil {
			e.stopVerify()
			<-e.verifyDone
		}
		if ferr := e.Flush(ctx); ferr != nil {
			e.logger.WarnContext(ctx, "verifying coalesced requests at stop failed", "err", ferr)
		}
		err = e.client.Stop(ctx)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = nil
		}
		if e.closeDB != nil {
			_ = e.closeDB()
		}
	})
	return err
}

// Request asks for a rebuild of team: admits it, then inserts its job or joins the one
// already waiting. A request against a running build yields exactly one follow-up
// build. ErrUnknownTeam for a team not in the flag database.
func (e *Engine) Request(ctx context.Context, teamID int64, reason string) (RequestResult, error) {
	source := sourceOf(reason)
	res, err := e.request(ctx, teamID, reason)
	outcome := "inserted"
	switch {
	case errors.Is(err, ErrUnknownTeam):
		outcome = "unknown_team"
	case err != nil:
		outcome = "error"
	case res.coalesced:
		outcome = "coalesced"
	case res.Joined:
		outcome = "joined"
	}
	e.metrics.requests.WithLabelValues(source, outcome).Inc()
	return res.RequestResult, err
}

func (e *Engine) request(ctx context.Context, teamID int64, reason string) (requestOutcome, error) {
	lane, err := e.admit(ctx, teamID, false)
	if err != nil {
		return requestOutcome{RequestResult: RequestResult{TeamID: teamID}}, err
	}
	if res, ok := e.jobs.join(teamID, lane, time.Now()); ok {
		return requestOutcome{RequestResult: res, coalesced: true}, nil
	}
	res, err := e.insert(ctx, teamID, reason, lane)
	return requestOutcome{RequestResult: res}, err
}

// requestOutcome is a RequestResult plus whether memory answered it.
type requestOutcome struct {
	RequestResult
	coalesced bool
}

// insert puts the team's job in lane, joining a waiting one. Against a running build it
// marks a follow-up; when the build is just finishing it tries again until the job has
// completed (insert) or been re-queued (join).
func (e *Engine) insert(ctx context.Context, teamID int64, reason string, lane Lane) (RequestResult, error) {
	res := RequestResult{TeamID: teamID, Lane: lane}
	opts := &river.InsertOpts{
		Queue:       string(lane),
		MaxAttempts: e.opts.MaxAttempts,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByQueue: true, ByState: uniqueStates},
	}
	delay := 5 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	for {
		notBefore := time.Now().Add(e.opts.CoalesceDelay)
		// A repeated insert is harmless: the team's job is unique.
		ins, err := pgretry.Value(ctx, e.retry, func() (*rivertype.JobInsertResult, error) {
			return e.client.Insert(withNotBefore(ctx, notBefore), jobArgs{TeamID: teamID, Reason: reason}, opts)
		})
		if err != nil {
			return res, fmt.Errorf("enqueue rebuild of team %d: %w", teamID, err)
		}
		res.JobID = ins.Job.ID
		switch ins.Job.State {
		case rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable:
			// No replica starts the job before its scheduled time: until then this
			// process answers requests for the team from memory.
			e.jobs.waiting(teamID, ins.Job.ID, lane, ins.Job.ScheduledAt)
		}
		if !ins.UniqueSkippedAsDuplicate {
			return res, nil
		}
		res.Joined = true
		if ins.Job.State != rivertype.JobStateRunning {
			return res, nil
		}
		marked, err := e.store.markFollowUp(ctx, teamID)
		if err != nil {
			return res, err
		}
		if marked {
			return res, nil
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("enqueue rebuild of team %d: its running build neither finished nor took the follow-up", teamID)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// admit measures the team and picks its lane; a team over the hard limit is
// quarantined on the way. Requests read quarantines from the cache; a build about to
// start (fresh) reads the database, so another replica's release or quarantine is
// honoured at once.
func (e *Engine) admit(ctx context.Context, teamID int64, fresh bool) (Lane, error) {
	size, err := e.sizes.get(ctx, teamID)
	if err != nil {
		return "", err
	}
	var q bool
	if fresh {
		_, q, err = e.store.quarantined(ctx, teamID)
	} else {
		q, err = e.quar.quarantined(ctx, teamID)
	}
	if err != nil {
		return "", err
	}
	ad := Admit(size.PayloadBytes(), q, AdmissionLimits{LargeTeamBytes: e.opts.LargeTeamBytes, HardLimitBytes: e.opts.HardLimitBytes})
	if ad.Quarantine {
		if err := e.quarantine(ctx, teamID, ad.Reason, true); err != nil {
			return "", err
		}
	}
	return ad.Lane, nil
}

// estimateBytes is what a streaming build of the team holds: fixed buffers, the
// largest flag row a few times over (row, scan, scratch), the per-flag integers, and
// two chunk buffers for each of the two payload streams.
func (e *Engine) estimateBytes(size snapshot.TeamSize) int64 {
	const base = 4 << 20
	est := base + 6*size.LargestFilterBytes + 48*size.Flags + 4*int64(e.opts.Publisher.opts.ChunkBytes)
	return min(est, e.opts.MemoryBudget)
}

// Quarantine quarantines a team by operator request.
func (e *Engine) Quarantine(ctx context.Context, teamID int64, reason string) error {
	if _, err := e.sizes.get(ctx, teamID); err != nil {
		return err
	}
	return e.quarantine(ctx, teamID, reason, false)
}

func (e *Engine) quarantine(ctx context.Context, teamID int64, reason string, auto bool) error {
	now := time.Now().UTC()
	changed, err := e.store.quarantine(ctx, teamID, reason, auto, now)
	if err != nil {
		return err
	}
	e.quar.set(teamID, true)
	e.jobs.forget(teamID) // its next request goes to the quarantine lane
	if !changed {
		return nil
	}
	e.logger.WarnContext(ctx, "team quarantined", "team", teamID, "reason", reason, "auto", auto)
	e.refreshQuarantineGauge(ctx)
	if e.opts.OnQuarantine != nil {
		e.opts.OnQuarantine(Quarantine{TeamID: teamID, Reason: reason, Auto: auto, Since: now})
	}
	return nil
}

// Release ends a team's quarantine and requests a build in its normal lane.
func (e *Engine) Release(ctx context.Context, teamID int64, reason string) error {
	if _, err := e.sizes.get(ctx, teamID); err != nil {
		return err
	}
	changed, err := e.store.release(ctx, teamID)
	if err != nil {
		return err
	}
	e.quar.set(teamID, false)
	e.jobs.forget(teamID)
	e.refreshQuarantineGauge(ctx)
	if !changed {
		return nil
	}
	e.logger.InfoContext(ctx, "team released", "team", teamID, "reason", reason)
	_, err = e.Request(ctx, teamID, "release: "+reason)
	return err
}

// Quarantined lists the quarantined teams.
func (e *Engine) Quarantined(ctx context.Context) ([]Quarantine, error) {
	return e.store.listQuarantined(ctx)
}

func (e *Engine) refreshQuarantineGauge(ctx context.Context) {
	if qs, err := e.store.listQuarantined(ctx); err == nil {
		e.metrics.quarantined.Set(float64(len(qs)))
	}
}

// History returns the team's newest build results, newest first.
func (e *Engine) History(ctx context.Context, teamID int64, limit int) ([]BuildResult, error) {
	limit = min(max(limit, 1), resultsKept)
	return e.store.results(ctx, teamID, limit)
}

// Status reports lanes (running and waiting across every replica, workers in this
// one), the memory budget, quarantines and the newest results.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	counts, err := e.store.jobCounts(ctx)
	if err != nil {
		return Status{}, err
	}
	st := Status{BudgetBytes: e.opts.MemoryBudget}
	workers := map[Lane]int{LaneSmall: e.opts.SmallWorkers, LaneLarge: e.opts.LargeWorkers, LaneQuarantine: e.opts.QuarantineWorkers}
	for _, lane := range []Lane{LaneSmall, LaneLarge, LaneQuarantine} {
		c := counts[string(lane)]
		ls := LaneStatus{Lane: lane, Running: c["running"], Waiting: c["available"] + c["scheduled"] + c["retryable"] + c["pending"], Workers: workers[lane]}
		st.Lanes = append(st.Lanes, ls)
		e.metrics.waiting.WithLabelValues(string(lane)).Set(float64(ls.Waiting))
	}
	e.mu.Lock()
	st.BudgetInUse = e.inUse
	for i := range st.Lanes {
		st.Lanes[i].RunningHere = e.running[st.Lanes[i].Lane]
	}
	e.mu.Unlock()
	if st.Quarantined, err = e.store.listQuarantined(ctx); err != nil {
		return st, err
	}
	e.metrics.quarantined.Set(float64(len(st.Quarantined)))
	if st.Recent, err = e.store.results(ctx, 0, 20); err != nil {
		return st, err
	}
	return st, nil
}

// sourceOf maps a request reason to a bounded metric label.
func sourceOf(reason string) string {
	for _, s := range []string{"api", "notify", "celery", "sweep", "cli", "release", "bench", "demo"} {
		if len(reason) >= len(s) && reason[:len(s)] == s {
			return s
		}
	}
	return "other"
}

// retryPolicy doubles the delay from base up to max.
type retryPolicy struct{ base, max time.Duration }

func (p *retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	d := p.base
	for i := 1; i < job.Attempt && d < p.max; i++ {
		d *= 2
	}
	return time.Now().Add(min(d, p.max))
}

// panicHandler logs a build that panicked; River has already turned the panic into a
// failed attempt that will be retried.
type panicHandler struct{ logger *slog.Logger }

func (h *panicHandler) HandleError(ctx context.Context, job *rivertype.JobRow, err error) *river.ErrorHandlerResult {
	return nil
}

func (h *panicHandler) HandlePanic(ctx context.Context, job *rivertype.JobRow, v any, trace string) *river.ErrorHandlerResult {
	h.logger.ErrorContext(ctx, "rebuild panicked", "job", job.ID, "panic", fmt.Sprint(v), "trace", trace)
	return nil
}

// sizeCache remembers team sizes briefly so that a burst of requests for one team costs
// one measurement.
type sizeCache struct {
	src SizeSource
	ttl time.Duration
	max int
	mu  sync.Mutex
	m   map[int64]sizeEntry
}

type sizeEntry struct {
	size snapshot.TeamSize
	at   time.Time
}

func newSizeCache(src SizeSource, ttl time.Duration, maxEntries int) *sizeCache {
	return &sizeCache{src: src, ttl: ttl, max: maxEntries, m: map[int64]sizeEntry{}}
}

func (c *sizeCache) get(ctx context.Context, team int64) (snapshot.TeamSize, error) {
	c.mu.Lock()
	if e, ok := c.m[team]; ok && time.Since(e.at) < c.ttl {
		c.mu.Unlock()
		return e.size, nil
	}
	c.mu.Unlock()
	size, err := c.src.TeamSize(ctx, team)
	if err != nil {
		return size, err
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[team] = sizeEntry{size: size, at: time.Now()}
	c.mu.Unlock()
	return size, nil
}
