package posthog

import "strconv"

// The SQL text of a cache build's reads (rebuild's reader runs them in one read-only
// snapshot). Optional columns and tables, which newer PostHog versions added, are
// switched by the reader's probe: an absent one reads as NULL or empty.

// OptionalColumnsSQL lists which of the optional columns exist, as "table.column".
const OptionalColumnsSQL = `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND (table_name, column_name) IN (
			('posthog_survey', 'targeting_flag_id'), ('posthog_survey', 'internal_response_sampling_flag_id'),
			('posthog_experiment', 'feature_flag_id'), ('posthog_featureflag', 'bucketing_identifier'),
			('posthog_featureflag', 'rollout_percentage'), ('posthog_cohort', 'last_backfill_person_properties_at'),
			('posthog_cohort', 'last_backfill_events_at'))`

// GroupTypesSQL reads a project's ($1) group type mapping in index order.
const GroupTypesSQL = `SELECT group_type_index, group_type FROM posthog_grouptypemapping
		WHERE project_id = $1 ORDER BY group_type_index`

// SurveyFlagIDsSQL reads the flags a team's ($1) surveys target; sampling says whether
// posthog_survey has internal_response_sampling_flag_id.
func SurveyFlagIDsSQL(sampling bool) string {
	col := "NULL::integer"
	if sampling {
		col = "internal_response_sampling_flag_id"
	}
	return `SELECT DISTINCT id FROM (
			SELECT unnest(ARRAY[targeting_flag_id, internal_targeting_flag_id, ` + col + `]) AS id
			FROM posthog_survey WHERE team_id = $1) s WHERE id IS NOT NULL`
}

// refsPath selects a flag's condition properties that name a flag or a cohort.
const refsPath = `lax $.groups[*].properties[*] ? (@.type == "flag" || @.type == "cohort")`

// effectiveFilters is get_filters() in SQL when legacy rows are up-converted.
func effectiveFilters(upConvertLegacy bool) string {
	if !upConvertLegacy {
		return "f.filters"
	}
	return `CASE WHEN jsonb_typeof(f.filters) = 'object' AND NOT f.filters ? 'groups'
		THEN jsonb_build_object('groups', jsonb_build_array(jsonb_build_object('properties', COALESCE(f.filters->'properties', '[]'::jsonb))))
		ELSE f.filters END`
}

// FlagReferencesSQL reads each of a team's ($1) flags: its id, its key (only if it
// depends on a flag), active, encrypted, remote, the properties that name a flag or a
// cohort as a JSON array (NULL when there are none: the filters never leave the
// server), deleted, when it last changed (FlagChangedSQL, the only column of a deleted
// flag that matters), and an evaluation tag's name. Every live flag is listed, so that
// its id serves evaluation_metadata too; a live flag with tags comes once per tag (the
// pairs FlagTagsSQL reads, from the same scan of the team's flags), every other flag
// once with a NULL name. With changedAfter, the key and properties columns are those
// of the flags changed after $2 only, the other flags' filters are not read: the build
// knows their references from its previous build.
func FlagReferencesSQL(upConvertLegacy, changedAfter bool) string {
	extract := "NOT f.deleted"
	if changedAfter {
		extract += " AND " + FlagChangedSQL + " > $2"
	}
	eff := effectiveFilters(upConvertLegacy)
	// OFFSET 0 keeps the path query a single evaluation per row, which the outer
	// expressions test.
	return `SELECT id, CASE WHEN refs <> '[]' AND refs @? '$[*] ? (@.type == "flag")' THEN key END,
			active, encrypted, remote, CASE WHEN refs <> '[]' THEN refs END, deleted, changed, tag
		FROM (SELECT f.id, f.key, f.active, COALESCE(f.has_encrypted_payloads, false) AS encrypted,
				COALESCE(f.is_remote_configuration, false) AS remote, f.deleted, ` + FlagChangedSQL + ` AS changed,
				CASE WHEN ` + extract + ` THEN jsonb_path_query_array(` + eff + `, '` + refsPath + `', '{}', true) END AS refs,
				t.name AS tag
			FROM posthog_featureflag f
			LEFT JOIN (posthog_featureflagevaluationtag et JOIN posthog_tag t ON t.id = et.tag_id)
				ON et.feature_flag_id = f.id AND NOT f.deleted
			WHERE f.team_id = $1 OFFSET 0) s`
}

// FlagHeadsSQL reads a team's ($1) live flags by id ($2) or key ($3): id, key, active,
// encrypted, remote.
const FlagHeadsSQL = `SELECT id, key, active, COALESCE(has_encrypted_payloads, false), COALESCE(is_remote_configuration, false)
		FROM posthog_featureflag WHERE team_id = $1 AND NOT deleted AND (id = ANY($2::bigint[]) OR key = ANY($3::text[]))`

// FlagIDsSQL reads a team's ($1) live flag ids in numeric order, or in the order of
// their decimal text when byText.
func FlagIDsSQL(activeOnly, excludeEncrypted, byText bool) string {
	q := `SELECT id FROM posthog_featureflag WHERE team_id = $1 AND NOT deleted`
	if activeOnly {
		q += " AND active"
	}
	if excludeEncrypted {
		q += " AND has_encrypted_payloads IS NOT TRUE"
	}
	if byText {
		return q + ` ORDER BY id::text COLLATE "C"`
	}
	return q + " ORDER BY id"
}

// FlagsSQL reads a team's ($1) live flags in key order with their evaluation tags (a
// JSON array) and whether a live experiment uses them. The flags say which optional
// columns and tables exist; joined leaves the tag and experiment columns NULL and false,
// for a caller that read them with FlagTagsSQL and FlagExperimentsSQL.
func FlagsSQL(bucketing, rollout, experiments, joined bool) string {
	bucketingCol, rolloutCol := "NULL::text", "NULL::integer"
	if bucketing {
		bucketingCol = "f.bucketing_identifier"
	}
	if rollout {
		rolloutCol = "f.rollout_percentage"
	}
	// Evaluation tags (as array_agg(DISTINCT name) would give them) and live
	// experiments are correlated subqueries on the flag's id: an index probe per flag,
	// and the tag aggregate only for flags that have tags. (Merge joins by key had to
	// read every team's flags for the tag and experiment sides.)
	tags := `CASE WHEN EXISTS (SELECT FROM posthog_featureflagevaluationtag et WHERE et.feature_flag_id = f.id)
				THEN (SELECT jsonb_agg(DISTINCT t.name ORDER BY t.name) FROM posthog_featureflagevaluationtag et
					JOIN posthog_tag t ON t.id = et.tag_id WHERE et.feature_flag_id = f.id) END`
	experiment := "false"
	if experiments {
		experiment = `EXISTS (SELECT FROM posthog_experiment e WHERE e.feature_flag_id = f.id AND NOT e.deleted)`
	}
	if joined {
		tags, experiment = "NULL::jsonb", "false"
	}
	return `SELECT f.id, f.key, f.name, f.filters, f.active, f.ensure_experience_continuity,
			f.has_encrypted_payloads, f.is_remote_configuration, f.version, f.evaluation_runtime, ` + bucketingCol + `, ` + rolloutCol + `,
			` + tags + `,
			` + experiment + `
		FROM posthog_featureflag f
		WHERE f.team_id = $1 AND NOT f.deleted
		ORDER BY f.key`
}

// FlagTagsSQL reads the (flag id, tag name) pairs of a team's ($1) live flags, in no
// particular order: the same pairs FlagsSQL's tag column aggregates, from one join on
// the flags' ids (a merge join on the primary key, where FlagsSQL probes per flag).
const FlagTagsSQL = `SELECT f.id, t.name FROM posthog_featureflag f
		JOIN posthog_featureflagevaluationtag et ON et.feature_flag_id = f.id
		JOIN posthog_tag t ON t.id = et.tag_id
		WHERE f.team_id = $1 AND NOT f.deleted`

// TagNamesOrderSQL sorts the distinct tag names among $1 as FlagsSQL's aggregate does
// (ORDER BY the column, in its collation).
const TagNamesOrderSQL = `SELECT DISTINCT t.name FROM posthog_tag t WHERE t.name = ANY($1::text[]) ORDER BY t.name`

// FlagExperimentsSQL reads the ids of a team's ($1) live flags that a live experiment
// uses, as FlagsSQL's experiment column tells them.
const FlagExperimentsSQL = `SELECT DISTINCT f.id FROM posthog_featureflag f
		JOIN posthog_experiment e ON e.feature_flag_id = f.id
		WHERE f.team_id = $1 AND NOT f.deleted AND NOT e.deleted`

// CohortsSQL reads the live cohorts with the given ids ($1) of a team ($2), or of every
// team in a project ($2) when project is set. The flags say which optional columns exist.
func CohortsSQL(project, backfillPersons, backfillEvents bool) string {
	scope := "c.team_id = $2"
	if project {
		scope = "c.team_id IN (SELECT t.id FROM posthog_team t WHERE t.project_id = $2)"
	}
	persons, events := "NULL::timestamptz", "NULL::timestamptz"
	if backfillPersons {
		persons = "c.last_backfill_person_properties_at"
	}
	if backfillEvents {
		events = "c.last_backfill_events_at"
	}
	return `SELECT c.id, c.team_id, c.name, c.description, c.deleted, c.is_static, c.filters, c.query, c.groups,
			c.version, c.pending_version, c.count, c.is_calculating, c.errors_calculating, c.created_by_id, c.cohort_type, ` + persons + `, ` + events + `
		FROM posthog_cohort c WHERE c.id = ANY($1::bigint[]) AND NOT c.deleted AND ` + scope + ` ORDER BY c.id`
}

// CopyFlagsSQL is the COPY of the columns a build reads of a team's live flags, in key
// order: the fastest the database can hand those rows over. teamID is spliced in as a
// number because COPY takes no parameters.
func CopyFlagsSQL(teamID int64) string {
	return `COPY (SELECT f.id, f.key, f.name, f.filters, f.active, f.ensure_experience_continuity,
		f.has_encrypted_payloads, f.is_remote_configuration, f.version, f.evaluation_runtime
		FROM posthog_featureflag f WHERE f.team_id = ` + strconv.FormatInt(teamID, 10) + ` AND NOT f.deleted ORDER BY f.key) TO STDOUT`
}
