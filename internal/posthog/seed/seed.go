// Package seed fills a PostHog flag database with a deterministic, realistic fleet:
// heavy-tailed team sizes, referenced and nested cohorts, evaluation tags, and bad or
// hostile rows only when asked, fast enough for millions of flags.
package seed

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/posthog"
)

// Options shape the generated fleet. The same options and Seed always produce the
// same rows (ids are offset by what the tables already hold).
type Options struct {
	// Teams is how many ordinary teams to create. Default 100.
	Teams int
	// Seed makes the data deterministic.
	Seed int64
	// FlagTeamShare is the share of teams that have any flags (PostHog: about 10%).
	// Default 0.3.
	FlagTeamShare float64
	// MinFlags is the smallest flag count of a team with flags (the Pareto scale).
	// Default 2.
	MinFlags int
	// Alpha is the Pareto shape of the flag count; smaller is heavier-tailed. Default 1.1.
	Alpha float64
	// MaxFlags caps an ordinary team's flags. Default 20000 (PostHog's override ceiling).
	MaxFlags int
	// GiantFlags, when positive, adds one more team with exactly this many flags: the
	// account that accumulated test data.
	GiantFlags int
	// GiantName names the giant team. Default "giant".
	GiantName string
	// BadData adds bad rows to three teams: a flag whose filters are a JSON string
	// instead of an object, a flag with NULL filters, and a pair of cohorts that
	// reference each other (a cycle) referenced from a flag.
	BadData bool
	// HostileData adds, one kind per team, rows PostHog's own writer turns into a
	// payload its Rust reader refuses for the whole team: a property without a type, an
	// unknown operator, a group type index beyond 32 bits, filters nested deeper than
	// the reader allows, a number beyond a 64-bit float, plus two flags that depend on
	// each other and a referenced cohort of an unknown cohort_type.
	HostileData bool
	// Progress, if set, is called after each table is loaded.
	Progress func(table string, rows int64)
}

func (o Options) withDefaults() Options {
	o.Teams = cmp.Or(o.Teams, 100)
	if o.FlagTeamShare == 0 {
		o.FlagTeamShare = 0.3
	}
	o.MinFlags = cmp.Or(o.MinFlags, 2)
	if o.Alpha == 0 {
		o.Alpha = 1.1
	}
	o.MaxFlags = cmp.Or(o.MaxFlags, 20000)
	o.GiantName = cmp.Or(o.GiantName, "giant")
	return o
}

func (o Options) validate() error {
	switch {
	case o.Teams < 0:
		return errors.New("seed options: Teams must not be negative")
	case o.FlagTeamShare < 0 || o.FlagTeamShare > 1:
		return fmt.Errorf("seed options: FlagTeamShare must be in 0..1, got %v", o.FlagTeamShare)
	case o.MinFlags < 1:
		return errors.New("seed options: MinFlags must be at least 1")
	case o.Alpha <= 0:
		return errors.New("seed options: Alpha must be positive")
	case o.MaxFlags < o.MinFlags:
		return errors.New("seed options: MaxFlags must be at least MinFlags")
	case o.GiantFlags < 0:
		return errors.New("seed options: GiantFlags must not be negative")
	}
	return nil
}

// Result says what was created.
type Result struct {
	// FirstTeamID and LastTeamID bound the ordinary teams created (inclusive).
	FirstTeamID, LastTeamID int64
	// GiantTeamID is the giant team, 0 without one.
	GiantTeamID int64
	Teams       int64
	Flags       int64
	Cohorts     int64
	// BadTeams are the teams that received bad rows, with what they received.
	BadTeams map[int64]string
	// HostileTeams are the teams that received hostile rows, with their kind.
	HostileTeams map[int64]string
	// EmptyTeamID is an ordinary team without flags (0 when Teams is 0 or every team
	// must have flags).
	EmptyTeamID int64
	Elapsed     time.Duration
}

// Hostile-row kinds, as Result.HostileTeams reports them. Each is flag index 1 of
// its team (the cohort kind: the team's first cohort, which flag 1 references).
const (
	HostileMissingType     = "property without type"
	HostileUnknownOperator = "unknown operator"
	HostileOutOfRange      = "group type index beyond i32"
	HostileDeepNesting     = "filters nested too deep"
	HostileHugeNumber      = "number beyond float64"
	HostileFlagCycle       = "flags depending on each other"
	HostileCohortType      = "unknown cohort type"
)

// HostileKinds lists the hostile kinds in the order teams receive them.
func HostileKinds() []string {
	return []string{HostileMissingType, HostileUnknownOperator, HostileOutOfRange, HostileDeepNesting,
		HostileHugeNumber, HostileFlagCycle, HostileCohortType}
}

// teamPlan is what one team gets; drawn once so that every table's pass agrees.
type teamPlan struct {
	id, firstFlag, firstCohort int64
	flags, cohorts, groupTypes int32
	tags                       int32
	bad, hostile               string
	name                       string
}

// baseTime anchors created_at so that seeded data is identical run to run.
var baseTime = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// Fleet fills the PostHog tables behind pool (created if missing) with a generated
// fleet, loading every table with COPY so that millions of flags take minutes.
func Fleet(ctx context.Context, pool *pgxpool.Pool, opts Options) (Result, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return Result{}, err
	}
	start := time.Now()
	if err := posthog.ApplySchema(ctx, pool); err != nil {
		return Result{}, err
	}
	var maxTeam, maxFlag, maxCohort int64
	err := pool.QueryRow(ctx, `SELECT
		(SELECT COALESCE(max(id),0) FROM posthog_team),
		(SELECT COALESCE(max(id),0) FROM posthog_featureflag),
		(SELECT COALESCE(max(id),0) FROM posthog_cohort)`).Scan(&maxTeam, &maxFlag, &maxCohort)
	if err != nil {
		return Result{}, fmt.Errorf("read id high-water marks: %w", err)
	}

	plans := make([]teamPlan, 0, opts.Teams+1)
	res := Result{BadTeams: map[int64]string{}, HostileTeams: map[int64]string{}}
	nextFlag, nextCohort := maxFlag+1, maxCohort+1
	badKinds := []string{}
	if opts.BadData {
		badKinds = []string{posthog.BadNonObjectFilters, posthog.BadNullFilters, posthog.BadCohortCycle}
	}
	var hostileKinds []string
	if opts.HostileData {
		hostileKinds = HostileKinds()
	}
	for i := 0; i < opts.Teams+boolInt(opts.GiantFlags > 0); i++ {
		id := maxTeam + 1 + int64(i)
		r := teamRand(opts.Seed, id, 0)
		p := teamPlan{id: id, name: "team " + strconv.FormatInt(id, 10)}
		if i == opts.Teams { // the giant
			p.flags = int32(opts.GiantFlags)
			p.name = opts.GiantName
			res.GiantTeamID = id
		} else if r.Float64() < opts.FlagTeamShare && (i != opts.Teams-1 || opts.FlagTeamShare >= 1) { // the last team has no flags, unless every team must
			// Pareto: xm / U^(1/alpha), capped.
			n := float64(opts.MinFlags) / math.Pow(1-r.Float64(), 1/opts.Alpha)
			p.flags = int32(min(n, float64(opts.MaxFlags)))
		}
		if p.flags > 0 {
			// Roughly one cohort per five flags, a few hundred at most for ordinary
			// teams; cohorts are per team, so the giant gets its share too.
			p.cohorts = int32(min(int64(p.flags)/5+1, 2000))
			p.groupTypes = int32(r.IntN(4))
			p.tags = int32(r.IntN(4))
		}
		if i == opts.Teams && p.tags == 0 {
			p.tags = 2 // the giant, which benchmarks build, always has evaluation tags to read
		}
		if len(badKinds) > 0 && p.flags >= 3 && i != opts.Teams {
			p.bad = badKinds[0]
			badKinds = badKinds[1:]
			if p.bad == posthog.BadCohortCycle && p.cohorts < 2 {
				p.cohorts = 2
			}
			res.BadTeams[id] = p.bad
		} else if len(hostileKinds) > 0 && p.flags >= 3 && i != opts.Teams {
			p.hostile = hostileKinds[0]
			hostileKinds = hostileKinds[1:]
			res.HostileTeams[id] = p.hostile
		}
		if i == opts.Teams-1 && p.flags == 0 {
			res.EmptyTeamID = id
		}
		p.firstFlag, p.firstCohort = nextFlag, nextCohort
		nextFlag += int64(p.flags)
		nextCohort += int64(p.cohorts)
		plans = append(plans, p)
		res.Flags += int64(p.flags)
		res.Cohorts += int64(p.cohorts)
	}
	res.Teams = int64(len(plans))
	if opts.Teams > 0 {
		res.FirstTeamID, res.LastTeamID = maxTeam+1, maxTeam+int64(opts.Teams)
	}

	steps := []struct {
		table string
		cols  []string
		src   func() pgx.CopyFromSource
	}{
		{"posthog_team", []string{"id", "project_id", "api_token", "secret_api_token", "name"},
			func() pgx.CopyFromSource { return teamRows(opts, plans) }},
		{"posthog_grouptypemapping", []string{"team_id", "project_id", "group_type", "group_type_index", "name_singular", "name_plural", "created_at"},
			func() pgx.CopyFromSource { return groupTypeRows(plans) }},
		{"posthog_cohort", []string{"id", "team_id", "name", "description", "deleted", "filters", "groups", "is_static", "version", "count", "is_calculating", "errors_calculating", "cohort_type", "created_at", "last_backfill_person_properties_at"},
			func() pgx.CopyFromSource { return cohortRows(opts, plans) }},
		{"posthog_featureflag", []string{"id", "team_id", "key", "name", "filters", "created_at", "updated_at", "deleted", "active", "version", "ensure_experience_continuity", "is_remote_configuration", "has_encrypted_payloads", "evaluation_runtime", "rollout_percentage", "bucketing_identifier"},
			func() pgx.CopyFromSource { return flagRows(opts, plans) }},
		{"posthog_survey", []string{"id", "team_id", "name", "targeting_flag_id", "internal_targeting_flag_id", "internal_response_sampling_flag_id", "created_at"},
			func() pgx.CopyFromSource { return surveyRows(plans) }},
		{"posthog_experiment", []string{"team_id", "name", "feature_flag_id", "deleted", "created_at"},
			func() pgx.CopyFromSource { return experimentRows(plans) }},
		{"feature_flags_teamfeatureflagsconfig", []string{"team_id", "minimal_flag_called_events", "property_matching_version"},
			func() pgx.CopyFromSource { return teamConfigRows(plans) }},
		{"posthog_tag", []string{"id", "name", "team_id"},
			func() pgx.CopyFromSource { return tagRows(opts, plans) }},
		{"posthog_featureflagevaluationtag", []string{"feature_flag_id", "tag_id", "created_at"},
			func() pgx.CopyFromSource { return flagTagRows(opts, plans) }},
	}
	for _, s := range steps {
		n, err := pool.CopyFrom(ctx, pgx.Identifier{s.table}, s.cols, s.src())
		if err != nil {
			return res, fmt.Errorf("copy %s: %w", s.table, err)
		}
		if opts.Progress != nil {
			opts.Progress(s.table, n)
		}
	}
	for _, t := range []string{"posthog_team", "posthog_featureflag", "posthog_cohort", "posthog_grouptypemapping", "posthog_featureflagevaluationtag", "posthog_experiment"} {
		q := fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%s','id'), GREATEST((SELECT COALESCE(max(id),0) FROM %s), 1))`, t, t)
		if _, err := pool.Exec(ctx, q); err != nil {
			return res, fmt.Errorf("advance %s id sequence: %w", t, err)
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE posthog_team, posthog_featureflag, posthog_cohort, posthog_tag, posthog_featureflagevaluationtag,
		posthog_grouptypemapping, posthog_survey, posthog_experiment, feature_flags_teamfeatureflagsconfig`); err != nil {
		return res, fmt.Errorf("analyze seeded tables: %w", err)
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// teamRand is the random stream of one table's pass over one team.
func teamRand(seed, team int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed)^0x9e3779b97f4a7c15, uint64(team)<<4|stream))
}

// genSource adapts a row generator to pgx.CopyFromSource without materialising rows.
type genSource struct {
	next func() ([]any, bool)
	row  []any
}

func (g *genSource) Next() bool {
	var ok bool
	g.row, ok = g.next()
	return ok
}
func (g *genSource) Values() ([]any, error) { return g.row, nil }
func (g *genSource) Err() error             { return nil }

// perTeam walks plans and, for each, up to count(p) rows made by row(p, i).
func perTeam(plans []teamPlan, count func(*teamPlan) int, start func(*teamPlan), row func(p *teamPlan, i int) []any) *genSource {
	ti, i := 0, 0
	return &genSource{next: func() ([]any, bool) {
		for ti < len(plans) {
			p := &plans[ti]
			if i == 0 && start != nil {
				start(p)
			}
			if i < count(p) {
				r := row(p, i)
				i++
				return r, true
			}
			ti, i = ti+1, 0
		}
		return nil, false
	}}
}

func teamRows(opts Options, plans []teamPlan) *genSource {
	return perTeam(plans, func(*teamPlan) int { return 1 }, nil, func(p *teamPlan, _ int) []any {
		tok := tokenHex(opts.Seed, p.id)
		return []any{int32(p.id), p.id, "phc_" + tok, "phs_" + tok, p.name}
	})
}

func tokenHex(seed, id int64) string {
	r := teamRand(seed, id, 15)
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return hex.EncodeToString(b[:]) + strconv.FormatInt(id, 36)
}

var groupTypeNames = []string{"organization", "company", "instance", "project"}

func groupTypeRows(plans []teamPlan) *genSource {
	return perTeam(plans, func(p *teamPlan) int { return int(p.groupTypes) }, nil, func(p *teamPlan, i int) []any {
		n := groupTypeNames[i]
		return []any{int32(p.id), p.id, n, int32(i), n, n + "s", baseTime}
	})
}

// cohortRef is the property that makes a condition depend on a cohort.
func appendCohortRef(b []byte, id int64) []byte {
	b = append(b, `{"key":"id","type":"cohort","value":`...)
	b = strconv.AppendInt(b, id, 10)
	return append(b, `,"negation":false}`...)
}

func cohortRows(opts Options, plans []teamPlan) *genSource {
	var r *rand.Rand
	return perTeam(plans, func(p *teamPlan) int { return int(p.cohorts) },
		func(p *teamPlan) { r = teamRand(opts.Seed, p.id, 1) },
		func(p *teamPlan, i int) []any {
			id := p.firstCohort + int64(i)
			static := r.IntN(10) == 0
			deleted := r.IntN(20) == 0
			legacy := r.IntN(12) == 0
			var filters any
			groups := "[]"
			ctype := cohortType(static)
			switch {
			case p.bad == posthog.BadCohortCycle && i < 2:
				// Cohort 0 -> 1 -> 0.
				b := appendCohortFilters(nil, r, p, i)
				b = appendCohortRef(append(b[:len(b)-len(`]}]}}`)], ','), p.firstCohort+int64(1-i))
				filters, static, deleted, ctype = string(append(b, `]}]}}`...)), false, false, "person_property"
			case p.hostile == HostileCohortType && i == 0:
				filters, static, deleted, ctype = string(appendCohortFilters(nil, r, p, i)), false, false, "mystery"
			case legacy && !static:
				// A cohort still defined by the deprecated groups column.
				groups = legacyGroups[r.IntN(len(legacyGroups))]
			default:
				filters = string(appendCohortFilters(nil, r, p, i))
			}
			var backfill any
			if r.IntN(5) == 0 {
				backfill = baseTime.Add(time.Duration(id) * 1500 * time.Millisecond)
			}
			return []any{int32(id), int32(p.id), "cohort " + strconv.FormatInt(id, 10), "", deleted, filters, groups,
				static, int32(1), int32(r.IntN(50000)), false, int32(0), ctype, baseTime.Add(time.Duration(id) * time.Second), backfill}
		})
}

// legacyGroups are definitions in the deprecated groups column: property lists with
// the old "event" type (or none), an old {key: value} mapping, behavioural groups.
var legacyGroups = []string{
	`[{"properties": [{"key": "plan", "type": "event", "value": "pro"}, {"key": "email", "value": "example.com", "operator": "icontains"}]}]`,
	`[{"action_id": 42, "days": 30, "count": 2, "count_operator": "gte"}, {"properties": {"plan": "team", "seats": 5}}]`,
	`[{"event_id": "$pageview", "days": 14}]`,
}

// appendCohortFilters writes a cohort's filters: an OR of one AND group of person
// properties; cohort 2 of a team and about one in eight others depend on an earlier
// one of the team.
func appendCohortFilters(b []byte, r *rand.Rand, p *teamPlan, i int) []byte {
	b = append(b, `{"properties":{"type":"OR","values":[{"type":"AND","values":[{"key":"plan","type":"person","value":["pro","team"],"operator":"exact"},{"key":"signup_index","type":"person","value":`...)
	b = strconv.AppendInt(b, int64(r.IntN(100000)), 10)
	b = append(b, `,"operator":"gt"}`...)
	if nested := r.IntN(8) == 0; i == 2 || i > 0 && nested {
		b = append(b, ',')
		b = appendCohortRef(b, p.firstCohort+int64(r.IntN(i)))
	}
	return append(b, `]}]}}`...)
}

func cohortType(static bool) string {
	if static {
		return "static"
	}
	return "person_property"
}

func flagKey(i int) string {
	// Zero-padded so that key order is creation order; makes keyset pages predictable.
	return fmt.Sprintf("flag-%07d", i)
}

func flagRows(opts Options, plans []teamPlan) *genSource {
	var r *rand.Rand
	buf := make([]byte, 0, 1024)
	return perTeam(plans, func(p *teamPlan) int { return int(p.flags) },
		func(p *teamPlan) { r = teamRand(opts.Seed, p.id, 2) },
		func(p *teamPlan, i int) []any {
			id := p.firstFlag + int64(i)
			created := baseTime.Add(time.Duration(p.id)*time.Minute + time.Duration(i)*time.Second)
			updated := created.Add(time.Duration(r.IntN(86400)) * time.Second)
			deleted := r.IntN(20) == 0
			active := r.IntN(10) != 0
			remote := r.IntN(50) == 0
			encrypted := remote && r.IntN(2) == 0
			legacy := r.IntN(40) == 0
			var continuity any = r.IntN(8) == 0
			if r.IntN(16) == 0 {
				continuity = nil
			}
			var bucketing any = "distinct_id"
			switch r.IntN(6) {
			case 0:
				bucketing = nil
			case 1:
				bucketing = "device_id"
			}
			var rollout any
			var filters any
			special := p.bad != "" && i == 1 || p.hostile != "" && (i == 1 || i == 2 && p.hostile == HostileFlagCycle)
			switch {
			case p.bad == posthog.BadNonObjectFilters && i == 1:
				filters, deleted = `"{groups: [broken"`, false
			case p.bad == posthog.BadNullFilters && i == 1:
				filters, deleted = nil, false
			case p.bad == posthog.BadCohortCycle && i == 0:
				buf = append(buf[:0], `{"groups":[{"properties":[`...)
				buf = appendCohortRef(buf, p.firstCohort)
				buf = append(buf, `],"rollout_percentage":100,"variant":null}],"multivariate":null,"aggregation_group_type_index":null,"payloads":{}}`...)
				filters, deleted = string(buf), false
			case special && p.hostile != "":
				filters, deleted, active, encrypted = hostileFilters(p, i), false, true, false
			case legacy:
				// A row from before release conditions: properties and the old column.
				buf = append(buf[:0], `{"properties":[{"key":"email","type":"person","value":"user`...)
				buf = strconv.AppendInt(buf, int64(r.IntN(1_000_000)), 10)
				buf = append(buf, `@example.com","operator":"icontains"}]}`...)
				filters, rollout = string(buf), int32(r.IntN(101))
			default:
				buf = flagFilters(buf[:0], r, p, i)
				filters = string(buf)
			}
			if p.hostile == HostileCohortType && i == 0 {
				deleted, active = false, true
			}
			return []any{int32(id), int32(p.id), flagKey(i), "Flag " + strconv.Itoa(i) + " of team " + strconv.FormatInt(p.id, 10),
				filters, created, updated, deleted, active, int32(1 + r.IntN(5)), continuity, remote, encrypted,
				runtimes[r.IntN(len(runtimes))], rollout, bucketing}
		})
}

var runtimes = []string{"all", "all", "all", "server", "client"}

// hostileFilters are flag 1's (and, for a cycle, flag 2's) filters of a hostile team.
func hostileFilters(p *teamPlan, i int) string {
	group := func(prop string) string {
		return `{"groups":[{"properties":[` + prop + `],"rollout_percentage":100,"variant":null}],"payloads":{}}`
	}
	switch p.hostile {
	case HostileMissingType:
		return group(`{"key":"email","value":"a@b.com","operator":"exact"}`)
	case HostileUnknownOperator:
		return group(`{"key":"email","type":"person","value":"a@b.com","operator":"fuzzy_match"}`)
	case HostileOutOfRange:
		return `{"groups":[{"properties":[],"rollout_percentage":100,"aggregation_group_type_index":99999999999}],"payloads":{}}`
	case HostileDeepNesting:
		return `{"groups":[{"properties":[],"rollout_percentage":100}],"payloads":{"true":` + strings.Repeat("[", 130) + strings.Repeat("]", 130) + `}}`
	case HostileHugeNumber:
		return group(`{"key":"seats","type":"person","value":1e400,"operator":"gt"}`)
	case HostileFlagCycle:
		other := p.firstFlag + int64(3-i) // 1 <-> 2
		return group(`{"key":"` + strconv.FormatInt(other, 10) + `","type":"flag","value":true,"operator":"flag_evaluates_to"}`)
	case HostileCohortType:
		return group(string(appendCohortRef(nil, p.firstCohort)))
	}
	return `{"groups":[]}`
}

// flagFilters writes a realistic filters object: one to three condition groups of person
// properties, sometimes a cohort or an earlier flag as a condition, sometimes variants
// and payloads. Flag 2 of every team depends on flag 1 by id, and flag 4 on flag 2 by
// key, so that every team with a few flags has a dependency chain.
func flagFilters(b []byte, r *rand.Rand, p *teamPlan, i int) []byte {
	b = append(b, `{"groups":[`...)
	groups := 1 + r.IntN(3)
	for g := range groups {
		if g > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"properties":[`...)
		props := r.IntN(4)
		for k := range props {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"key":"email","type":"person","value":"user`...)
			b = strconv.AppendInt(b, int64(r.IntN(1_000_000)), 10)
			b = append(b, `@example.com","operator":"icontains"}`...)
		}
		if p.cohorts > 0 && r.IntN(5) == 0 {
			if props > 0 {
				b = append(b, ',')
			}
			b = appendCohortRef(b, p.firstCohort+int64(r.IntN(int(p.cohorts))))
			props++
		}
		dep := ""
		switch {
		case g == 0 && i == 2:
			dep = strconv.FormatInt(p.firstFlag+1, 10)
		case g == 0 && i == 4:
			dep = flagKey(2)
		case i > 0 && r.IntN(400) == 0:
			dep = strconv.FormatInt(p.firstFlag+int64(r.IntN(i)), 10)
		}
		if dep != "" {
			if props > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"key":"`...)
			b = append(b, dep...)
			b = append(b, `","type":"flag","value":true,"operator":"flag_evaluates_to"}`...)
		}
		b = append(b, `],"rollout_percentage":`...)
		b = strconv.AppendInt(b, int64(r.IntN(101)), 10)
		b = append(b, `,"variant":null}`...)
	}
	b = append(b, `],"multivariate":`...)
	if r.IntN(4) == 0 {
		b = append(b, `{"variants":[{"key":"control","name":null,"rollout_percentage":50},{"key":"test","name":null,"rollout_percentage":50}]}`...)
	} else {
		b = append(b, `null`...)
	}
	b = append(b, `,"aggregation_group_type_index":null,"payloads":{`...)
	if r.IntN(6) == 0 {
		b = append(b, `"true":"{\"color\":\"blue\",\"size\":`...)
		b = strconv.AppendInt(b, int64(r.IntN(100)), 10)
		b = append(b, `}"`...)
	}
	return append(b, `}}`...)
}

// surveyRows gives every team with six flags or more a survey owning flag 3 (its
// targeting flag) and flag 5 (its response sampling flag).
func surveyRows(plans []teamPlan) *genSource {
	return perTeam(plans, func(p *teamPlan) int { return boolInt(p.flags >= 6 && p.bad == "" && p.hostile == "") }, nil,
		func(p *teamPlan, _ int) []any {
			return []any{fmt.Sprintf("00000000-0000-4000-9000-%012x", p.id), int32(p.id), "survey of team " + strconv.FormatInt(p.id, 10),
				int32(p.firstFlag + 3), nil, int32(p.firstFlag + 5), baseTime}
		})
}

// experimentRows runs an experiment on flag 0 of every team with two flags or more, and
// a deleted one on flag 6.
func experimentRows(plans []teamPlan) *genSource {
	return perTeam(plans, func(p *teamPlan) int {
		switch {
		case p.flags >= 7:
			return 2
		case p.flags >= 2:
			return 1
		}
		return 0
	}, nil, func(p *teamPlan, i int) []any {
		flag, deleted := p.firstFlag, false
		if i == 1 {
			flag, deleted = p.firstFlag+6, true
		}
		return []any{int32(p.id), "experiment " + strconv.Itoa(i), int32(flag), deleted, baseTime}
	})
}

// teamConfigRows opts every seventh team with flags into slim events and explicit
// property matching.
func teamConfigRows(plans []teamPlan) *genSource {
	return perTeam(plans, func(p *teamPlan) int { return boolInt(p.flags > 0 && p.id%7 == 0) }, nil,
		func(p *teamPlan, _ int) []any { return []any{int32(p.id), true, int16(2)} })
}

var tagNames = []string{"web", "mobile", "backend", "beta"}

// tagUUID is deterministic per team and tag index.
func tagUUID(team int64, i int) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%08x%04x", team, i)
}

func tagRows(opts Options, plans []teamPlan) *genSource {
	return perTeam(plans, func(p *teamPlan) int { return int(p.tags) }, nil, func(p *teamPlan, i int) []any {
		return []any{tagUUID(p.id, i), tagNames[i], int32(p.id)}
	})
}

// flagTagRows tags about one flag in four with one of its team's tags.
func flagTagRows(opts Options, plans []teamPlan) *genSource {
	var r *rand.Rand
	ti, i := 0, 0
	return &genSource{next: func() ([]any, bool) {
		for ti < len(plans) {
			p := &plans[ti]
			if i == 0 {
				r = teamRand(opts.Seed, p.id, 3)
			}
			for p.tags > 0 && i < int(p.flags) {
				fi := i
				i++
				if r.IntN(4) == 0 {
					return []any{int32(p.firstFlag + int64(fi)), tagUUID(p.id, r.IntN(int(p.tags))), baseTime}, true
				}
			}
			ti, i = ti+1, 0
		}
		return nil, false
	}}
}
