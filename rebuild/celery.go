package rebuild

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/kombu"
	"github.com/flagwarden/flagwarden/internal/service"
)

// Flusher is implemented by a Requester that answers some requests from memory:
// Flush returns once every request answered so far is covered by a build whatever
// another replica does. A consumer that acknowledges messages calls it before the ack.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Requester is the engine's intake as the consumers use it.
type Requester interface {
	Request(ctx context.Context, teamID int64, reason string) (RequestResult, error)
}

// CeleryOptions configure the Celery consumer. Zero values take the defaults named.
type CeleryOptions struct {
	// Queue is the broker queue the platform routes the cache-update tasks to.
	Queue string
	// Tasks are the task names taken (matched whole, or by their last dotted part).
	Tasks []string
	// Sep, PrioritySteps and KeyPrefix are kombu's broker_transport_options.
	Sep           string
	PrioritySteps []int
	KeyPrefix     string
	// TeamKwarg and TeamPosition locate the team id in the task's kwargs or args.
	TeamKwarg    string
	TeamPosition int
	// Batch is the smallest number of messages taken per pass; the batch doubles while
	// passes come back full and halves when the queue runs dry, up to MaxBatch.
	// Default 500.
	Batch int
	// MaxBatch caps the batch. Default 20,000.
	MaxBatch int
	// MaxMessageBytes is the largest message read; larger ones are dead-lettered in
	// Redis (reason "oversized") without being read. Default 1 MiB.
	MaxMessageBytes int64
	// PassBytes caps the message bytes one pass holds. Default 16 MiB.
	PassBytes int64
	// MaxPending caps the messages delivered and not yet acknowledged; intake waits
	// above it. Default 200,000.
	MaxPending int
	// VisibilityTimeout is kombu's visibility_timeout: this consumer's deliveries older
	// than this (a consumer that died) go back to the queue. Default 1h.
	VisibilityTimeout time.Duration
	// RestoreInterval is how often due deliveries are restored (kombu: 10s).
	RestoreInterval time.Duration
	// RequestWorkers bounds the rebuild requests in flight. Default 8.
	RequestWorkers int
	// DeadLetter is the list that receives refused messages, one JSON object each with
	// the reason and the message. Default "<queue>.flagwarden_dead".
	DeadLetter string
	// Clock stamps deliveries in the unacked index and judges which are overdue. Real
	// kombu workers read the same index by the wall clock, so it is the wall clock
	// (nil) against a real broker; a simulation gives the clock its fleet stamps by.
	Clock  clock.Clock
	Logger *slog.Logger
	// Registerer receives the consumer's metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

func (o *CeleryOptions) applyDefaults() {
	o.Batch = cmp.Or(o.Batch, 500)
	o.MaxBatch = max(o.Batch, cmp.Or(o.MaxBatch, 20000))
	o.MaxMessageBytes = cmp.Or(o.MaxMessageBytes, 1<<20)
	o.PassBytes = max(o.MaxMessageBytes, cmp.Or(o.PassBytes, 16<<20))
	o.MaxPending = max(o.MaxBatch, cmp.Or(o.MaxPending, 200000))
	o.VisibilityTimeout = cmp.Or(o.VisibilityTimeout, kombu.DefaultVisibilityTimeout)
	o.RestoreInterval = cmp.Or(o.RestoreInterval, 10*time.Second)
	o.RequestWorkers = cmp.Or(o.RequestWorkers, 8)
	o.DeadLetter = cmp.Or(o.DeadLetter, o.Queue+".flagwarden_dead")
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
}

func (o CeleryOptions) validate() error {
	var errs []error
	if o.Queue == "" {
		errs = append(errs, errors.New("CeleryOptions.Queue is required"))
	}
	if len(o.Tasks) == 0 {
		errs = append(errs, errors.New("CeleryOptions.Tasks must list at least one task"))
	}
	for name, v := range map[string]int64{"Batch": int64(o.Batch), "MaxMessageBytes": o.MaxMessageBytes,
		"VisibilityTimeout": int64(o.VisibilityTimeout), "RestoreInterval": int64(o.RestoreInterval),
		"RequestWorkers": int64(o.RequestWorkers)} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("CeleryOptions.%s must be positive, got %d", name, v))
		}
	}
	if o.TeamPosition < 0 {
		errs = append(errs, fmt.Errorf("CeleryOptions.TeamPosition must not be negative, got %d", o.TeamPosition))
	}
	return errors.Join(errs...)
}

// CeleryConsumer takes update_team_flags_cache / update_team_service_flags_cache tasks
// off a kombu Redis queue with kombu's semantics and nothing lost:
//
//   - Delivery pops a batch and records every message in unacked/unacked_index in one
//     atomic script; a message too large to read is dead-lettered in Redis unread.
//   - Each message is decoded on its own: one that is not Celery, not readable, names
//     an out-of-range team or an unknown task is dead-lettered with its reason, and the
//     rest of the batch goes on.
//   - Intake does not wait for the database: valid messages join a pending set keyed
//     by team, so duplicates within and across batches become one request per team
//     per round; a second loop requests the round's teams, flushes the engine's
//     in-memory joins, and only then acks each message.
//   - Deliveries of a consumer that died (older than the visibility timeout) are put
//     back on the queue, as kombu's restore_visible does.
type CeleryConsumer struct {
	rdb    redis.UniversalClient
	broker *kombu.Broker
	req    Requester
	opts   CeleryOptions
	arg    kombu.TeamArg
	m      *celeryMetrics
	svc    *service.Func

	// tagPrefix starts the delivery tags of every consumer of this queue; tags add a
	// per-process id and a per-pass sequence.
	tagPrefix string
	proc      string
	seq       atomic.Int64

	batch       int // adaptive batch size; touched by the intake loop only
	lastRestore time.Time

	pend pendingSet
	// peakPassBytes is the most message bytes one pass held.
	peakPassBytes atomic.Int64
}

// NewCeleryConsumer returns a consumer reading rdb and requesting through req.
func NewCeleryConsumer(rdb redis.UniversalClient, req Requester, opts CeleryOptions) (*CeleryConsumer, error) {
	opts.applyDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	c := &CeleryConsumer{
		rdb: rdb, req: req, opts: opts,
		broker:    kombu.NewBroker(rdb, kombu.Keys{Prefix: opts.KeyPrefix, Sep: opts.Sep, Steps: opts.PrioritySteps}),
		arg:       kombu.TeamArg{Kwarg: opts.TeamKwarg, Position: opts.TeamPosition},
		m:         newCeleryMetrics(opts.Registerer),
		tagPrefix: "flagwarden:" + opts.Queue + ":",
		proc:      hex.EncodeToString(id[:]),
		batch:     opts.Batch,
		pend:      newPendingSet(),
	}
	c.svc = service.NewFunc("rebuild-celery-consumer", opts.Logger, c.run)
	return c, nil
}

// Name implements service.Service.
func (c *CeleryConsumer) Name() string { return c.svc.Name() }

// Start consumes in the background until Stop.
func (c *CeleryConsumer) Start(ctx context.Context) error { return c.svc.Start(ctx) }

// Stop ends consumption; messages taken and not yet requested are requested and acked
// within ctx, else left in unacked for the restore. Idempotent.
func (c *CeleryConsumer) Stop(ctx context.Context) error { return c.svc.Stop(ctx) }

// PeakPassBytes is the most message bytes one delivery pass has held in this process.
func (c *CeleryConsumer) PeakPassBytes() int64 { return c.peakPassBytes.Load() }

// run is the service: an intake loop that never waits for the database, and a request
// loop that settles what intake collected.
func (c *CeleryConsumer) run(ctx context.Context) error {
	settleCtx, stopSettle := context.WithCancel(context.WithoutCancel(ctx))
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		c.settleLoop(settleCtx, ctx.Done())
	}()
	c.intakeLoop(ctx)
	<-settled
	stopSettle()
	return nil
}

func (c *CeleryConsumer) intakeLoop(ctx context.Context) {
	idle := 50 * time.Millisecond
	for ctx.Err() == nil {
		c.housekeep(ctx)
		if !c.pend.waitSpace(ctx, c.opts.MaxPending) {
			return
		}
		n, err := c.intake(ctx)
		if err != nil && ctx.Err() == nil {
			c.opts.Logger.Warn("celery intake pass failed", "queue", c.opts.Queue, "err", err)
		}
		if n > 0 && err == nil {
			idle = 50 * time.Millisecond
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(idle):
		}
		idle = min(idle*2, time.Second)
	}
}

// settleLoop settles rounds until stop is closed, then once more so that what intake
// took last is acked before the consumer stops.
func (c *CeleryConsumer) settleLoop(ctx context.Context, stop <-chan struct{}) {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-stop:
			// Bounded: what cannot be requested now stays in unacked for the restore.
			final, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := c.settle(final); err != nil {
				c.opts.Logger.Warn("celery requests at stop failed; left for the restore", "queue", c.opts.Queue, "err", err)
			}
			return
		case <-c.pend.wake:
		case <-time.After(time.Second):
		}
		if err := c.settle(ctx); err != nil {
			c.opts.Logger.Warn("celery requests failed; retrying", "queue", c.opts.Queue, "err", err)
			select {
			case <-stop:
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// RunOnce runs one whole pass synchronously: restore due deliveries, take a batch
// (waiting up to wait for one), and request and ack everything taken. It returns how
// many messages it took, oversized ones included.
func (c *CeleryConsumer) RunOnce(ctx context.Context, wait time.Duration) (int, error) {
	c.housekeep(ctx)
	deadline := time.Now().Add(wait)
	var n int
	var err error
	for {
		n, err = c.intake(ctx)
		if n > 0 || err != nil || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(min(50*time.Millisecond, time.Until(deadline))):
		}
	}
	if serr := c.settle(ctx); serr != nil {
		err = errors.Join(err, serr)
	}
	return n, err
}

// housekeep restores due deliveries every RestoreInterval and reads the dead-letter
// list's length for its gauge.
func (c *CeleryConsumer) housekeep(ctx context.Context) {
	// The restore runs every RestoreInterval of real time; what is overdue is judged on
	// the clock the deliveries were stamped by.
	wallNow := time.Now()
	if wallNow.Sub(c.lastRestore) < c.opts.RestoreInterval {
		return
	}
	c.lastRestore = wallNow
	due := c.opts.Clock.Now().Add(-c.opts.VisibilityTimeout)
	n, err := c.broker.RestoreVisible(ctx, c.opts.Queue, c.tagPrefix, due, 1000)
	if err != nil {
		c.opts.Logger.Warn("restoring unacked celery messages failed", "queue", c.opts.Queue, "err", err)
	}
	if n > 0 {
		c.m.restored.Add(float64(n))
		c.opts.Logger.Info("restored unacked celery messages of a stopped consumer", "queue", c.opts.Queue, "messages", n)
	}
	c.watchDeadLetters(ctx)
}

func (c *CeleryConsumer) watchDeadLetters(ctx context.Context) {
	if n, err := c.rdb.LLen(ctx, c.opts.KeyPrefix+c.opts.DeadLetter).Result(); err == nil {
		c.m.deadLetterLen.Set(float64(n))
	}
}

// intake takes one batch: deliver, decode each message, dead-letter the refused ones,
// and add the rest to the pending set. It returns how many messages it took.
func (c *CeleryConsumer) intake(ctx context.Context) (int, error) {
	now := c.opts.Clock.Now()
	prefix := fmt.Sprintf("%s%s.%d:", c.tagPrefix, c.proc, c.seq.Add(1))
	d, err := c.broker.Deliver(ctx, kombu.DeliverOptions{
		Queue: c.opts.Queue, Max: c.batch, Budget: c.opts.PassBytes, MaxMessage: c.opts.MaxMessageBytes,
		DeadLetter: c.opts.DeadLetter, TagPrefix: prefix, Now: now,
	})
	if err != nil {
		return 0, err
	}
	taken := len(d.Messages) + d.Oversized
	c.m.readBytes.Add(float64(d.Bytes))
	if d.Bytes > c.peakPassBytes.Load() {
		c.peakPassBytes.Store(d.Bytes)
	}
	if d.Oversized > 0 {
		c.m.dead.WithLabelValues(string(kombu.ReasonOversized)).Add(float64(d.Oversized))
		c.m.messages.WithLabelValues("dead_lettered").Add(float64(d.Oversized))
		c.opts.Logger.Warn("oversized celery messages dead-lettered unread", "queue", c.opts.Queue,
			"messages", d.Oversized, "bytes", d.OversizedBytes, "limit", c.opts.MaxMessageBytes)
	}
	c.adapt(taken, d.Bytes)

	var letters []kombu.Letter
	byTeam := make(map[int64][]string)
	for i := range d.Messages {
		msg := &d.Messages[i]
		team, err := c.decode(msg.Raw)
		if err != nil {
			letters = append(letters, kombu.Letter{Tag: msg.Tag, Raw: msg.Raw, Reason: kombu.ReasonOf(err), Err: err.Error()})
			continue
		}
		byTeam[team] = append(byTeam[team], msg.Tag)
		msg.Raw = nil // only the tag is kept from here on
	}
	if len(letters) > 0 {
		moved, err := c.broker.DeadLetter(ctx, c.opts.DeadLetter, c.opts.Queue, now, letters)
		if err != nil {
			// Still in unacked: the restore brings them back and they are refused again.
			return taken, err
		}
		for _, l := range letters {
			c.m.dead.WithLabelValues(string(l.Reason)).Inc()
			c.opts.Logger.Warn("celery message dead-lettered", "queue", c.opts.Queue, "reason", string(l.Reason), "err", l.Err)
		}
		c.m.messages.WithLabelValues("dead_lettered").Add(float64(moved))
	}
	if d.Oversized > 0 || len(letters) > 0 {
		c.watchDeadLetters(ctx)
	}
	c.pend.add(byTeam)
	c.m.pending.Set(float64(c.pend.size()))
	return taken, nil
}

// adapt scales the batch to the drain rate: a full pass doubles it, a pass that
// found the queue nearly empty halves it.
func (c *CeleryConsumer) adapt(taken int, bytes int64) {
	switch {
	case taken >= c.batch && bytes < c.opts.PassBytes:
		c.batch = min(2*c.batch, c.opts.MaxBatch)
	case taken < c.batch/4:
		c.batch = max(c.batch/2, c.opts.Batch)
	}
	c.m.batch.Set(float64(c.batch))
}

// decode returns the team of one of our tasks, or why the message is refused.
func (c *CeleryConsumer) decode(raw []byte) (int64, error) {
	t, err := kombu.Decode(raw, c.arg)
	if t.Name != "" && !c.ours(t.Name) {
		return 0, &kombu.Error{Reason: kombu.ReasonUnknownTask, Err: fmt.Errorf("task %s is not a cache-update task", t.Name)}
	}
	if err != nil {
		return 0, err
	}
	if t.TeamErr != nil {
		return 0, t.TeamErr
	}
	return t.Team, nil
}

func (c *CeleryConsumer) ours(task string) bool {
	short := task[strings.LastIndexByte(task, '.')+1:]
	for _, t := range c.opts.Tasks {
		if t == task || t[strings.LastIndexByte(t, '.')+1:] == short {
			return true
		}
	}
	return false
}

// settle requests a rebuild for every pending team (one request per team, however
// many messages name it), makes the requests durable (Flush), and acks each message
// whose request succeeded. Teams whose request failed stay pending.
func (c *CeleryConsumer) settle(ctx context.Context) error {
	round := c.pend.take()
	if len(round) == 0 {
		return nil
	}
	type outcome struct {
		team int64
		err  error
	}
	teams := make(chan int64)
	results := make(chan outcome, len(round))
	var wg sync.WaitGroup
	for range min(c.opts.RequestWorkers, len(round)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for team := range teams {
				_, err := c.req.Request(ctx, team, "celery")
				results <- outcome{team, err}
			}
		}()
	}
	for team := range round {
		teams <- team
	}
	close(teams)
	wg.Wait()
	close(results)

	var errs error
	var ack []string
	failed := map[int64][]string{}
	var unknown, requested int
	for r := range results {
		tags := round[r.team]
		switch {
		case r.err == nil:
			ack = append(ack, tags...)
			requested += len(tags)
		case errors.Is(r.err, ErrUnknownTeam):
			// A team the flag database does not hold: the task would do nothing.
			c.opts.Logger.Warn("celery tasks for unknown team acked without a build", "team", r.team, "messages", len(tags))
			ack = append(ack, tags...)
			unknown += len(tags)
		default:
			failed[r.team] = tags
			errs = errors.Join(errs, fmt.Errorf("request team %d: %w", r.team, r.err))
		}
	}
	if f, ok := c.req.(Flusher); ok && len(ack) > 0 {
		// Requests answered from memory become durable here, before the ack.
		if err := f.Flush(ctx); err != nil {
			c.pend.add(round)
			c.m.pending.Set(float64(c.pend.size()))
			return fmt.Errorf("flush requests: %w", err)
		}
	}
	if err := c.broker.Ack(ctx, ack); err != nil {
		// Requested but not acked: the restore redelivers them, which costs at most a
		// build each and loses nothing.
		errs = errors.Join(errs, err)
	} else {
		c.m.messages.WithLabelValues("requested").Add(float64(requested))
		c.m.messages.WithLabelValues("unknown_team").Add(float64(unknown))
	}
	c.pend.add(failed)
	c.m.pending.Set(float64(c.pend.size()))
	return errs
}

// pendingSet holds the delivery tags of valid messages not yet acked, by team. Intake
// adds to it without waiting for the database; settle takes it whole, so every round
// asks once per team however many batches named the team meanwhile.
type pendingSet struct {
	mu    sync.Mutex
	teams map[int64][]string
	n     int
	wake  chan struct{} // intake added work
	space chan struct{} // settle made room
}

func newPendingSet() pendingSet {
	return pendingSet{teams: map[int64][]string{}, wake: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func (p *pendingSet) add(byTeam map[int64][]string) {
	if len(byTeam) == 0 {
		return
	}
	p.mu.Lock()
	for team, tags := range byTeam {
		p.teams[team] = append(p.teams[team], tags...)
		p.n += len(tags)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pendingSet) take() map[int64][]string {
	p.mu.Lock()
	out := p.teams
	p.teams = map[int64][]string{}
	p.n = 0
	p.mu.Unlock()
	select {
	case p.space <- struct{}{}:
	default:
	}
	return out
}

func (p *pendingSet) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// waitSpace waits until fewer than limit messages are pending; false when ctx ended.
func (p *pendingSet) waitSpace(ctx context.Context, limit int) bool {
	for p.size() >= limit {
		select {
		case <-ctx.Done():
			return false
		case <-p.space:
		case <-time.After(100 * time.Millisecond):
		}
	}
	return ctx.Err() == nil
}
