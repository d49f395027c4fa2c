// Package leader elects one replica among those sharing a state database to run the
// leader-only services (detectors, paging, sweeps). The leader holds a Postgres session
// advisory lock on a dedicated connection; when that connection dies the server drops
// the lock and another replica takes it on its next try.
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/service"
)

// Options configures an Elector.
type Options struct {
	// ConnString is the state database URL.
	ConnString string
	// LockID is the advisory lock key shared by the replicas of one deployment.
	LockID int64
	// RetryInterval is how often a follower tries the lock and the leader checks its
	// connection. The worst-case overlap of two leaders is one interval.
	RetryInterval time.Duration
	// Services run only while this replica leads, started in order, stopped in reverse.
	Services []service.Service
	// Logger receives leadership changes.
	Logger *slog.Logger
	// Registerer receives the leader metrics.
	Registerer prometheus.Registerer
}

// Elector campaigns for leadership and runs the leader-only services while it leads.
// It implements service.Service.
type Elector struct {
	opts     Options
	logger   *slog.Logger
	isLeader prometheus.Gauge
	changes  prometheus.Counter

	mu      sync.Mutex
	leading bool
	group   *service.Group
	// svc owns the campaign goroutine's start and stop.
	svc *service.Func
}

// New returns an elector; it does nothing until Start.
func New(opts Options) (*Elector, error) {
	if opts.RetryInterval <= 0 {
		return nil, fmt.Errorf("leader: retry interval must be positive")
	}
	f := promauto.With(opts.Registerer)
	e := &Elector{
		opts:   opts,
		logger: opts.Logger.With("component", "leader"),
		isLeader: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_leader_is_leader",
			Help: "1 while this replica holds the leader lock and runs the leader-only services.",
		}),
		changes: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_leader_changes_total",
			Help: "Times this replica gained or lost leadership.",
		}),
	}
	e.svc = service.NewFunc("leader", opts.Logger, e.campaign)
	return e, nil
}

// Name implements service.Service.
func (e *Elector) Name() string { return "leader" }

// IsLeader reports whether this replica leads now.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Start implements service.Service: it returns at once and campaigns in the background.
func (e *Elector) Start(ctx context.Context) error { return e.svc.Start(ctx) }

// Stop implements service.Service: it stops the leader-only services and releases the
// lock by closing its connection.
func (e *Elector) Stop(ctx context.Context) error { return e.svc.Stop(ctx) }

func (e *Elector) campaign(ctx context.Context) error {
	var conn *pgx.Conn
	defer func() {
		e.resign()
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(e.opts.RetryInterval)
	defer tick.Stop()
	for {
		var err error
		conn, err = e.step(ctx, conn)
		if err != nil {
			e.logger.Warn("leader lock connection lost", "err", err)
			e.resign()
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// step makes one attempt: connect if needed, then either check the held lock's
// connection or try to take the lock.
func (e *Elector) step(ctx context.Context, conn *pgx.Conn) (*pgx.Conn, error) {
	stepCtx, cancel := context.WithTimeout(ctx, e.opts.RetryInterval)
	defer cancel()
	if conn == nil {
		c, err := pgx.Connect(stepCtx, e.opts.ConnString)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		conn = c
	}
	if e.IsLeader() {
		if err := conn.Ping(stepCtx); err != nil {
			return conn, fmt.Errorf("ping: %w", err)
		}
		return conn, nil
	}
	var got bool
	if err := conn.QueryRow(stepCtx, `SELECT pg_try_advisory_lock($1)`, e.opts.LockID).Scan(&got); err != nil {
		return conn, fmt.Errorf("try lock: %w", err)
	}
	if got {
		e.lead(ctx)
	}
	return conn, nil
}

func (e *Elector) lead(ctx context.Context) {
	g := service.NewGroup(e.logger)
	if err := g.Start(ctx, e.opts.Services...); err != nil {
		// Keep the lock: a service that cannot start on the leader would not start on a
		// follower either, and flapping the lock helps no one. Retry on the next step.
		e.logger.Error("leader-only services failed to start", "err", err)
		return
	}
	e.mu.Lock()
	e.leading, e.group = true, g
	e.mu.Unlock()
	e.isLeader.Set(1)
	e.changes.Inc()
	e.logger.Info("became leader", "lock_id", e.opts.LockID)
}

func (e *Elector) resign() {
	e.mu.Lock()
	leading, g := e.leading, e.group
	e.leading, e.group = false, nil
	e.mu.Unlock()
	if !leading {
		return
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Stop(stopCtx); err != nil {
		e.logger.Error("stopping leader-only services", "err", err)
	}
	e.isLeader.Set(0)
	e.changes.Inc()
	e.logger.Info("resigned leadership")
}
