-- The subset of PostHog's feature-flag schema that flagwarden reads: teams, flags,
-- cohorts, group type mappings, evaluation tags, the surveys and experiments that use
-- flags, and the team settings the definitions carry. Column names and types follow
-- PostHog's Django models; columns the flag caches never touch are left out. Columns
-- PostHog added later are added to existing tables too (ALTER … IF NOT EXISTS).
-- Deviation: posthog_featureflag.filters is nullable here (PostHog declares it NOT NULL)
-- so that test data can hold the NULL filters a damaged database may contain.

CREATE TABLE IF NOT EXISTS posthog_team (
    id                      serial PRIMARY KEY,
    project_id              bigint NOT NULL,
    api_token               varchar(200) NOT NULL UNIQUE,
    secret_api_token        varchar NULL,
    secret_api_token_backup varchar NULL,
    name                    varchar(200)
);

CREATE TABLE IF NOT EXISTS posthog_featureflag (
    id                           serial PRIMARY KEY,
    team_id                      integer NOT NULL REFERENCES posthog_team(id) ON DELETE CASCADE,
    key                          varchar(400) NOT NULL,
    name                         text NOT NULL,
    filters                      jsonb NULL,
    rollout_percentage           integer NULL,
    created_by_id                integer NULL,
    created_at                   timestamptz NOT NULL,
    updated_at                   timestamptz NULL,
    deleted                      boolean NOT NULL DEFAULT false,
    active                       boolean NOT NULL DEFAULT true,
    version                      integer NULL DEFAULT 1,
    last_modified_by_id          integer NULL,
    rollback_conditions          jsonb NULL,
    performed_rollback           boolean NULL,
    ensure_experience_continuity boolean NULL DEFAULT false,
    usage_dashboard_id           integer NULL,
    has_enriched_analytics       boolean NULL,
    is_remote_configuration      boolean NULL DEFAULT false,
    has_encrypted_payloads       boolean NULL DEFAULT false,
    evaluation_runtime           varchar(10) NULL DEFAULT 'all',
    bucketing_identifier         varchar(50) NULL DEFAULT 'distinct_id',
    CONSTRAINT "unique key for team" UNIQUE (team_id, key)
);
ALTER TABLE posthog_featureflag ADD COLUMN IF NOT EXISTS bucketing_identifier varchar(50) NULL DEFAULT 'distinct_id';

CREATE TABLE IF NOT EXISTS posthog_cohort (
    id                 serial PRIMARY KEY,
    team_id            integer NOT NULL REFERENCES posthog_team(id) ON DELETE CASCADE,
    name               varchar(400) NULL,
    description        varchar(1000) NOT NULL DEFAULT '',
    deleted            boolean NOT NULL DEFAULT false,
    filters            jsonb NULL,
    query              jsonb NULL,
    groups             jsonb NOT NULL DEFAULT '[]',
    is_static          boolean NOT NULL DEFAULT false,
    version            integer NULL,
    pending_version    integer NULL,
    count              integer NULL,
    is_calculating     boolean NOT NULL DEFAULT false,
    last_calculation   timestamptz NULL,
    errors_calculating integer NOT NULL DEFAULT 0,
    last_error_at      timestamptz NULL,
    cohort_type        varchar(20) NULL,
    created_by_id      integer NULL,
    created_at         timestamptz NULL,
    last_backfill_person_properties_at timestamptz NULL,
    last_backfill_events_at            timestamptz NULL
);
CREATE INDEX IF NOT EXISTS posthog_cohort_team_id ON posthog_cohort (team_id);
ALTER TABLE posthog_cohort ADD COLUMN IF NOT EXISTS last_backfill_person_properties_at timestamptz NULL;
ALTER TABLE posthog_cohort ADD COLUMN IF NOT EXISTS last_backfill_events_at timestamptz NULL;

CREATE TABLE IF NOT EXISTS posthog_grouptypemapping (
    id                  serial PRIMARY KEY,
    team_id             integer NOT NULL,
    project_id          bigint NOT NULL,
    group_type          varchar(400) NOT NULL,
    group_type_index    integer NOT NULL CHECK (group_type_index <= 5),
    name_singular       varchar(400) NULL,
    name_plural         varchar(400) NULL,
    default_columns     text[] NULL,
    detail_dashboard_id integer NULL,
    created_at          timestamptz NULL,
    UNIQUE (project_id, group_type),
    UNIQUE (project_id, group_type_index)
);

CREATE TABLE IF NOT EXISTS posthog_tag (
    id      uuid PRIMARY KEY,
    name    varchar(255) NOT NULL,
    team_id integer NOT NULL,
    UNIQUE (name, team_id)
);

CREATE TABLE IF NOT EXISTS posthog_featureflagevaluationtag (
    id              serial PRIMARY KEY,
    feature_flag_id integer NOT NULL REFERENCES posthog_featureflag(id) ON DELETE CASCADE,
    tag_id          uuid NOT NULL REFERENCES posthog_tag(id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL,
    UNIQUE (feature_flag_id, tag_id)
);

-- Surveys own flags (targeting, internal targeting, response sampling); the
-- definitions leave those flags out.
CREATE TABLE IF NOT EXISTS posthog_survey (
    id                                 uuid PRIMARY KEY,
    team_id                            integer NOT NULL REFERENCES posthog_team(id) ON DELETE CASCADE,
    name                               varchar(400) NOT NULL,
    targeting_flag_id                  integer NULL REFERENCES posthog_featureflag(id) ON DELETE SET NULL,
    internal_targeting_flag_id         integer NULL REFERENCES posthog_featureflag(id) ON DELETE SET NULL,
    internal_response_sampling_flag_id integer NULL REFERENCES posthog_featureflag(id) ON DELETE SET NULL,
    created_at                         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS posthog_survey_team_id ON posthog_survey (team_id);

-- Experiments use flags; a flag with a non-deleted one has has_experiment.
CREATE TABLE IF NOT EXISTS posthog_experiment (
    id              serial PRIMARY KEY,
    team_id         integer NOT NULL REFERENCES posthog_team(id) ON DELETE CASCADE,
    name            varchar(400) NOT NULL,
    feature_flag_id integer NOT NULL REFERENCES posthog_featureflag(id) ON DELETE CASCADE,
    deleted         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS posthog_experiment_feature_flag_id ON posthog_experiment (feature_flag_id);

-- TeamFeatureFlagsConfig (app feature_flags): team rollout settings SDKs read from the
-- definitions.
CREATE TABLE IF NOT EXISTS feature_flags_teamfeatureflagsconfig (
    team_id                    integer PRIMARY KEY,
    minimal_flag_called_events boolean NOT NULL DEFAULT false,
    property_matching_version  smallint NOT NULL DEFAULT 1
);
