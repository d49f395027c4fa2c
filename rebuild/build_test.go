package rebuild

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

// fixtureSQL is a small hand-written team: flags with cohort, nested-cohort, static
// and legacy-groups cohort conditions, flag-on-flag dependencies (by id, by key, to a
// missing flag), a deleted flag, encrypted-payload flags, a legacy rollout row, a
// survey's flag, an experiment, tags, group types and team settings; team 2 has no
// flags.
const fixtureSQL = `
INSERT INTO posthog_team (id, project_id, api_token, name) VALUES (1, 1, 'phc_one', 'one'), (2, 2, 'phc_two', 'two');
INSERT INTO posthog_grouptypemapping (team_id, project_id, group_type, group_type_index) VALUES (1, 1, 'organization', 0), (1, 1, 'company', 1);
INSERT INTO feature_flags_teamfeatureflagsconfig (team_id, minimal_flag_called_events, property_matching_version) VALUES (1, true, 2);
INSERT INTO posthog_cohort (id, team_id, name, description, deleted, is_static, filters, groups, version, count, cohort_type, last_backfill_person_properties_at) VALUES
 (10, 1, 'paying', 'pays', false, false, '{"properties":{"type":"OR","values":[{"type":"AND","values":[{"key":"plan","type":"person","value":["pro"],"operator":"exact"},{"key":"id","type":"cohort","value":11}]}]}}', '[]', 2, 40, 'person_property', '2026-01-05 10:00:00.25+00'),
 (11, 1, 'active', '', false, false, '{"properties":{"type":"AND","values":[{"key":"seen","type":"person","value":"7","operator":"gt"}]}}', '[]', 1, 90, NULL, NULL),
 (12, 1, 'static list', '', false, true, '{"properties":{"type":"AND","values":[]}}', '[]', 1, 3, 'static', NULL),
 (13, 1, 'gone', '', true, false, '{"properties":{"type":"AND","values":[]}}', '[]', 1, 0, NULL, NULL),
 (14, 1, 'unused', '', false, false, '{"properties":{"type":"AND","values":[]}}', '[]', 1, 0, NULL, NULL),
 (15, 1, 'legacy', 'groups column', false, false, NULL, '[{"properties":[{"key":"country","type":"event","value":"FR"},{"key":"email","value":"@x.com","operator":"icontains"}]},{"action_id":7,"days":30,"count":2,"count_operator":"gte"}]', 3, 12, NULL, NULL);
INSERT INTO posthog_featureflag (id, team_id, key, name, filters, rollout_percentage, created_at, updated_at, deleted, active, version, is_remote_configuration, has_encrypted_payloads, evaluation_runtime, bucketing_identifier) VALUES
 (100, 1, 'beta', 'Beta "quoted" é', '{"groups":[{"properties":[{"key":"id","type":"cohort","value":10}],"rollout_percentage":50}]}', NULL, '2026-01-01', '2026-01-02', false, true, 3, false, false, 'all', 'distinct_id'),
 (101, 1, 'alpha', 'Alpha', '{"groups":[{"properties":[],"rollout_percentage":100}],"multivariate":{"variants":[{"key":"a","rollout_percentage":100}]},"payloads":{"a":"{\"x\": 1.50}"}}', NULL, '2026-01-01', NULL, false, false, 1, false, false, 'server', 'device_id'),
 (102, 1, 'gamma', 'Gamma', '{"groups":[{"properties":[{"key":"100","type":"flag","value":true,"operator":"flag_evaluates_to"},{"key":"id","type":"cohort","value":"12"}]}]}', NULL, '2026-01-01', '2026-01-03', false, true, 1, false, false, 'all', NULL),
 (103, 1, 'deleted', 'Deleted', '{"groups":[]}', NULL, '2026-01-01', NULL, true, true, 1, false, false, 'all', NULL),
 (104, 1, 'secret', 'Secret', '{"groups":[]}', NULL, '2026-01-01', NULL, false, true, 1, true, true, 'all', NULL),
 (105, 1, 'delta', 'Delta', '{"groups":[{"properties":[{"key":"102","type":"flag","value":true},{"key":"999","type":"flag","value":true},{"key":"beta","type":"flag","value":false}]}]}', NULL, '2026-01-01', NULL, false, true, NULL, false, false, 'client', NULL),
 (106, 1, 'legacy', 'Legacy rollout', '{"properties":[{"key":"email","type":"person","value":"@old.com","operator":"icontains"},{"key":"id","type":"cohort","value":15}]}', 30, '2026-01-01', NULL, false, true, 2, false, false, NULL, NULL),
 (107, 1, 'survey-targeting', 'Survey', '{"groups":[{"properties":[],"rollout_percentage":100}]}', NULL, '2026-01-01', NULL, false, true, 1, false, false, 'all', NULL),
 (108, 1, 'experiment', 'Experiment', '{"groups":[{"properties":[{"key":"id","type":"cohort","value":15}],"rollout_percentage":100}]}', NULL, '2026-01-01', NULL, false, true, 1, false, false, 'all', 'distinct_id'),
 (109, 1, 'locked', 'Encrypted, not remote', '{"groups":[{"properties":[],"rollout_percentage":100}],"payloads":{"true":"ciphertext"}}', NULL, '2026-01-01', NULL, false, true, 1, false, true, 'all', NULL);
INSERT INTO posthog_tag (id, name, team_id) VALUES ('00000000-0000-4000-8000-000000000001', 'web', 1), ('00000000-0000-4000-8000-000000000002', 'app', 1);
INSERT INTO posthog_featureflagevaluationtag (feature_flag_id, tag_id, created_at) VALUES (100, '00000000-0000-4000-8000-000000000001', now()), (100, '00000000-0000-4000-8000-000000000002', now());
INSERT INTO posthog_survey (id, team_id, name, targeting_flag_id, created_at) VALUES ('00000000-0000-4000-9000-000000000001', 1, 'nps', 107, now());
INSERT INTO posthog_experiment (team_id, name, feature_flag_id, deleted, created_at) VALUES (1, 'exp', 108, false, now()), (1, 'old', 101, true, now());
`

type fixture struct {
	pool *pgxpool.Pool
	url  string
	rdb  *redis.Client
	src  *PGSource
}

func newFixture(t *testing.T, redisURL string) *fixture {
	t.Helper()
	ctx := context.Background()
	url := testenv.Postgres(t)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, posthog.ApplySchema(ctx, pool))
	_, err = pool.Exec(ctx, fixtureSQL)
	require.NoError(t, err)
	if redisURL == "" {
		redisURL = testenv.Redis(t)
	}
	opt, err := redis.ParseURL(redisURL)
	require.NoError(t, err)
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return &fixture{pool: pool, url: url, rdb: rdb, src: NewPGSource(pool, nil)}
}

func (f *fixture) rebuilder(b BuilderOptions, p PublisherOptions) *Rebuilder {
	return NewRebuilder(f.src, NewBuilder(b), NewPublisher(f.rdb, p))
}

func (f *fixture) payload(t *testing.T, l cachekeys.Layout, team int64, kind cachekeys.Kind) (cachekeys.Meta, []byte) {
	t.Helper()
	var buf bytes.Buffer
	m, err := cachekeys.CopyPayload(context.Background(), f.rdb, l, team, kind, &buf)
	require.NoError(t, err)
	return m, buf.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	require.NoError(t, json.Indent(&pretty, got, "", "  "), "payload must be valid JSON")
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, pretty.Bytes(), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./rebuild -run %s -update to create it", t.Name())
	require.Equal(t, string(want), pretty.String())
}

func TestBuildPayloadsGolden(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	l := cachekeys.Layout{}
	for _, c := range Contracts() {
		t.Run(string(c), func(t *testing.T) {
			layout := cachekeys.Layout{Prefix: string(c) + ":"}
			r := NewRebuilder(f.src, NewBuilder(BuilderOptions{PageSize: 2, Contract: c}), NewPublisher(f.rdb, PublisherOptions{Layout: layout}))
			res, err := r.Rebuild(ctx, 1)
			require.NoError(t, err)
			require.True(t, res.OK)
			require.Empty(t, res.Problems)
			require.Zero(t, res.SkippedFlags)
			fm, flagsJSON := f.payload(t, layout, 1, cachekeys.KindFlags)
			dm, defsJSON := f.payload(t, layout, 1, cachekeys.KindDefinitions)
			golden(t, "team1_flags_"+string(c)+".json", flagsJSON)
			golden(t, "team1_flags_with_cohorts_"+string(c)+".json", defsJSON)
			want := posthogPayloads(t, f.url, c, []int64{1, 2})
			requireSameJSON(t, want[0][0], string(flagsJSON), "flags.json")
			requireSameJSON(t, want[0][2], string(defsJSON), "definitions")
			require.Equal(t, res.FlagsETag, fm.ETag)
			require.Equal(t, want[0][1], fm.ETag[:16], "the ETag PostHog computes")
			require.Equal(t, want[0][3], dm.ETag[:16])
			require.Equal(t, int64(len(flagsJSON)), fm.Bytes)

			var defs struct {
				Flags []struct {
					Key string `json:"key"`
				} `json:"flags"`
				Cohorts map[string]json.RawMessage `json:"cohorts"`
			}
			require.NoError(t, json.Unmarshal(defsJSON, &defs))
			var keys []string
			for _, fl := range defs.Flags {
				keys = append(keys, fl.Key)
			}
			require.NotContains(t, keys, "secret", "encrypted remote-config flags are not evaluated locally")
			require.NotContains(t, keys, "survey-targeting", "survey flags are left out")
			require.NotContains(t, keys, "deleted")
			require.Contains(t, keys, "alpha", "inactive flags are kept")
			require.Contains(t, defs.Cohorts, "15", "a legacy-groups cohort ships as a property group")
			require.NotContains(t, defs.Cohorts, "12", "static cohorts are not evaluated locally")
			require.Contains(t, string(defsJSON), `"dependency_chain": ["beta"], "key": "beta"`, "flag ids become keys")
			if c == Contract202602 {
				require.Contains(t, keys, "locked", "February only left out remote-config flags with encrypted payloads")
				require.Contains(t, string(flagsJSON), `"evaluation_tags": ["app", "web"]`)
				require.Contains(t, string(flagsJSON), `"filters": {"groups": [{"properties": [{"key": "email"`, "legacy rows are up-converted")
				require.NotContains(t, string(flagsJSON), `"alpha"`, "flags.json holds active flags only")
			} else {
				require.NotContains(t, keys, "locked")
				require.Contains(t, string(flagsJSON), `"evaluation_contexts": ["app", "web"]`)
				require.Contains(t, string(flagsJSON), `"is_static": true`, "static cohorts are in flags.json")
				require.Contains(t, string(defsJSON), `"minimal_flag_called_events": true, "property_matching_version": 2}`)
				require.Contains(t, string(flagsJSON), `"has_experiment": true, "id": 108`)
			}

			// The same data again: nothing rewritten, build time moves.
			res2, err := r.Rebuild(ctx, 1)
			require.NoError(t, err)
			require.True(t, res2.Unchanged)
			fm2, _ := f.payload(t, layout, 1, cachekeys.KindFlags)
			require.Equal(t, fm.Build, fm2.Build, "an unchanged payload keeps its build")

			// A team without flags.
			_, err = r.Rebuild(ctx, 2)
			require.NoError(t, err)
			_, empty := f.payload(t, layout, 2, cachekeys.KindFlags)
			_, emptyDefs := f.payload(t, layout, 2, cachekeys.KindDefinitions)
			require.Equal(t, want[1][0], string(empty))
			require.Equal(t, want[1][2], string(emptyDefs))
			if c == Contract202602 {
				require.Equal(t, `{"flags": []}`, string(empty))
				require.Equal(t, `{"cohorts": {}, "flags": [], "group_type_mapping": {}}`, string(emptyDefs))
			} else {
				require.Equal(t, `{"cohorts": [], "evaluation_metadata": {"dependency_stages": [], "flags_with_missing_deps": [], "transitive_deps": {}}, "flags": []}`, string(empty))
				require.Equal(t, `{"cohorts": {}, "flags": [], "group_type_mapping": {}, "minimal_flag_called_events": false, "property_matching_version": 1}`, string(emptyDefs))
			}
		})
	}
	// A change makes a new build.
	r := f.rebuilder(BuilderOptions{}, PublisherOptions{})
	res, err := r.Rebuild(ctx, 1)
	require.NoError(t, err)
	m, _ := f.payload(t, l, 1, cachekeys.KindFlags)
	require.Equal(t, time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), m.SourceWatermark.UTC().Truncate(24*time.Hour))
	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET active = true, updated_at = now() WHERE id = 101`)
	require.NoError(t, err)
	res3, err := r.Rebuild(ctx, 1)
	require.NoError(t, err)
	require.False(t, res3.Unchanged)
	require.NotEqual(t, res.FlagsETag, res3.FlagsETag)
	requireNoTempKeys(t, f.rdb)
}

func TestBuildChunkedMatchesSingle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	_, err := seed.Fleet(ctx, f.pool, seed.Options{Teams: 0, GiantFlags: 300, Seed: 5})
	require.NoError(t, err)
	var giant int64
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT id FROM posthog_team WHERE name = 'giant'`).Scan(&giant))

	single := f.rebuilder(BuilderOptions{}, PublisherOptions{Layout: cachekeys.Layout{Prefix: "a:"}})
	chunked := f.rebuilder(BuilderOptions{PageSize: 7}, PublisherOptions{Layout: cachekeys.Layout{Prefix: "b:"}, ChunkBytes: 1024, MaxValueBytes: 8192})
	ra, err := single.Rebuild(ctx, giant)
	require.NoError(t, err)
	rb, err := chunked.Rebuild(ctx, giant)
	require.NoError(t, err)
	require.Equal(t, ra.FlagsETag, rb.FlagsETag, "page and chunk sizes must not change the payload")
	require.Equal(t, ra.DefinitionsETag, rb.DefinitionsETag)

	m, body := f.payload(t, cachekeys.Layout{Prefix: "b:"}, giant, cachekeys.KindFlags)
	require.Greater(t, m.Chunks, 3)
	require.Zero(t, f.rdb.Exists(ctx, cachekeys.Layout{Prefix: "b:"}.Payload(giant, cachekeys.KindFlags)).Val())
	_, want := f.payload(t, cachekeys.Layout{Prefix: "a:"}, giant, cachekeys.KindFlags)
	require.Equal(t, want, body)
	var decoded struct {
		Flags []json.RawMessage `json:"flags"`
	}
	require.NoError(t, json.Unmarshal(body, &decoded))
	require.EqualValues(t, ra.Flags, len(decoded.Flags))

	// Replacing a chunked payload with a changed one leaves the old chunks to expire.
	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET name = 'renamed', updated_at = now() WHERE team_id = $1`, giant)
	require.NoError(t, err)
	rc, err := chunked.Rebuild(ctx, giant)
	require.NoError(t, err)
	require.False(t, rc.Unchanged)
	ttl := f.rdb.TTL(ctx, cachekeys.Layout{Prefix: "b:"}.Chunk(giant, cachekeys.KindFlags, m.Build, 0)).Val()
	require.Positive(t, ttl, "old chunks expire after a grace period")
	requireNoTempKeys(t, f.rdb)
}

func TestBuildMalformedData(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	res, err := seed.Fleet(ctx, f.pool, seed.Options{Teams: 200, Seed: 9, BadData: true})
	require.NoError(t, err)
	require.Len(t, res.BadTeams, 3)
	l := cachekeys.Layout{}
	for team, kind := range res.BadTeams {
		t.Run(kind, func(t *testing.T) {
			failing := f.rebuilder(BuilderOptions{FailOnMalformed: true}, PublisherOptions{})
			out, err := failing.Rebuild(ctx, team)
			require.ErrorIs(t, err, ErrMalformed)
			require.False(t, out.OK)
			_, err = cachekeys.ReadMeta(ctx, f.rdb, l, team, cachekeys.KindFlags)
			require.ErrorIs(t, err, cachekeys.ErrNoMeta, "a failed build publishes nothing")

			skipping := f.rebuilder(BuilderOptions{}, PublisherOptions{})
			out, err = skipping.Rebuild(ctx, team)
			require.NoError(t, err)
			switch kind {
			case posthog.BadCohortCycle:
				require.NotEmpty(t, out.Problems)
				require.Contains(t, out.Problems[0], "cohort cycle")
				require.Zero(t, out.SkippedFlags)
			case posthog.BadNullFilters:
				require.EqualValues(t, 1, out.SkippedFlags)
				require.Equal(t, SkipNullFilters, out.Skipped[0].Reason)
			case posthog.BadNonObjectFilters:
				require.EqualValues(t, 1, out.SkippedFlags)
				require.Equal(t, SkipNotObject, out.Skipped[0].Reason)
				require.Contains(t, out.Skipped[0].Detail, "a string, not an object")
			}
			_, body := f.payload(t, l, team, cachekeys.KindFlags)
			require.NoError(t, rustRead(body, true))
			_, body = f.payload(t, l, team, cachekeys.KindDefinitions)
			require.True(t, json.Valid(body))
		})
	}
	requireNoTempKeys(t, f.rdb)
}

// TestBuildHostileData: each hostile row ends as a skipped flag with its reason (or, for
// a cohort, as a problem), every other flag of the team is published, and the metric
// counts the reasons.
func TestBuildHostileData(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	res, err := seed.Fleet(ctx, f.pool, seed.Options{Teams: 60, Seed: 4, HostileData: true})
	require.NoError(t, err)
	want := map[string]string{
		seed.HostileMissingType: SkipPropertyType, seed.HostileUnknownOperator: SkipOperator,
		seed.HostileOutOfRange: SkipOutOfRange, seed.HostileDeepNesting: SkipNesting, seed.HostileHugeNumber: SkipOutOfRange,
	}
	for team, kind := range res.HostileTeams {
		t.Run(kind, func(t *testing.T) {
			var sink BufferSink
			st, err := NewBuilder(BuilderOptions{}).Build(ctx, f.src, team, &sink)
			require.NoError(t, err)
			require.NoError(t, rustRead(sink.Flags.Bytes(), true))
			var total int64
			require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM posthog_featureflag WHERE team_id = $1 AND NOT deleted
				AND has_encrypted_payloads IS NOT TRUE`, team).Scan(&total))
			switch kind {
			case seed.HostileFlagCycle:
				require.Zero(t, st.Skipped)
				require.Contains(t, sink.Flags.String(), "flags_with_missing_deps\": [")
				var meta struct {
					EvaluationMetadata struct {
						Missing []int64 `json:"flags_with_missing_deps"`
					} `json:"evaluation_metadata"`
				}
				require.NoError(t, json.Unmarshal(sink.Flags.Bytes(), &meta))
				require.GreaterOrEqual(t, len(meta.EvaluationMetadata.Missing), 2, "both flags of the cycle")
			case seed.HostileCohortType:
				require.Zero(t, st.Skipped)
				require.NotEmpty(t, st.Problems)
				require.Contains(t, st.Problems[0], "left out of flags.json")
			default:
				require.EqualValues(t, 1, st.Skipped, "%v", st.SkippedFlags)
				require.Equal(t, want[kind], st.SkippedFlags[0].Reason, st.SkippedFlags[0].Detail)
				require.Equal(t, "flag-0000001", st.SkippedFlags[0].Key)
				require.EqualValues(t, total-1, st.Flags, "every other flag is published")
				require.Equal(t, 2, st.Attempts, "found in the streaming pass, then built again")
			}
		})
	}
}

func TestBuildUnknownTeam(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	_, err := f.rebuilder(BuilderOptions{}, PublisherOptions{}).Rebuild(context.Background(), 424242)
	require.ErrorIs(t, err, ErrUnknownTeam)
	_, err = f.src.TeamSize(context.Background(), 424242)
	require.ErrorIs(t, err, ErrUnknownTeam)
}

// TestBuildPostgresKilledMidBuild terminates the build's database connection after the
// first page: the build fails, the live payload stays, no temporary key is left.
func TestBuildPostgresKilledMidBuild(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	// A team large enough that its rows are still on their way when the connection dies.
	_, err := seed.Fleet(ctx, f.pool, seed.Options{Teams: 0, GiantFlags: 20000, Seed: 8})
	require.NoError(t, err)
	var team int64
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT id FROM posthog_team WHERE name = 'giant'`).Scan(&team))
	l := cachekeys.Layout{}
	ok := f.rebuilder(BuilderOptions{}, PublisherOptions{})
	_, err = ok.Rebuild(ctx, team)
	require.NoError(t, err)
	live, liveBody := f.payload(t, l, team, cachekeys.KindFlags)
	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET name = name || '!' WHERE team_id = $1`, team)
	require.NoError(t, err)

	admin, err := pgxpool.New(ctx, f.url)
	require.NoError(t, err)
	defer admin.Close()
	killed := false
	b := NewBuilder(BuilderOptions{PageSize: 1, Progress: func(BuildProgress) {
		if !killed {
			killed = true
			_, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
			require.NoError(t, err)
		}
	}})
	_, err = NewRebuilder(f.src, b, NewPublisher(f.rdb, PublisherOptions{ChunkBytes: 64 << 10})).Rebuild(ctx, team)
	require.Error(t, err)
	require.True(t, killed)
	after, afterBody := f.payload(t, l, team, cachekeys.KindFlags)
	require.Equal(t, live.ETag, after.ETag)
	require.Equal(t, liveBody, afterBody)
	requireNoTempKeys(t, f.rdb)

	// The retry (what the job does next) succeeds on fresh connections.
	res, err := ok.Rebuild(ctx, team)
	require.NoError(t, err)
	require.NotEqual(t, live.ETag, res.FlagsETag)
}

// TestBuildRedisKilledMidPublish kills the redis-server while a build streams into it:
// the build fails with an error (no panic, nothing half live), and once Redis is back
// the retry publishes a complete payload.
func TestBuildRedisKilledMidPublish(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	f := newFixture(t, srv.url)
	ctx := context.Background()
	_, err := seed.Fleet(ctx, f.pool, seed.Options{Teams: 0, GiantFlags: 2000, Seed: 2})
	require.NoError(t, err)
	var giant int64
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT id FROM posthog_team WHERE name = 'giant'`).Scan(&giant))

	pages := 0
	b := NewBuilder(BuilderOptions{PageSize: 100, Progress: func(BuildProgress) {
		pages++
		if pages == 3 {
			srv.kill(t)
		}
	}})
	r := NewRebuilder(f.src, b, NewPublisher(f.rdb, PublisherOptions{ChunkBytes: 4096}))
	res, err := r.Rebuild(ctx, giant)
	require.Error(t, err)
	require.False(t, res.OK)
	require.NotEmpty(t, res.Error)

	srv.start(t)
	pages = 100
	res, err = r.Rebuild(ctx, giant)
	require.NoError(t, err)
	_, body := f.payload(t, cachekeys.Layout{}, giant, cachekeys.KindFlags)
	require.True(t, json.Valid(body))
	require.EqualValues(t, len(body), res.FlagsBytes)
	requireNoTempKeys(t, f.rdb)
}

func requireNoTempKeys(t *testing.T, rdb *redis.Client) {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), "*:tmp:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}

// redisProc is a redis-server this test can kill and start again on the same port.
type redisProc struct {
	port int
	url  string
	cmd  *exec.Cmd
	dir  string
}

func startRedis(t *testing.T) *redisProc {
	t.Helper()
	testenv.Binary(t, "redis-server")
	p := &redisProc{port: testenv.FreePort(t), dir: t.TempDir()}
	p.url = "redis://127.0.0.1:" + strconv.Itoa(p.port) + "/0"
	p.start(t)
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *redisProc) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(p.port),
		"--save", "", "--appendonly", "no", "--dir", p.dir, "--loglevel", "warning")
	require.NoError(t, p.cmd.Start())
	testenv.WaitTCP(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)), 10*time.Second)
}

func (p *redisProc) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Kill())
	_ = p.cmd.Wait()
	p.cmd = nil
}

// TestBuildTagsAcrossPages: each page reads its flags' tags in one query; every flag
// on every page gets exactly its own tags, sorted, whatever the page boundaries.
func TestBuildTagsAcrossPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `
INSERT INTO posthog_team (id, project_id, api_token, name) VALUES (3, 3, 'phc_three', 'three');
INSERT INTO posthog_tag (id, name, team_id) VALUES ('00000000-0000-4000-8000-000000000031', 'zeta', 3),
 ('00000000-0000-4000-8000-000000000032', 'alpha', 3), ('00000000-0000-4000-8000-000000000033', 'mid', 3);
INSERT INTO posthog_featureflag (id, team_id, key, name, filters, created_at)
 SELECT 300 + i, 3, 'k' || lpad(i::text, 2, '0'), 'n', '{"groups":[]}', now() FROM generate_series(0, 22) i;
INSERT INTO posthog_featureflagevaluationtag (feature_flag_id, tag_id, created_at)
 SELECT 300 + i, t.id, now() FROM generate_series(0, 22) i JOIN posthog_tag t ON t.team_id = 3
 WHERE (t.name = 'zeta' AND i % 2 = 0) OR (t.name = 'alpha' AND i % 3 = 0) OR (t.name = 'mid' AND i % 5 = 0);`)
	require.NoError(t, err)
	want := func(i int) []string {
		out := []string{}
		if i%3 == 0 {
			out = append(out, "alpha")
		}
		if i%5 == 0 {
			out = append(out, "mid")
		}
		if i%2 == 0 {
			out = append(out, "zeta")
		}
		return out
	}
	for _, pageSize := range []int{1, 4, 7, 500} {
		var sink BufferSink
		st, err := NewBuilder(BuilderOptions{PageSize: pageSize}).Build(ctx, f.src, 3, &sink)
		require.NoError(t, err, "page size %d", pageSize)
		require.EqualValues(t, 23, st.Flags)
		var payload struct {
			Flags []struct {
				ID   int64    `json:"id"`
				Tags []string `json:"evaluation_contexts"`
			} `json:"flags"`
		}
		require.NoError(t, json.Unmarshal(sink.Flags.Bytes(), &payload))
		require.Len(t, payload.Flags, 23)
		for _, fr := range payload.Flags {
			require.Equal(t, want(int(fr.ID-300)), fr.Tags, "flag %d, page size %d", fr.ID, pageSize)
		}
	}
}

// TestBuildFirstPassReadsReferencesAsTheStreamDoes: the first pass finds a flag's
// references in a group after one without properties (a strict path that required
// them in every group would miss them), so the team builds in one pass with the
// cohort and the dependency the streaming pass finds.
func TestBuildFirstPassReadsReferencesAsTheStreamDoes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `
INSERT INTO posthog_team (id, project_id, api_token, name) VALUES (7, 7, 'phc_seven', 'seven');
INSERT INTO posthog_cohort (id, team_id, name, description, deleted, is_static, filters, groups, version, count) VALUES
 (70, 7, 'after a bare group', '', false, false, '{"properties":{"type":"AND","values":[{"key":"plan","type":"person","value":"pro","operator":"exact"}]}}', '[]', 1, 1);
INSERT INTO posthog_featureflag (id, team_id, key, name, filters, created_at) VALUES
 (700, 7, 'base', 'n', '{"groups":[{"properties":[],"rollout_percentage":100}]}', now()),
 (701, 7, 'cohorted', 'n', '{"groups":[{"rollout_percentage":10},{"properties":[{"key":"id","type":"cohort","value":70}]}]}', now()),
 (702, 7, 'dependent', 'n', '{"groups":[{"rollout_percentage":10},{"properties":[{"key":"700","type":"flag","value":true,"operator":"flag_evaluates_to"}]}]}', now());`)
	require.NoError(t, err)
	var sink BufferSink
	st, err := NewBuilder(BuilderOptions{}).Build(ctx, f.src, 7, &sink)
	require.NoError(t, err)
	require.Equal(t, 1, st.Attempts, "the first pass predicted the streaming pass: %+v", st)
	require.EqualValues(t, 1, st.Cohorts, "cohort 70 and no other")
	var defs struct {
		Cohorts map[string]json.RawMessage `json:"cohorts"`
		Flags   []struct {
			Key     string `json:"key"`
			Filters struct {
				Groups []struct {
					Properties []struct {
						Key   string `json:"key"`
						Chain []any  `json:"dependency_chain"`
						Type  any    `json:"type"`
					} `json:"properties"`
				} `json:"groups"`
			} `json:"filters"`
		} `json:"flags"`
	}
	require.NoError(t, json.Unmarshal(sink.Definitions.Bytes(), &defs))
	require.Contains(t, defs.Cohorts, "70")
	require.Len(t, defs.Cohorts, 1)
	var dependent bool
	for _, fl := range defs.Flags {
		if fl.Key == "dependent" {
			dependent = true
			p := fl.Filters.Groups[1].Properties[0]
			require.Equal(t, "base", p.Key, "the dependency is named by key")
			require.Equal(t, []any{"base"}, p.Chain)
		}
	}
	require.True(t, dependent)
}

// TestBuildPredictsFromThePreviousBuild: a builder's next build of a team predicts from
// its last one, with the flags changed since read afresh, so what they add (a cohort,
// a dependency, a new flag) is predicted; a cohort that only a changed flag named
// before costs a second pass. Either way the payloads are a cold builder's, byte for
// byte. A team with a flag the Rust reader rejects, which a cold build learns only in
// its streaming pass, needs one pass once the builder knows it.
func TestBuildPredictsFromThePreviousBuild(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	warm := NewBuilder(BuilderOptions{})
	check := func(step string, reused bool, attempts int) {
		t.Helper()
		var got, want BufferSink
		st, err := warm.Build(ctx, f.src, 1, &got)
		require.NoError(t, err, step)
		require.Equal(t, reused, st.PredictionReused, step)
		require.Equal(t, attempts, st.Attempts, step)
		cold, err := NewBuilder(BuilderOptions{PredictionCacheBytes: -1}).Build(ctx, f.src, 1, &want)
		require.NoError(t, err, step)
		require.False(t, cold.PredictionReused, step)
		require.Equal(t, want.Flags.String(), got.Flags.String(), step)
		require.Equal(t, want.Definitions.String(), got.Definitions.String(), step)
		require.Equal(t, cold.Skipped, st.Skipped, step)
		require.Equal(t, cold.Team.Watermark, st.Team.Watermark, step)
	}
	check("first build", false, 1)
	check("unchanged data", true, 1)
	_, err := f.pool.Exec(ctx, `UPDATE posthog_featureflag SET updated_at = '2026-02-01',
		filters = '{"groups":[{"properties":[{"key":"id","type":"cohort","value":14}],"rollout_percentage":100}]}' WHERE id = 101`)
	require.NoError(t, err)
	check("a flag names another cohort", true, 1)
	_, err = f.pool.Exec(ctx, `INSERT INTO posthog_featureflag (id, team_id, key, name, filters, created_at) VALUES
		(110, 1, 'newcomer', 'n', '{"groups":[{"properties":[{"key":"alpha","type":"flag","value":true,"operator":"flag_evaluates_to"},{"key":"id","type":"cohort","value":10}]}]}', now())`)
	require.NoError(t, err)
	check("a new flag with a dependency", true, 1)
	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET updated_at = now(), filters = '{"groups":[{"properties":[],"rollout_percentage":100}]}' WHERE id = 101`)
	require.NoError(t, err)
	check("the only flag naming a cohort no longer does", true, 2)
	check("after the miss", true, 1)
	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET deleted = true, updated_at = now() WHERE id = 110`)
	require.NoError(t, err)
	check("a deleted flag with a dependency", true, 1)
	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET active = false, updated_at = now() WHERE id = 100`)
	require.NoError(t, err)
	check("the only active flag naming a cohort is switched off", true, 2)
	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET filters = '{"groups":[{"properties":[{"key":"email","value":"x"}]}]}' WHERE id = 107`)
	require.NoError(t, err)
	var sink BufferSink
	cold, err := NewBuilder(BuilderOptions{PredictionCacheBytes: -1}).Build(ctx, f.src, 1, &sink)
	require.NoError(t, err)
	require.Equal(t, 2, cold.Attempts, "a cold build learns the rejected flag in its streaming pass")
	require.EqualValues(t, 1, cold.Skipped)
	check("a flag the Rust reader rejects", true, 2)
	check("the rejected flag known", true, 1)

	r := f.rebuilder(BuilderOptions{}, PublisherOptions{})
	res, err := r.Rebuild(ctx, 1)
	require.NoError(t, err)
	require.False(t, res.PredictionReused)
	require.Equal(t, 2, res.Attempts)
	res, err = r.Rebuild(ctx, 1)
	require.NoError(t, err)
	require.True(t, res.PredictionReused)
	require.Equal(t, 1, res.Attempts)
}

// TestBuildStampsThePublishersClock: build times come from the publisher's clock, the
// one cache freshness is judged by (the demo's is simulated).
func TestBuildStampsThePublishersClock(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	at := time.Date(2026, 2, 10, 12, 0, 0, 0, time.UTC)
	res, err := f.rebuilder(BuilderOptions{}, PublisherOptions{Clock: clock.Func(func() time.Time { return at })}).Rebuild(context.Background(), 1)
	require.NoError(t, err)
	require.Equal(t, at, res.StartedAt)
	require.Equal(t, at, res.FinishedAt)
	for _, kind := range []cachekeys.Kind{cachekeys.KindFlags, cachekeys.KindDefinitions} {
		meta, err := cachekeys.ReadMeta(context.Background(), f.rdb, cachekeys.Layout{}, 1, kind)
		require.NoError(t, err)
		require.True(t, at.Equal(meta.BuiltAt), "%s built at %s", kind, meta.BuiltAt)
	}
}

// TestBuildWatermarkMatchesReadTeam: the watermark a build stores, which its first pass
// folds from every flag's change time, is ReadTeam's to the microsecond, and a
// soft-deleted flag's change moves it.
func TestBuildWatermarkMatchesReadTeam(t *testing.T) {
	f := newFixture(t, "")
	ctx := context.Background()
	check := func() time.Time {
		t.Helper()
		want, err := posthog.ReadTeam(ctx, f.pool, 1)
		require.NoError(t, err)
		st, err := NewBuilder(BuilderOptions{}).Build(ctx, f.src, 1, &CountSink{})
		require.NoError(t, err)
		require.True(t, want.Watermark.Equal(st.Team.Watermark), "build %v, ReadTeam %v", st.Team.Watermark, want.Watermark)
		return st.Team.Watermark
	}
	before := check()
	require.False(t, before.IsZero())
	_, err := f.pool.Exec(ctx, `UPDATE posthog_featureflag SET deleted = true, updated_at = '2031-05-06 07:08:09.123456+00'
		WHERE id = (SELECT min(id) FROM posthog_featureflag WHERE team_id = 1)`)
	require.NoError(t, err)
	require.Equal(t, time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.UTC), check())
}

// TestBinaryTimestamptz: the first pass's change times decode as Postgres stores them;
// infinity and NULL add nothing to a watermark, and a short value is an error.
func TestBinaryTimestamptz(t *testing.T) {
	enc := func(us int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(us)) }
	got, err := binaryTimestamptz(enc(0))
	require.NoError(t, err)
	require.Equal(t, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), got)
	got, err = binaryTimestamptz(enc(-1))
	require.NoError(t, err)
	require.Equal(t, time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC), got)
	for _, inf := range []int64{math.MaxInt64, math.MinInt64} {
		got, err = binaryTimestamptz(enc(inf))
		require.NoError(t, err)
		require.True(t, got.IsZero())
	}
	got, err = binaryTimestamptz(nil)
	require.NoError(t, err)
	require.True(t, got.IsZero())
	_, err = binaryTimestamptz([]byte{1, 2, 3})
	require.ErrorContains(t, err, "3 bytes")
}

// TestBuildReadsCohortsInBatches: a team naming more cohorts than one query reads gets
// every one of them, in both payloads, in id order.
func TestBuildReadsCohortsInBatches(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	n := cohortBatch + 3
	_, err := f.pool.Exec(ctx, fmt.Sprintf(`
INSERT INTO posthog_team (id, project_id, api_token, name) VALUES (9, 9, 'phc_nine', 'nine');
INSERT INTO posthog_cohort (id, team_id, name, deleted, is_static, filters, groups)
SELECT 100000 + i, 9, 'c' || i, false, false,
	'{"properties":{"type":"OR","values":[{"type":"AND","values":[{"key":"plan","type":"person","value":["pro"],"operator":"exact"}]}]}}', '[]'
FROM generate_series(1, %[1]d) i;
INSERT INTO posthog_featureflag (id, team_id, key, name, filters, active, created_at)
SELECT 9000, 9, 'many', 'n', jsonb_build_object('groups', jsonb_build_array(jsonb_build_object('properties',
	(SELECT jsonb_agg(jsonb_build_object('key', 'id', 'type', 'cohort', 'value', 100000 + i) ORDER BY i DESC) FROM generate_series(1, %[1]d) i)))),
	true, now()`, n))
	require.NoError(t, err)
	var sink BufferSink
	st, err := NewBuilder(BuilderOptions{}).Build(ctx, f.src, 9, &sink)
	require.NoError(t, err)
	require.EqualValues(t, n, st.Cohorts)
	require.EqualValues(t, n, st.FlagsCohorts)
	require.Equal(t, 1, st.Attempts)
	var defs struct {
		Cohorts map[string]json.RawMessage `json:"cohorts"`
	}
	require.NoError(t, json.Unmarshal(sink.Definitions.Bytes(), &defs))
	require.Len(t, defs.Cohorts, n)
	var fj struct {
		Cohorts []struct {
			ID int64 `json:"id"`
		} `json:"cohorts"`
	}
	require.NoError(t, json.Unmarshal(sink.Flags.Bytes(), &fj))
	require.Len(t, fj.Cohorts, n)
	for i, c := range fj.Cohorts {
		require.EqualValues(t, 100001+i, c.ID)
	}
}
