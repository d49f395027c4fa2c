-- Replicas of flagwarden sharing this state database, so the API can say which one
-- leads and when each was last seen.
CREATE TABLE flagwarden_replicas (
    id          text PRIMARY KEY,
    hostname    text NOT NULL,
    version     text NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    is_leader   boolean NOT NULL DEFAULT false
);
