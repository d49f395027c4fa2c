package rebuild

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/service"
)

// Listener turns NOTIFY from the triggers into rebuild requests. It holds one
// connection, reconnecting with backoff when it drops.
type Listener struct {
	pool    *pgxpool.Pool
	req     Requester
	channel string
	logger  *slog.Logger

	ready chan struct{}
	// svc owns the listening goroutine's start and stop.
	svc *service.Func
}

// NewListener returns a listener on channel.
func NewListener(pool *pgxpool.Pool, req Requester, channel string, logger *slog.Logger) (*Listener, error) {
	if err := posthog.CheckChannel(channel); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{pool: pool, req: req, channel: channel, logger: logger, ready: make(chan struct{})}
	l.svc = service.NewFunc(l.Name(), logger, l.run)
	return l, nil
}

// Name implements service.Service.
func (l *Listener) Name() string { return "rebuild-notify-listener" }

// Ready is closed once the first LISTEN is in place.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Start listens in the background.
func (l *Listener) Start(ctx context.Context) error { return l.svc.Start(ctx) }

// Stop ends listening; idempotent.
func (l *Listener) Stop(ctx context.Context) error { return l.svc.Stop(ctx) }

// run listens until ctx ends, reconnecting with backoff when the connection drops.
func (l *Listener) run(ctx context.Context) error {
	var once sync.Once
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listen(ctx, func() { once.Do(func() { close(l.ready) }) })
		if ctx.Err() != nil {
			return nil
		}
		l.logger.Warn("notify listener reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

func (l *Listener) listen(ctx context.Context, ready func()) error {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection carries LISTEN state; never hand it back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, posthog.ListenSQL(l.channel)); err != nil {
		return err
	}
	ready()
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		team, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			l.logger.Warn("notify payload is not a team id", "payload", n.Payload)
			continue
		}
		if _, err := l.req.Request(ctx, team, "notify"); err != nil && !errors.Is(err, ErrUnknownTeam) && ctx.Err() == nil {
			l.logger.Warn("rebuild request from notify failed", "team", team, "err", err)
		}
	}
}
