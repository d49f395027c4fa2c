package rebuild

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/service"
)

// triggerSQL makes every change to a team's flags, cohorts, tags or flag tags NOTIFY
// the team id on the channel. Postgres folds identical notifications within one
// transaction, so a bulk edit of one team notifies once.
const triggerSQL = `
CREATE OR REPLACE FUNCTION flagwarden_notify_team_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    row_data record;
    team bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN row_data := OLD; ELSE row_data := NEW; END IF;
    IF TG_TABLE_NAME = 'posthog_featureflagevaluationtag' THEN
        SELECT f.team_id INTO team FROM posthog_featureflag f WHERE f.id = row_data.feature_flag_id;
    ELSE
        team := row_data.team_id;
    END IF;
    IF team IS NOT NULL THEN
        PERFORM pg_notify(TG_ARGV[0], team::text);
    END IF;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE TRIGGER flagwarden_team_change AFTER INSERT OR UPDATE OR DELETE ON posthog_featureflag
    FOR EACH ROW EXECUTE FUNCTION flagwarden_notify_team_change('{{channel}}');
CREATE OR REPLACE TRIGGER flagwarden_team_change AFTER INSERT OR UPDATE OR DELETE ON posthog_cohort
    FOR EACH ROW EXECUTE FUNCTION flagwarden_notify_team_change('{{channel}}');
CREATE OR REPLACE TRIGGER flagwarden_team_change AFTER INSERT OR UPDATE OR DELETE ON posthog_tag
    FOR EACH ROW EXECUTE FUNCTION flagwarden_notify_team_change('{{channel}}');
CREATE OR REPLACE TRIGGER flagwarden_team_change AFTER INSERT OR UPDATE OR DELETE ON posthog_featureflagevaluationtag
    FOR EACH ROW EXECUTE FUNCTION flagwarden_notify_team_change('{{channel}}');
`

var channelName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// TriggerSQL returns the trigger SQL for channel, for operators who apply it themselves.
func TriggerSQL(channel string) (string, error) {
	if !channelName.MatchString(channel) {
		return "", fmt.Errorf("notify channel %q must be a lower-case SQL identifier", channel)
	}
	return strings.ReplaceAll(triggerSQL, "{{channel}}", channel), nil
}

// InstallTriggers installs (or replaces) the change triggers in the flag database.
func InstallTriggers(ctx context.Context, pool *pgxpool.Pool, channel string) error {
	q, err := TriggerSQL(channel)
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, q); err != nil {
		return fmt.Errorf("install change triggers: %w", err)
	}
	return nil
}

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
	if !channelName.MatchString(channel) {
		return nil, fmt.Errorf("notify channel %q must be a lower-case SQL identifier", channel)
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
	if _, err := pc.Exec(ctx, "LISTEN "+l.channel); err != nil {
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
