-- Findings written by the leader's detector pass, so that every replica's API can read
-- them. One row per occurrence: a finding that resolves and comes back gets a new row;
-- at most one row per finding id is pending or firing at a time.
CREATE TABLE flagwarden_findings (
    seq           bigserial PRIMARY KEY,
    id            text NOT NULL,
    kind          text NOT NULL,
    severity      text NOT NULL,
    subject       text NOT NULL,
    state         text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    labels        jsonb NOT NULL DEFAULT '{}',
    summary       text NOT NULL DEFAULT '',
    description   text NOT NULL DEFAULT '',
    evidence      jsonb NOT NULL DEFAULT '{}',
    active_at     timestamptz NOT NULL,
    fired_at      timestamptz,
    resolved_at   timestamptz,
    runbook_url   text NOT NULL DEFAULT '',
    generator_url text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX flagwarden_findings_active_id ON flagwarden_findings (id) WHERE state <> 'resolved';
CREATE INDEX flagwarden_findings_recent ON flagwarden_findings (active_at DESC, seq DESC);

-- What each detector measured in its last pass, including "insufficient data".
CREATE TABLE flagwarden_detector_status (
    detector    text PRIMARY KEY,
    status      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
