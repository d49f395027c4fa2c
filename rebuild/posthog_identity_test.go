package rebuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// posthogPayloads runs testdata/posthog_writer.py, PostHog's writer reproduced over
// psycopg2, for teams: per team flags.json, its ETag, the definitions, their ETag.
func posthogPayloads(t *testing.T, dbURL string, c Contract, teams []int64) [][4]string {
	t.Helper()
	py := testenv.Python(t, "psycopg2")
	args := []string{"testdata/posthog_writer.py", dbURL, string(c)}
	for _, id := range teams {
		args = append(args, strconv.FormatInt(id, 10))
	}
	cmd := exec.Command(py, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "posthog_writer.py: %s", stderr.String())
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	var res [][4]string
	for sc.Scan() {
		var p [4]string
		p[0] = sc.Text()
		for i := 1; i < 4; i++ {
			require.True(t, sc.Scan())
			p[i] = sc.Text()
		}
		res = append(res, p)
	}
	require.NoError(t, sc.Err())
	require.Len(t, res, len(teams))
	return res
}

func etag(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])[:16]
}

// requireSameAsPostHog builds every team with flagwarden and compares bytes and ETags
// with PostHog's writer, for both contracts.
func requireSameAsPostHog(t *testing.T, pool *pgxpool.Pool, dbURL string, teams []int64) {
	t.Helper()
	ctx := context.Background()
	src := NewPGSource(pool, nil)
	for _, c := range Contracts() {
		want := posthogPayloads(t, dbURL, c, teams)
		b := NewBuilder(BuilderOptions{Contract: c, PageSize: 64})
		for i, team := range teams {
			var sink BufferSink
			st, err := b.Build(ctx, src, team, &sink)
			require.NoError(t, err, "team %d", team)
			require.Zero(t, st.Skipped, "team %d: %v", team, st.SkippedFlags)
			fl, df := sink.Flags.String(), sink.Definitions.String()
			requireSameJSON(t, want[i][0], fl, "contract %s team %d flags.json", c, team)
			require.Equal(t, want[i][1], etag(sink.Flags.Bytes()), "contract %s team %d flags.json ETag", c, team)
			requireSameJSON(t, want[i][2], df, "contract %s team %d definitions", c, team)
			require.Equal(t, want[i][3], etag(sink.Definitions.Bytes()), "contract %s team %d definitions ETag", c, team)
		}
	}
}

// requireSameJSON compares bytes, reporting the first difference with context.
func requireSameJSON(t *testing.T, want, got string, msgAndArgs ...any) {
	t.Helper()
	if want == got {
		return
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(0, i-300)
	t.Fatalf("%s: payloads differ at byte %d of %d/%d:\nposthog:    …%s\nflagwarden: …%s", fmt.Sprintf(msgAndArgs[0].(string), msgAndArgs[1:]...),
		i, len(want), len(got), want[from:min(len(want), i+200)], got[from:min(len(got), i+200)])
}

// TestBytesEqualPostHogsWriter: for seeded teams (dependencies, static, nested and
// legacy-groups cohorts, encrypted-payload, survey and legacy flags, experiments, tags,
// a team without flags) and for teams of random JSON (nested objects, unicode with
// astral characters, floats of every magnitude, big ints, empty containers), the bytes
// and ETags flagwarden builds are those PostHog's writer produces from the same rows.
func TestBytesEqualPostHogsWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	res, err := seed.Fleet(ctx, pool, seed.Options{Teams: 60, Seed: 12, GiantFlags: 700})
	require.NoError(t, err)
	var teams []int64
	for id := res.FirstTeamID; id <= res.LastTeamID; id++ {
		teams = append(teams, id)
	}
	teams = append(teams, res.GiantTeamID)
	r := rand.New(rand.NewPCG(12, 34))
	for i := range 6 {
		teams = append(teams, insertRandomTeam(t, pool, r, 9000+int64(i), 40+i*30))
	}
	requireSameAsPostHog(t, pool, url, teams)
}

// TestBytesEqualPostHogsWriterRereadingCohorts: the same with no printed cohorts kept
// from the walks, so that every cohort is read back when printed.
func TestBytesEqualPostHogsWriterRereadingCohorts(t *testing.T) {
	pool, url, teams := randomTeamsDB(t, 56, 9100, func(int) int { return 60 })
	saved := cohortCacheBytes
	cohortCacheBytes = 0
	t.Cleanup(func() { cohortCacheBytes = saved })
	requireSameAsPostHog(t, pool, url, teams)
}

// randomTeamsDB returns a database with three teams of random rows (ids from first,
// flags(i) flags each, seeded with seed) and their ids.
func randomTeamsDB(t *testing.T, seed uint64, first int64, flags func(i int) int) (*pgxpool.Pool, string, []int64) {
	t.Helper()
	ctx := context.Background()
	url := testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, posthog.ApplySchema(ctx, pool))
	r := rand.New(rand.NewPCG(seed, seed+22))
	var teams []int64
	for i := range 3 {
		teams = append(teams, insertRandomTeam(t, pool, r, first+int64(i), flags(i)))
	}
	return pool, url, teams
}

// insertRandomTeam writes a team whose rows are random but readable by the Rust
// service, so that PostHog and flagwarden must agree on every byte.
func insertRandomTeam(t *testing.T, pool *pgxpool.Pool, r *rand.Rand, id int64, flags int) int64 {
	t.Helper()
	ctx := context.Background()
	g := &randGen{r: r}
	_, err := pool.Exec(ctx, `INSERT INTO posthog_team (id, project_id, api_token, name) VALUES ($1, $2, $3, $4)`,
		id, id, fmt.Sprintf("phc_rand_%d", id), g.text())
	require.NoError(t, err)
	for i := range r.IntN(4) {
		_, err := pool.Exec(ctx, `INSERT INTO posthog_grouptypemapping (team_id, project_id, group_type, group_type_index) VALUES ($1, $2, $3, $4)`,
			id, id, fmt.Sprintf("%s-%d", g.text(), i), i)
		require.NoError(t, err)
	}
	if r.IntN(2) == 0 {
		_, err := pool.Exec(ctx, `INSERT INTO feature_flags_teamfeatureflagsconfig (team_id, minimal_flag_called_events, property_matching_version) VALUES ($1, $2, $3)`,
			id, r.IntN(2) == 0, 1+r.IntN(2))
		require.NoError(t, err)
	}
	// Cohorts: ids id*100+k.
	nCohorts := 1 + r.IntN(12)
	cohortIDs := make([]int64, nCohorts)
	for k := range nCohorts {
		cohortIDs[k] = id*100 + int64(k)
	}
	for k, cid := range cohortIDs {
		filters, groups := g.cohortDefinition(cohortIDs[:k])
		var backfill any
		if r.IntN(3) == 0 {
			backfill = time.Date(2026, 1, 2, 3, 4, 5, r.IntN(1000)*1000000+r.IntN(1000)*1000, time.UTC)
		}
		var ctype any = []string{"static", "person_property", "behavioral", "realtime", "analytical"}[r.IntN(5)]
		if r.IntN(3) == 0 {
			ctype = nil
		}
		var query any
		if r.IntN(4) == 0 {
			query = string(g.value(0))
		}
		_, err := pool.Exec(ctx, `INSERT INTO posthog_cohort (id, team_id, name, description, deleted, filters, query, groups,
				is_static, version, pending_version, count, is_calculating, errors_calculating, cohort_type, created_by_id,
				last_backfill_person_properties_at, last_backfill_events_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, $13, $14, NULL, $15, $15)`,
			cid, id, g.text(), g.text(), r.IntN(12) == 0, filters, query, groups, r.IntN(8) == 0,
			r.IntN(4), r.IntN(1000), r.IntN(6) == 0, r.IntN(3), ctype, backfill)
		require.NoError(t, err)
	}
	// Flags: ids id*10000+i, keys random (unicode), some depending on others.
	flagIDs := make([]int64, flags)
	keys := make([]string, flags)
	for i := range flags {
		flagIDs[i] = id*10000 + int64(i)
		keys[i] = fmt.Sprintf("%s-%d", g.word(), i)
	}
	for i := range flags {
		filters := g.flagFilters(cohortIDs, flagIDs, keys, i)
		var rollout any
		if r.IntN(3) == 0 {
			rollout = r.IntN(101)
		}
		remote := r.IntN(10) == 0
		var encrypted any = remote && r.IntN(2) == 0
		if r.IntN(10) == 0 {
			encrypted = nil
		}
		var continuity any = r.IntN(2) == 0
		if r.IntN(5) == 0 {
			continuity = nil
		}
		var runtime any = []string{"all", "server", "client"}[r.IntN(3)]
		if r.IntN(6) == 0 {
			runtime = nil
		}
		var bucketing any = []string{"distinct_id", "device_id"}[r.IntN(2)]
		if r.IntN(4) == 0 {
			bucketing = nil
		}
		var version any = r.IntN(9)
		if r.IntN(6) == 0 {
			version = nil
		}
		_, err := pool.Exec(ctx, `INSERT INTO posthog_featureflag (id, team_id, key, name, filters, rollout_percentage, created_at,
				deleted, active, version, ensure_experience_continuity, is_remote_configuration, has_encrypted_payloads,
				evaluation_runtime, bucketing_identifier)
			VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8, $9, $10, $11, $12, $13, $14)`,
			flagIDs[i], id, keys[i], g.text(), filters, rollout, r.IntN(15) == 0, r.IntN(5) != 0, version, continuity,
			remote, encrypted, runtime, bucketing)
		require.NoError(t, err)
	}
	// Tags, experiments, a survey.
	tagIDs := make([]string, 1+r.IntN(4))
	for k := range tagIDs {
		tagIDs[k] = fmt.Sprintf("00000000-0000-4000-a000-%08x%04x", id, k)
		_, err := pool.Exec(ctx, `INSERT INTO posthog_tag (id, name, team_id) VALUES ($1, $2, $3)`, tagIDs[k], fmt.Sprintf("%s %d", g.text(), k), id)
		require.NoError(t, err)
	}
	for i := range flags {
		for k := range tagIDs {
			if r.IntN(4) == 0 {
				_, err := pool.Exec(ctx, `INSERT INTO posthog_featureflagevaluationtag (feature_flag_id, tag_id, created_at) VALUES ($1, $2, now())`, flagIDs[i], tagIDs[k])
				require.NoError(t, err)
			}
		}
		if r.IntN(8) == 0 {
			_, err := pool.Exec(ctx, `INSERT INTO posthog_experiment (team_id, name, feature_flag_id, deleted, created_at) VALUES ($1, 'e', $2, $3, now())`,
				id, flagIDs[i], r.IntN(3) == 0)
			require.NoError(t, err)
		}
	}
	_, err = pool.Exec(ctx, `INSERT INTO posthog_survey (id, team_id, name, targeting_flag_id, internal_targeting_flag_id, internal_response_sampling_flag_id, created_at)
		VALUES ($1, $2, 's', $3, $4, NULL, now())`, fmt.Sprintf("00000000-0000-4000-b000-%012x", id), id, flagIDs[0], flagIDs[len(flagIDs)/2])
	require.NoError(t, err)
	return id
}

// randGen makes random JSON text and random rows.
type randGen struct{ r *rand.Rand }

var randPieces = []string{"a", "b", "z", "A", "key", "type", "values", " ", "é", "ß", "中文", "😀", "𝄞", "\x7f", `\u001f`,
	`\n`, `\t`, `\"`, `\\`, `\/`, `\u00E9`, `\uD83D\uDE00`, "\u2028", "\ufeff", "~", "0", "10", "9", "_", "-", "$"}

func (g *randGen) str() string {
	var b strings.Builder
	for range g.r.IntN(5) {
		b.WriteString(randPieces[g.r.IntN(len(randPieces))])
	}
	return b.String() // JSON string body: escapes stay escapes
}

// text is a plain string for text columns (no JSON escapes).
func (g *randGen) text() string {
	s := g.str()
	var d bytes.Buffer
	d.WriteString(`"`)
	d.WriteString(s)
	d.WriteString(`"`)
	var v string
	if err := json.Unmarshal(d.Bytes(), &v); err != nil {
		return "plain"
	}
	return strings.ReplaceAll(v, "\x00", "")
}

func (g *randGen) word() string {
	return []string{"beta", "Ünïcode", "flag_🚀", "zeta", "alpha", "中", "key with space"}[g.r.IntN(7)]
}

func (g *randGen) quoted() []byte { return []byte(`"` + g.str() + `"`) }

func (g *randGen) number() []byte {
	r := g.r
	switch r.IntN(7) {
	case 0:
		return strconv.AppendInt(nil, r.Int64()-r.Int64(), 10)
	case 1:
		return []byte(strings.Repeat("9", 1+r.IntN(60)))
	case 2:
		f := math.Float64frombits(r.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			f = 2.5
		}
		return strconv.AppendFloat(nil, f, 'g', -1, 64)
	case 3:
		return fmt.Appendf(nil, "%d.%d%s%d", r.IntN(1000), r.IntN(1000), []string{"e", "E", "e+", "e-"}[r.IntN(4)], r.IntN(300))
	case 4:
		return fmt.Appendf(nil, "%d.%0*d", r.IntN(10), 1+r.IntN(25), r.IntN(1000))
	case 5:
		return []byte([]string{"0", "-0", "0.0", "-0.0", "1.50", "1e-7", "100.0"}[r.IntN(7)])
	}
	return strconv.AppendInt(nil, int64(r.IntN(100)), 10)
}

func (g *randGen) value(depth int) []byte {
	r := g.r
	switch k := r.IntN(10); {
	case depth > 3 || k < 4:
		switch r.IntN(5) {
		case 0:
			return []byte([]string{"true", "false", "null"}[r.IntN(3)])
		case 1, 2:
			return g.number()
		}
		return g.quoted()
	case k < 7:
		b := []byte{'['}
		for i := range r.IntN(4) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, g.value(depth+1)...)
		}
		return append(b, ']')
	default:
		b := []byte{'{'}
		for i := range r.IntN(4) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, g.quoted()...)
			b = append(b, ':')
			b = append(b, g.value(depth+1)...)
		}
		return append(b, '}')
	}
}

// extras adds random unknown members to an object body (serde ignores them).
func (g *randGen) extras(b []byte) []byte {
	for range g.r.IntN(3) {
		b = append(b, ',')
		b = append(b, `"x`...)
		b = append(b, g.str()...)
		b = append(b, `":`...)
		b = append(b, g.value(1)...)
	}
	return b
}

var randOperators = []string{"exact", "is_not", "icontains", "regex", "gt", "lte", "is_set", "is_not_set", "in", "semver_gt", "is_date_before"}

func (g *randGen) property(cohorts, flagIDs []int64, keys []string, self int) []byte {
	r := g.r
	b := []byte{'{'}
	switch k := r.IntN(10); {
	case k < 2 && len(cohorts) > 0:
		b = append(b, `"key":"id","type":"cohort","value":`...)
		c := cohorts[r.IntN(len(cohorts))]
		switch r.IntN(6) {
		case 0:
			b = fmt.Appendf(b, `"%d"`, c)
		case 1:
			b = append(b, `99999999`...) // no such cohort
		default:
			b = strconv.AppendInt(b, c, 10)
		}
	case k < 3 && len(flagIDs) > 1:
		b = append(b, `"type":"flag","operator":"flag_evaluates_to","value":true,"key":`...)
		j := r.IntN(len(flagIDs))
		switch r.IntN(5) {
		case 0:
			b = append(b, fmt.Sprintf("%q", keys[j])...)
		case 1:
			b = append(b, `"123456789"`...) // missing
		case 2:
			b = fmt.Appendf(b, `"%d"`, flagIDs[self])
		default:
			b = fmt.Appendf(b, `"%d"`, flagIDs[j])
		}
	case k < 4:
		b = append(b, `"key":`...)
		b = append(b, g.quoted()...)
		b = fmt.Appendf(b, `,"type":"group","group_type_index":%d,"value":`, r.IntN(5))
		b = append(b, g.value(1)...)
	default:
		b = append(b, `"key":`...)
		b = append(b, g.quoted()...)
		b = append(b, `,"type":"person","value":`...)
		b = append(b, g.value(0)...)
		if r.IntN(3) > 0 {
			b = fmt.Appendf(b, `,"operator":%q`, randOperators[r.IntN(len(randOperators))])
		}
		if r.IntN(3) == 0 {
			b = fmt.Appendf(b, `,"negation":%v`, r.IntN(2) == 0)
		}
	}
	return append(g.extras(b), '}')
}

func (g *randGen) group(cohorts, flagIDs []int64, keys []string, self int) []byte {
	r := g.r
	b := []byte{'{'}
	sep := ""
	switch r.IntN(12) {
	case 0: // no properties key
	case 1:
		b, sep = append(b, `"properties":null`...), "," // PostHog drops the flag from the definitions
	default:
		b = append(b, `"properties":[`...)
		for i := range r.IntN(4) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, g.property(cohorts, flagIDs, keys, self)...)
		}
		b, sep = append(b, ']'), ","
	}
	switch r.IntN(4) {
	case 0:
		b = append(b, sep+`"rollout_percentage":null`...)
	case 1:
		b = append(append(b, sep+`"rollout_percentage":`...), g.number()...)
	default:
		b = fmt.Appendf(b, sep+`"rollout_percentage":%d`, r.IntN(101))
	}
	if r.IntN(3) == 0 {
		b = append(append(b, `,"variant":`...), g.quoted()...)
	}
	if r.IntN(4) == 0 {
		b = fmt.Appendf(b, `,"aggregation_group_type_index":%d`, r.IntN(5))
	}
	return append(g.extras(b), '}')
}

func (g *randGen) flagFilters(cohorts, flagIDs []int64, keys []string, self int) string {
	r := g.r
	if r.IntN(15) == 0 {
		// A legacy row: no groups, only properties (get_filters() of 2026-02 up-converts it).
		b := []byte(`{"properties":[`)
		b = append(b, g.property(cohorts, flagIDs, keys, self)...)
		b = append(b, `],"payloads":`...)
		b = append(b, g.value(0)...)
		return string(append(b, '}'))
	}
	b := []byte(`{"groups":[`)
	for i := range r.IntN(4) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, g.group(cohorts, flagIDs, keys, self)...)
	}
	b = append(b, ']')
	switch r.IntN(3) {
	case 0:
		b = append(b, `,"multivariate":null`...)
	case 1:
		b = append(b, `,"multivariate":{"variants":[{"key":`...)
		b = append(b, g.quoted()...)
		b = append(b, `,"name":null,"rollout_percentage":`...)
		b = append(b, g.number()...)
		b = append(b, `},{"key":"test","name":`...)
		b = append(b, g.quoted()...)
		b = append(b, `,"rollout_percentage":50}]}`...)
	}
	if r.IntN(2) == 0 {
		b = append(append(b, `,"payloads":`...), g.value(0)...)
	}
	if r.IntN(4) == 0 {
		b = fmt.Appendf(b, `,"aggregation_group_type_index":%d`, r.IntN(5))
	}
	if r.IntN(5) == 0 {
		b = append(b, `,"super_groups":[`...)
		b = append(b, g.group(cohorts, flagIDs, keys, self)...)
		b = append(b, `],"feature_enrollment":true`...)
	}
	if r.IntN(6) == 0 {
		b = fmt.Appendf(b, `,"holdout":{"id":%d,"exclusion_percentage":`, r.IntN(1000))
		b = append(append(b, g.number()...), '}')
	}
	return string(append(g.extras(b), '}'))
}

// cohortDefinition returns random filters and groups; earlier cohorts may be nested.
func (g *randGen) cohortDefinition(earlier []int64) (filters any, groups string) {
	r := g.r
	prop := func() []byte {
		switch k := r.IntN(8); {
		case k == 0 && len(earlier) > 0:
			return fmt.Appendf(nil, `{"key":"id","type":"cohort","value":%d,"negation":false}`, earlier[r.IntN(len(earlier))])
		case k == 1:
			return fmt.Appendf(nil, `{"key":"$pageview","type":"behavioral","value":"performed_event","event_type":"events","time_value":%d,"time_interval":"day"}`, r.IntN(90))
		case k == 2:
			return []byte(`{"key":"broken","type":"person"}`) // no value: Property refuses it
		case k == 3:
			return fmt.Appendf(nil, `{"key":"g","type":"group","group_type_index":"%d","value":1}`, r.IntN(6))
		}
		b := []byte(`{"key":`)
		b = append(b, g.quoted()...)
		b = append(b, `,"type":"person","value":`...)
		b = append(b, g.value(1)...)
		if r.IntN(2) == 0 {
			b = fmt.Appendf(b, `,"operator":%q`, randOperators[r.IntN(len(randOperators))])
		}
		if r.IntN(3) == 0 {
			b = append(b, `,"negation":"true"`...)
		}
		return append(g.extras(b), '}')
	}
	switch r.IntN(8) {
	case 7: // a group next to a property: PostHog cannot parse it, flags naming it leave the definitions
		return `{"properties":{"type":"OR","values":[{"type":"AND","values":[]},{"key":"x","type":"person","value":1}]}}`, "[]"
	case 0: // legacy groups column
		return nil, []string{
			`[{"properties":[{"key":"plan","type":"event","value":"pro"},{"key":"e","value":"x","operator":"icontains"}]}]`,
			`[{"action_id":7,"days":30,"count":"3","count_operator":"gte"},{"properties":{"plan":"team","n":2}}]`,
			`[{"event_id":"$pageview"}]`,
		}[r.IntN(3)]
	case 1: // a flat list of properties
		return `{"properties":[` + string(prop()) + `,` + string(prop()) + `]}`, "[]"
	}
	b := []byte(`{"properties":{"type":"`)
	b = append(b, []string{"OR", "AND", "or"}[r.IntN(3)]...)
	b = append(b, `","values":[`...)
	for i := range 1 + r.IntN(3) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"AND","values":[`...)
		for j := range r.IntN(4) {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, prop()...)
		}
		b = append(b, `]}`...)
	}
	b = append(b, `]}`...)
	return string(g.extras(b)) + "}", "[]"
}
