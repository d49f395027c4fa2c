package simulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/clock"
)

// LiveOptions configure a simulation that runs in real time, for the demo.
type LiveOptions struct {
	// Sim configures the fleet and its traffic. Its Start is ignored: the simulation
	// starts at the wall-clock time NewLive is called, so that every timestamp looks
	// like today. Its Broker is ignored: the messages go to Redis.
	Sim Options
	// Workers configures the simulated Celery worker pods.
	Workers WorkerOptions
	// Speed is simulated seconds per real second (default 60).
	Speed float64
	// Tick is how often, in real time, the simulation catches up with the clock
	// (default 100ms).
	Tick time.Duration
	// Step bounds one simulation step in simulated time (default 1s): each step the
	// producers publish and the workers take messages, so a change waits at most a step.
	Step time.Duration
	// Redis is the broker the Celery messages go to (miniredis in the demo).
	Redis *redis.Client
	// Sep, Steps and Prefix are kombu's transport options (defaults kombu's).
	Sep    string
	Steps  []int
	Prefix string
	// CopyTo lists more queues every task is also routed to, as a second Celery route
	// would: flagwarden's own consumer queue, so that its engine builds from the same
	// traffic while the naive workers take the original queue.
	CopyTo []string
	Logger *slog.Logger
}

// Live runs a Sim against the wall clock: simulated time is the start plus the real
// time elapsed since, times Speed. A goroutine advances it every Tick, publishing real
// Celery messages to Redis and letting the simulated workers consume them from there,
// so that the queue depth a collector reads is what the workers left. Every reader on
// other goroutines goes through Live's lock.
type Live struct {
	opts    LiveOptions
	logger  *slog.Logger
	speed   float64
	wall0   time.Time
	sim0    time.Time
	wallNow func() time.Time
	clk     *clock.Scaled

	mu      sync.Mutex
	sim     *Sim
	workers *CeleryWorkers
	lastErr error

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewLive builds the fleet, declares the queues on Redis and starts the clock at now.
// Nothing advances until Start.
func NewLive(ctx context.Context, o LiveOptions) (*Live, error) {
	if o.Redis == nil {
		return nil, errors.New("live simulation: a Redis client is required")
	}
	if o.Speed < 0 {
		return nil, fmt.Errorf("live simulation: speed must be positive, got %g", o.Speed)
	}
	if o.Speed == 0 {
		o.Speed = 60
	}
	if o.Tick <= 0 {
		o.Tick = 100 * time.Millisecond
	}
	if o.Step <= 0 {
		o.Step = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	now := time.Now().UTC()
	kombu := &Kombu{Store: RedisStore{C: o.Redis}, Sep: o.Sep, Steps: o.Steps, Prefix: o.Prefix}
	so := o.Sim
	so.Start = now
	so.Broker = &teeBroker{Broker: kombu, copyTo: o.CopyTo}
	s, err := New(ctx, so)
	if err != nil {
		return nil, err
	}
	o.Workers.Seed = o.Sim.Seed
	l := &Live{
		opts: o, logger: o.Logger, speed: o.Speed, wall0: now, sim0: now, wallNow: time.Now,
		sim: s, workers: NewCeleryWorkers(o.Workers, now),
	}
	// wallNow is read through l so that tests can drive the clock by hand.
	l.clk = clock.NewScaledFrom(now, now, o.Speed, func() time.Time { return l.wallNow() })
	return l, nil
}

// Clock is the simulated clock: what every component of the demo reads the time from.
func (l *Live) Clock() clock.Clock { return l.clk }

// Now is the simulated time.
func (l *Live) Now() time.Time { return l.clk.Now() }

// FromWall maps a wall-clock time onto the simulated clock.
func (l *Live) FromWall(t time.Time) time.Time { return l.clk.FromWall(t) }

// ToWall maps a simulated time onto the wall clock.
func (l *Live) ToWall(t time.Time) time.Time { return l.clk.ToWall(t) }

// Speed is simulated seconds per real second.
func (l *Live) Speed() float64 { return l.speed }

// Began is the simulated time at which the simulation began.
func (l *Live) Began() time.Time { return l.sim0 }

// Queue is the queue the naive workers consume.
func (l *Live) Queue() string { return l.sim.Opts.Queue }

// TestTeam is the test-automation team's id.
func (l *Live) TestTeam() int64 { return l.sim.Fleet.Test.ID }

// With runs fn with the simulation locked: fn must not keep s or the workers.
func (l *Live) With(fn func(s *Sim, w *CeleryWorkers)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(l.sim, l.workers)
}

// Advance brings the simulation up to the clock now; the driver goroutine calls it
// every Tick and tests may call it directly.
func (l *Live) Advance(ctx context.Context) error {
	target := l.Now()
	var err error
	for {
		// a few steps at a time, so that readers wait for at most a few steps' work.
		l.mu.Lock()
		if !l.sim.Now.Before(target) {
			l.mu.Unlock()
			break
		}
		err = l.sim.Advance(ctx, l.workers, minTime(target, l.sim.Now.Add(8*l.opts.Step)), l.opts.Step)
		l.mu.Unlock()
		if err != nil {
			break
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil && ctx.Err() == nil && (l.lastErr == nil || l.lastErr.Error() != err.Error()) {
		// a broken broker is worth one line, not one per tick.
		l.logger.Warn("simulation step failed", "err", err)
	}
	l.lastErr = err
	return err
}

// Name implements service.Service.
func (l *Live) Name() string { return "simulator" }

// Start starts the driver goroutine. The simulation runs until Stop, not until ctx
// ends, like every other service of the app.
func (l *Live) Start(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(l.opts.Tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = l.Advance(ctx)
			}
		}
	}()
	return nil
}

// Stop stops the driver and waits for it within ctx. It is idempotent.
func (l *Live) Stop(ctx context.Context) error {
	var err error
	l.stopOnce.Do(func() {
		if l.cancel == nil {
			return
		}
		l.cancel()
		select {
		case <-l.done:
		case <-ctx.Done():
			err = fmt.Errorf("stop simulator: %w", ctx.Err())
		}
	})
	return err
}

// teeBroker publishes every task to its own queue and a copy to each of copyTo; the
// consumers read the original queue.
type teeBroker struct {
	Broker
	copyTo []string
}

func (b *teeBroker) Declare(ctx context.Context, queue string) error {
	for _, q := range append([]string{queue}, b.copyTo...) {
		if err := b.Broker.Declare(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func (b *teeBroker) Publish(ctx context.Context, t Task, tag, origin string) error {
	if err := b.Broker.Publish(ctx, t, tag, origin); err != nil {
		return err
	}
	for _, q := range b.copyTo {
		c := t
		c.Queue = q
		if err := b.Broker.Publish(ctx, c, tag+"."+q, origin); err != nil {
			return err
		}
	}
	return nil
}

// Forecast is when, in simulated time since the start, the test-automation team's
// naive build first can exceed a worker's limit (on a worker with the highest
// baseline) and when it exceeds it on every worker: the window in which OOM kills
// begin and then come with every attempt. Zero durations mean never within a month.
func (l *Live) Forecast() (first, every time.Duration) {
	l.mu.Lock()
	t := *l.sim.Fleet.Test
	o, w := l.sim.Opts, l.workers.Opts
	l.mu.Unlock()
	// the first test run is half an interval in, then one every interval.
	at := o.TestRunEvery / 2
	for at < 31*24*time.Hour && (o.FixAt == 0 || at < o.FixAt) {
		need := t.Size(l.sim0).EstimatedNaiveBuildBytes()
		if first == 0 && need+w.BaselineMax > w.Limit {
			first = at
		}
		if need+w.BaselineMin > w.Limit {
			every = at
			break
		}
		t.Flags += int64(o.TestRunFlags)
		t.Cohorts += o.TestRunCohorts
		at += o.TestRunEvery
	}
	return first, every
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
