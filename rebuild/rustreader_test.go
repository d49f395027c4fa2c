package rebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// rustRead checks a flags.json the way PostHog's Rust service deserialises it
// (posthog_contract.md; flag_models.rs, property_models.rs, cohort_models.rs,
// feature_flag_list.rs): serde's required fields and types, i32 ids, the closed
// operator, property-type and cohort-type enums, serde_json's nesting limit, and
// non-empty dependency stages when there are flags. It is written apart from the
// builder's own checks on purpose: it reads the payload, not the rows.
func rustRead(doc []byte, wrapped bool) error {
	if err := nestingWithin(doc, 127); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if err := numbersInRange(root); err != nil {
		return err
	}
	flags, ok := root["flags"].([]any)
	if !ok {
		return fmt.Errorf("flags: missing or not a list")
	}
	for i, f := range flags {
		if err := rustFlag(f); err != nil {
			return fmt.Errorf("flags[%d]: %w", i, err)
		}
	}
	if !wrapped {
		return nil
	}
	meta, ok := root["evaluation_metadata"].(map[string]any)
	if !ok {
		return fmt.Errorf("evaluation_metadata: missing or not an object")
	}
	stages, ok := meta["dependency_stages"].([]any)
	if !ok {
		return fmt.Errorf("dependency_stages: not a list")
	}
	if len(flags) > 0 && len(stages) == 0 {
		return fmt.Errorf("dependency_stages is empty while there are flags")
	}
	for _, s := range stages {
		if err := i32List(s); err != nil {
			return fmt.Errorf("dependency_stages: %w", err)
		}
	}
	if err := i32List(meta["flags_with_missing_deps"]); err != nil {
		return fmt.Errorf("flags_with_missing_deps: %w", err)
	}
	td, ok := meta["transitive_deps"].(map[string]any)
	if !ok {
		return fmt.Errorf("transitive_deps: not an object")
	}
	for k, v := range td {
		if _, err := strconv.ParseInt(k, 10, 32); err != nil {
			return fmt.Errorf("transitive_deps key %q: %w", k, err)
		}
		if err := i32List(v); err != nil {
			return fmt.Errorf("transitive_deps[%s]: %w", k, err)
		}
	}
	if c, present := root["cohorts"]; present && c != nil {
		cs, ok := c.([]any)
		if !ok {
			return fmt.Errorf("cohorts: not a list")
		}
		for i, c := range cs {
			if err := rustCohort(c); err != nil {
				return fmt.Errorf("cohorts[%d]: %w", i, err)
			}
		}
	}
	return nil
}

// nestingWithin is serde_json's recursion limit: 128 nested containers fail.
func nestingWithin(doc []byte, limit int) error {
	depth := 0
	inString, escaped := false, false
	for _, c := range doc {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			if depth > limit {
				return fmt.Errorf("recursion limit exceeded")
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// numbersInRange: serde_json refuses a number beyond a float64 anywhere.
func numbersInRange(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			if err := numbersInRange(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := numbersInRange(e); err != nil {
				return err
			}
		}
	case json.Number:
		return f64(x)
	}
	return nil
}

func field(m map[string]any, k string) (any, bool) {
	v, ok := m[k]
	return v, ok && v != nil
}

func i32(v any) error {
	n, ok := v.(json.Number)
	if !ok {
		return fmt.Errorf("%v is not a number", v)
	}
	if _, err := strconv.ParseInt(string(n), 10, 32); err != nil {
		return fmt.Errorf("%s is not an i32", n)
	}
	return nil
}

func optI32Field(m map[string]any, k string) error {
	if v, ok := field(m, k); ok {
		if err := i32(v); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

func i32List(v any) error {
	l, ok := v.([]any)
	if !ok {
		return fmt.Errorf("not a list")
	}
	for _, x := range l {
		if err := i32(x); err != nil {
			return err
		}
	}
	return nil
}

func f64(v any) error {
	n, ok := v.(json.Number)
	if !ok {
		return fmt.Errorf("%v is not a number", v)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return fmt.Errorf("%s is out of range", n)
	}
	return nil
}

func optType[T any](m map[string]any, k string) error {
	if v, ok := field(m, k); ok {
		if _, ok := v.(T); !ok {
			return fmt.Errorf("%s: %v has the wrong type", k, v)
		}
	}
	return nil
}

func rustFlag(v any) error {
	f, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("not an object")
	}
	for _, k := range []string{"id", "team_id"} {
		if err := i32(f[k]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	if _, ok := f["key"].(string); !ok {
		return fmt.Errorf("key: missing or not a string")
	}
	for _, err := range []error{optType[string](f, "name"), optType[bool](f, "deleted"), optType[bool](f, "active"),
		optType[bool](f, "ensure_experience_continuity"), optI32Field(f, "version"), optType[string](f, "evaluation_runtime"),
		optType[string](f, "bucketing_identifier"), optType[bool](f, "has_experiment")} {
		if err != nil {
			return err
		}
	}
	if tags, ok := field(f, "evaluation_contexts"); ok {
		l, ok := tags.([]any)
		if !ok {
			return fmt.Errorf("evaluation_contexts: not a list")
		}
		for _, t := range l {
			if _, ok := t.(string); !ok {
				return fmt.Errorf("evaluation_contexts: %v is not a string", t)
			}
		}
	}
	filters, ok := f["filters"].(map[string]any)
	if !ok {
		return fmt.Errorf("filters: missing or not an object")
	}
	if g, present := filters["groups"]; present {
		if err := rustGroups(g); err != nil {
			return fmt.Errorf("filters.groups: %w", err)
		}
	}
	if g, ok := field(filters, "super_groups"); ok {
		if err := rustGroups(g); err != nil {
			return fmt.Errorf("filters.super_groups: %w", err)
		}
	}
	if m, ok := field(filters, "multivariate"); ok {
		mv, ok := m.(map[string]any)
		if !ok {
			return fmt.Errorf("multivariate: not an object")
		}
		vs, ok := mv["variants"].([]any)
		if !ok {
			return fmt.Errorf("multivariate.variants: not a list")
		}
		for _, v := range vs {
			vm, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("variant: not an object")
			}
			if _, ok := vm["key"].(string); !ok {
				return fmt.Errorf("variant.key: not a string")
			}
			if err := optType[string](vm, "name"); err != nil {
				return err
			}
			if err := f64(vm["rollout_percentage"]); err != nil {
				return fmt.Errorf("variant.rollout_percentage: %w", err)
			}
		}
	}
	if err := optI32Field(filters, "aggregation_group_type_index"); err != nil {
		return err
	}
	if err := optType[bool](filters, "feature_enrollment"); err != nil {
		return err
	}
	if h, ok := field(filters, "holdout"); ok {
		hm, ok := h.(map[string]any)
		if !ok {
			return fmt.Errorf("holdout: not an object")
		}
		n, ok := hm["id"].(json.Number)
		if _, err := strconv.ParseInt(string(n), 10, 64); !ok || err != nil {
			return fmt.Errorf("holdout.id: not an i64")
		}
		if err := f64(hm["exclusion_percentage"]); err != nil {
			return fmt.Errorf("holdout.exclusion_percentage: %w", err)
		}
	}
	return nil
}

var (
	testOperators = map[string]bool{"exact": true, "is_not": true, "icontains": true, "not_icontains": true,
		"icontains_multi": true, "not_icontains_multi": true, "regex": true, "not_regex": true, "gt": true, "lt": true,
		"gte": true, "lte": true, "semver_gt": true, "semver_gte": true, "semver_lt": true, "semver_lte": true,
		"semver_eq": true, "semver_neq": true, "semver_tilde": true, "semver_caret": true, "semver_wildcard": true,
		"is_set": true, "is_not_set": true, "is_date_exact": true, "is_date_after": true, "is_date_before": true,
		"in": true, "not_in": true, "flag_evaluates_to": true}
	testPropertyTypes = map[string]bool{"person": true, "cohort": true, "group": true, "flag": true}
	testCohortTypes   = map[string]bool{"static": true, "person_property": true, "behavioral": true, "realtime": true, "analytical": true}
)

func rustGroups(v any) error {
	l, ok := v.([]any)
	if !ok {
		return fmt.Errorf("not a list")
	}
	for i, g := range l {
		gm, ok := g.(map[string]any)
		if !ok {
			return fmt.Errorf("[%d]: not an object", i)
		}
		if p, ok := field(gm, "properties"); ok {
			pl, ok := p.([]any)
			if !ok {
				return fmt.Errorf("[%d].properties: not a list", i)
			}
			for j, prop := range pl {
				if err := rustProperty(prop); err != nil {
					return fmt.Errorf("[%d].properties[%d]: %w", i, j, err)
				}
			}
		}
		if r, ok := field(gm, "rollout_percentage"); ok {
			if err := f64(r); err != nil {
				return fmt.Errorf("[%d].rollout_percentage: %w", i, err)
			}
		}
		if err := optType[string](gm, "variant"); err != nil {
			return err
		}
		if err := optI32Field(gm, "aggregation_group_type_index"); err != nil {
			return err
		}
	}
	return nil
}

func rustProperty(v any) error {
	p, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("not an object")
	}
	if _, ok := p["key"].(string); !ok {
		return fmt.Errorf("key: missing or not a string")
	}
	t, ok := p["type"].(string)
	if !ok || !testPropertyTypes[t] {
		return fmt.Errorf("type %v: missing or unknown", p["type"])
	}
	if op, ok := field(p, "operator"); ok {
		if s, ok := op.(string); !ok || !testOperators[s] {
			return fmt.Errorf("operator %v: unknown", op)
		}
	}
	if err := optType[bool](p, "negation"); err != nil {
		return err
	}
	return optI32Field(p, "group_type_index")
}

func rustCohort(v any) error {
	c, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("not an object")
	}
	for _, k := range []string{"id", "team_id", "errors_calculating"} {
		if err := i32(c[k]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	for _, k := range []string{"deleted", "is_calculating", "is_static"} {
		if _, ok := c[k].(bool); !ok {
			return fmt.Errorf("%s: missing or not a boolean", k)
		}
	}
	if _, present := c["groups"]; !present {
		return fmt.Errorf("groups: missing")
	}
	for _, k := range []string{"version", "pending_version", "count", "created_by_id"} {
		if err := optI32Field(c, k); err != nil {
			return err
		}
	}
	if err := optType[string](c, "name"); err != nil {
		return err
	}
	if ct, ok := field(c, "cohort_type"); ok {
		if s, ok := ct.(string); !ok || !testCohortTypes[s] {
			return fmt.Errorf("cohort_type %v: unknown", ct)
		}
	}
	return nil
}

// TestRustReaderAcceptsEveryTeam builds every team of a seeded database that holds
// flag dependencies, static, nested and legacy cohorts, encrypted-payload and survey
// flags, experiments, tags, a team without flags, the bad rows and the hostile ones
// (properties without a type, unknown operators, ids beyond i32, deep nesting, huge
// numbers, dependency cycles, unknown cohort types), and checks that the Rust reader's
// contract accepts each team's flags.json.
func TestRustReaderAcceptsEveryTeam(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: 120, Seed: 21, GiantFlags: 1500, BadData: true, HostileData: true})
	require.NoError(t, err)
	require.Len(t, res.HostileTeams, len(seed.HostileKinds()))
	src := NewPGSource(pool, nil)
	rows, err := pool.Query(ctx, `SELECT id FROM posthog_team ORDER BY id`)
	require.NoError(t, err)
	var teams []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		teams = append(teams, id)
	}
	require.NoError(t, rows.Err())
	for _, c := range Contracts() {
		b := NewBuilder(BuilderOptions{Contract: c})
		withFlags := 0
		for _, team := range teams {
			var sink BufferSink
			st, err := b.Build(ctx, src, team, &sink)
			require.NoError(t, err, "team %d", team)
			require.NoError(t, rustRead(sink.Flags.Bytes(), c.flagsWrapped()), "contract %s team %d (%s)", c, team, res.HostileTeams[team])
			require.True(t, json.Valid(sink.Definitions.Bytes()), "team %d definitions", team)
			if st.Flags > 0 {
				withFlags++
			}
		}
		require.Greater(t, withFlags, 10)
	}
}

// TestRustReaderRefusesWhatPostHogWrites is the other half: the rows the hostile
// teams hold, printed as PostHog prints them, fail the Rust reader's contract, so the
// checks above are not vacuous.
func TestRustReaderRefusesWhatPostHogWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: 40, Seed: 22, HostileData: true})
	require.NoError(t, err)
	var teams []int64
	var kinds []string
	for id, kind := range res.HostileTeams {
		teams = append(teams, id)
		kinds = append(kinds, kind)
	}
	got := posthogPayloads(t, url, NewestContract, teams)
	for i, kind := range kinds {
		err := rustRead([]byte(got[i][0]), true)
		if kind == seed.HostileFlagCycle {
			require.NoError(t, err, "a cycle among some flags is readable (they are reported as missing dependencies)")
			continue
		}
		require.Error(t, err, "PostHog's own payload for a team with %s", kind)
	}
}
