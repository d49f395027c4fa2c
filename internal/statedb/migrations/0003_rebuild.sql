-- The rebuild engine's own state: per-team quarantine, failure streak and run guard,
-- and the recent build results the API shows. River's tables come from its own
-- migrations (rivermigrate).
CREATE TABLE flagwarden_rebuild_teams (
    team_id              bigint PRIMARY KEY,
    quarantined          boolean NOT NULL DEFAULT false,
    quarantine_reason    text NOT NULL DEFAULT '',
    quarantine_auto      boolean NOT NULL DEFAULT false,
    quarantined_at       timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    -- running_since guards against two builds of one team at once; a stale value
    -- (older than the build timeout) belongs to a process that died.
    running_since        timestamptz,
    -- followup records a request that arrived while a build ran.
    followup             boolean NOT NULL DEFAULT false
);
CREATE INDEX flagwarden_rebuild_teams_quarantined ON flagwarden_rebuild_teams (team_id) WHERE quarantined;

CREATE TABLE flagwarden_rebuild_results (
    id          bigserial PRIMARY KEY,
    team_id     bigint NOT NULL,
    finished_at timestamptz NOT NULL,
    ok          boolean NOT NULL,
    result      text NOT NULL
);
CREATE INDEX flagwarden_rebuild_results_team ON flagwarden_rebuild_results (team_id, id DESC);
