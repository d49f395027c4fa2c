package posthog

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
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

// CheckChannel returns an error unless channel can be spliced into LISTEN and the
// trigger SQL as it is: a lower-case SQL identifier.
func CheckChannel(channel string) error {
	if !channelName.MatchString(channel) {
		return fmt.Errorf("notify channel %q must be a lower-case SQL identifier", channel)
	}
	return nil
}

// TriggerSQL returns the trigger SQL for channel, for operators who apply it themselves.
func TriggerSQL(channel string) (string, error) {
	if err := CheckChannel(channel); err != nil {
		return "", err
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

// ListenSQL is the statement that subscribes a connection to channel (checked with
// CheckChannel first).
func ListenSQL(channel string) string { return "LISTEN " + channel }
