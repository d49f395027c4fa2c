package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/posthog/seed"
	"github.com/flagwarden/flagwarden/internal/testenv"
	"github.com/flagwarden/flagwarden/rebuild"
	"github.com/flagwarden/flagwarden/rebuild/s3tier"
)

const ttl = 7 * 24 * time.Hour

var phLayout = cachekeys.Layout{PostHog: true}

type env struct {
	pool     *pgxpool.Pool
	redisURL string
	rdb      *redis.Client
	s3srv    *testenv.S3Server
	tier     *s3tier.Tier
	src      *rebuild.PGSource
	teams    []int64
	flagTeam int64 // the team with the most flags
	bareTeam int64 // a team without flags
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = seed.Fleet(ctx, pool, seed.Options{Teams: 8, Seed: 12, FlagTeamShare: 0.6, MaxFlags: 120})
	require.NoError(t, err)
	e := &env{pool: pool, redisURL: testenv.Redis(t), s3srv: testenv.S3(t), src: rebuild.NewPGSource(pool, nil)}
	opt, err := redis.ParseURL(e.redisURL)
	require.NoError(t, err)
	e.rdb = redis.NewClient(opt)
	t.Cleanup(func() { e.rdb.Close() })
	e.tier, err = s3tier.New(ctx, s3tier.Options{Endpoint: e.s3srv.Endpoint, Bucket: e.s3srv.Bucket, Region: e.s3srv.Region,
		AccessKeyID: e.s3srv.AccessKey, SecretAccessKey: e.s3srv.SecretKey, PathStyle: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	rows, err := pool.Query(ctx, `SELECT t.id, count(f.id) FROM posthog_team t LEFT JOIN posthog_featureflag f ON f.team_id = t.id GROUP BY t.id ORDER BY t.id`)
	require.NoError(t, err)
	most := int64(5)
	for rows.Next() {
		var id, n int64
		require.NoError(t, rows.Scan(&id, &n))
		e.teams = append(e.teams, id)
		if n > most {
			e.flagTeam, most = id, n
		}
		if n == 0 && e.bareTeam == 0 {
			e.bareTeam = id
		}
	}
	require.NoError(t, rows.Err())
	require.NotZero(t, e.flagTeam, "the seed has a team with flags")
	require.NotZero(t, e.bareTeam, "the seed has a team without flags")
	return e
}

func (e *env) verifier(t *testing.T, layout cachekeys.Layout, withS3 bool) *Verifier {
	t.Helper()
	opts := Options{Source: e.src, Redis: e.rdb, Layout: layout, TTL: ttl, ChunkBytes: 4096}
	if withS3 {
		opts.S3 = e.tier
	}
	v, err := New(opts)
	require.NoError(t, err)
	return v
}

// build returns a team's two payloads as a fresh build writes them.
func (e *env) build(t *testing.T, team int64) map[cachekeys.Kind][]byte {
	t.Helper()
	var sink rebuild.BufferSink
	_, err := rebuild.NewBuilder(rebuild.BuilderOptions{}).Build(context.Background(), e.src, team, &sink)
	require.NoError(t, err)
	return map[cachekeys.Kind][]byte{cachekeys.KindFlags: sink.Flags.Bytes(), cachekeys.KindDefinitions: sink.Definitions.Bytes()}
}

func etagOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])[:16]
}

// writeLikeDjango stores a payload the way PostHog's HyperCache does: the pickled (and
// zstd-compressed) JSON and :etag through django-redis's encoding, the expiry score,
// and the plain JSON in S3.
func (e *env) writeLikeDjango(t *testing.T, team int64, kind cachekeys.Kind, payload []byte, writtenAt time.Time) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, e.rdb.Set(ctx, phLayout.Payload(team, kind), hypercache.Encode(payload, true), 0).Err())
	require.NoError(t, e.rdb.Set(ctx, phLayout.ETag(team, kind), hypercache.Encode([]byte(etagOf(payload)), true), 0).Err())
	require.NoError(t, e.rdb.ZAdd(ctx, phLayout.Expiry(kind), redis.Z{Member: strconv.FormatInt(team, 10), Score: float64(writtenAt.Add(ttl).Unix())}).Err())
	e.putS3(t, team, kind, payload)
}

func (e *env) putS3(t *testing.T, team int64, kind cachekeys.Kind, body []byte) {
	t.Helper()
	u := e.tier.Start(context.Background(), team, kind)
	_, err := u.Write(body)
	require.NoError(t, err)
	require.NoError(t, u.Commit(context.Background()))
}

func (e *env) writeAll(t *testing.T, writtenAt time.Time) {
	t.Helper()
	for _, team := range e.teams {
		for kind, p := range e.build(t, team) {
			e.writeLikeDjango(t, team, kind, p, writtenAt)
		}
	}
}

func (e *env) verifyAll(t *testing.T, v *Verifier) (*Report, map[string]Check) {
	t.Helper()
	rep := &Report{}
	byKey := map[string]Check{}
	last, done, err := v.Pass(context.Background(), NewPGTeams(e.pool, true), 0, 1000, rep, func(cs []Check) {
		for _, c := range cs {
			byKey[key(c.TeamID, c.Kind, c.Tier)] = c
		}
	})
	require.NoError(t, err)
	require.True(t, done)
	require.Equal(t, e.teams[len(e.teams)-1], last)
	require.Equal(t, len(e.teams), rep.Teams)
	return rep, byKey
}

func key(team int64, kind cachekeys.Kind, tier string) string {
	return strconv.FormatInt(team, 10) + "/" + string(kind) + "/" + tier
}

func TestEntriesWrittenLikePostHogVerifyOK(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeAll(t, time.Now())
	rep, byKey := e.verifyAll(t, e.verifier(t, phLayout, true))
	require.Zero(t, rep.ProblemCount, "problems: %v", rep.Problems)
	require.False(t, rep.Wrong())
	require.Len(t, byKey, len(e.teams)*4, "both kinds in both tiers")
	for _, c := range byKey {
		require.Equal(t, OK, c.Outcome, c.Line())
		require.Equal(t, c.FreshSHA256, c.StoredSHA256)
		if c.Tier == TierRedis {
			require.Equal(t, CheckOK, c.ETag)
			require.Equal(t, CheckOK, c.Expiry)
			require.Equal(t, "expiry_set", c.AgeFrom)
		}
	}
	var buf bytes.Buffer
	rep.WriteTable(&buf)
	require.Contains(t, buf.String(), "flags_with_cohorts.json")
}

func TestPlantedProblemsGetTheirOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	hourAgo := time.Now().Add(-time.Hour)
	e.writeAll(t, hourAgo)
	ft, bt := e.flagTeam, e.bareTeam
	others := []int64{}
	for _, id := range e.teams {
		if id != ft && id != bt {
			others = append(others, id)
		}
	}
	require.GreaterOrEqual(t, len(others), 4)
	a, b, c, d := others[0], others[1], others[2], others[3]

	// missing: the Redis payload is gone (S3 still has it).
	require.NoError(t, e.rdb.Del(ctx, phLayout.Payload(a, cachekeys.KindFlags)).Err())
	// missing: PostHog's "no data" marker where there should be data.
	require.NoError(t, e.rdb.Set(ctx, phLayout.Payload(a, cachekeys.KindDefinitions), hypercache.Encode([]byte(hypercache.Missing), true), 0).Err())
	// undecodable: plain JSON in Redis, as flagwarden used to write it, and a truncated zstd frame.
	plain := e.build(t, b)[cachekeys.KindFlags]
	require.NoError(t, e.rdb.Set(ctx, phLayout.Payload(b, cachekeys.KindFlags), plain, 0).Err())
	enc := hypercache.Encode(e.build(t, b)[cachekeys.KindDefinitions], true)
	require.NoError(t, e.rdb.Set(ctx, phLayout.Payload(b, cachekeys.KindDefinitions), enc[:len(enc)-3], 0).Err())
	// undecodable in S3: not JSON.
	e.putS3(t, c, cachekeys.KindDefinitions, []byte(`{"flags": [`))
	// wrong and missing :etag, and an entry PostHog's expiry set does not track.
	require.NoError(t, e.rdb.Set(ctx, phLayout.ETag(c, cachekeys.KindFlags), hypercache.Encode([]byte("0123456789abcdef"), true), 0).Err())
	require.NoError(t, e.rdb.Del(ctx, phLayout.ETag(d, cachekeys.KindFlags)).Err())
	require.NoError(t, e.rdb.ZRem(ctx, phLayout.Expiry(cachekeys.KindDefinitions), strconv.FormatInt(d, 10)).Err())
	// different: written after the data's last change, yet other bytes (a tampered name).
	fresh := e.build(t, bt)[cachekeys.KindDefinitions]
	tampered := append([]byte(nil), fresh...)
	tampered = append(tampered[:len(tampered)-1], []byte(`, "extra": 1}`)...)
	e.writeLikeDjango(t, bt, cachekeys.KindDefinitions, tampered, time.Now())

	// stale: the team's flags change after its caches were written. S3's times are
	// whole seconds, so the change must come at least a second after its write.
	time.Sleep(1100 * time.Millisecond)
	_, err := e.pool.Exec(ctx, `UPDATE posthog_featureflag SET filters = '{"groups":[{"properties":[],"rollout_percentage":7}]}', updated_at = now()
		WHERE id = (SELECT min(id) FROM posthog_featureflag WHERE team_id = $1 AND NOT deleted AND active)`, ft)
	require.NoError(t, err)

	rep, byKey := e.verifyAll(t, e.verifier(t, phLayout, true))
	want := map[string]Outcome{
		key(a, cachekeys.KindFlags, TierRedis):         Missing,
		key(a, cachekeys.KindFlags, TierS3):            OK,
		key(a, cachekeys.KindDefinitions, TierRedis):   Missing,
		key(b, cachekeys.KindFlags, TierRedis):         Undecodable,
		key(b, cachekeys.KindDefinitions, TierRedis):   Undecodable,
		key(c, cachekeys.KindDefinitions, TierS3):      Undecodable,
		key(c, cachekeys.KindFlags, TierRedis):         OK,
		key(d, cachekeys.KindFlags, TierRedis):         OK,
		key(bt, cachekeys.KindDefinitions, TierRedis):  Different,
		key(bt, cachekeys.KindDefinitions, TierS3):     Different,
		key(ft, cachekeys.KindFlags, TierRedis):        Stale,
		key(ft, cachekeys.KindDefinitions, TierRedis):  Stale,
		key(ft, cachekeys.KindFlags, TierS3):           Stale,
		key(ft, cachekeys.KindDefinitions, TierS3):     Stale,
		key(bt, cachekeys.KindFlags, TierRedis):        OK,
		key(others[4], cachekeys.KindFlags, TierRedis): OK,
	}
	for k, o := range want {
		require.Equal(t, o, byKey[k].Outcome, "%s: %s", k, byKey[k].Line())
	}
	require.Equal(t, CheckWrong, byKey[key(c, cachekeys.KindFlags, TierRedis)].ETag)
	require.Equal(t, CheckMissing, byKey[key(d, cachekeys.KindFlags, TierRedis)].ETag)
	require.Equal(t, CheckMissing, byKey[key(d, cachekeys.KindDefinitions, TierRedis)].Expiry)
	require.Equal(t, CheckOK, byKey[key(d, cachekeys.KindDefinitions, TierRedis)].ETag)
	require.Contains(t, byKey[key(ft, cachekeys.KindFlags, TierRedis)].Detail, "before the team's data changed")
	require.Contains(t, byKey[key(b, cachekeys.KindFlags, TierRedis)].Detail, "pickle")

	// Every check that is not ok is a problem, and nothing else is.
	n := 0
	for _, c := range byKey {
		if c.Wrong() {
			n++
		}
	}
	require.Equal(t, n, rep.ProblemCount)
	require.True(t, rep.Wrong())
	require.Zero(t, rep.Failures)

	// Within the grace period the changed team is not judged; the broken entries are.
	v := e.verifier(t, phLayout, true)
	v.opts.Grace = time.Hour
	_, byKey = e.verifyAll(t, v)
	require.Equal(t, Recent, byKey[key(ft, cachekeys.KindFlags, TierRedis)].Outcome)
	require.Equal(t, Undecodable, byKey[key(b, cachekeys.KindFlags, TierRedis)].Outcome)
}

// A value written by Debian's django-redis with PostHog's compressor (pickle, zstd when
// the pickle is over 512 bytes) is read as PostHog's own readers read it.
func TestReadsWhatDjangoRedisWrote(t *testing.T) {
	t.Parallel()
	testenv.Python(t, "django", "django_redis", "zstd")
	e := newEnv(t)
	ctx := context.Background()
	set := func(key string, value []byte) {
		f := filepath.Join(t.TempDir(), "value")
		require.NoError(t, os.WriteFile(f, value, 0o644))
		testenv.DjangoSet(t, e.redisURL, key, f)
	}
	for _, team := range []int64{e.flagTeam, e.bareTeam} {
		for kind, p := range e.build(t, team) {
			base := "cache/teams/" + strconv.FormatInt(team, 10) + "/feature_flags/" + kind.File()
			set(base, p)
			set(base+":etag", []byte(etagOf(p)))
			require.NoError(t, e.rdb.ZAdd(ctx, phLayout.Expiry(kind), redis.Z{Member: strconv.FormatInt(team, 10), Score: float64(time.Now().Add(ttl).Unix())}).Err())
		}
	}
	raw, err := e.rdb.Get(ctx, phLayout.Payload(e.flagTeam, cachekeys.KindFlags)).Bytes()
	require.NoError(t, err)
	require.Equal(t, []byte{0x28, 0xb5, 0x2f, 0xfd}, raw[:4], "django-redis stored a zstd frame")
	raw, err = e.rdb.Get(ctx, phLayout.Payload(e.bareTeam, cachekeys.KindDefinitions)).Bytes()
	require.NoError(t, err)
	require.Equal(t, byte(0x80), raw[0], "a short value is a bare pickle")

	v := e.verifier(t, phLayout, false)
	for _, team := range []int64{e.flagTeam, e.bareTeam} {
		checks, err := v.Team(ctx, team)
		require.NoError(t, err)
		require.Len(t, checks, 2)
		for _, c := range checks {
			require.Equal(t, OK, c.Outcome, c.Line())
			require.Equal(t, CheckOK, c.ETag, c.Line())
			require.False(t, c.Wrong(), c.Line())
		}
	}
}

// flagwarden's own layout: plain JSON, possibly chunked, with its metadata hash.
func TestFlagwardenLayoutAfterRebuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	layout := cachekeys.Layout{}
	pub := rebuild.NewPublisher(e.rdb, rebuild.PublisherOptions{Layout: layout, ChunkBytes: 1024, MaxValueBytes: 2048})
	rb := rebuild.NewRebuilder(e.src, rebuild.NewBuilder(rebuild.BuilderOptions{}), pub)
	for _, team := range e.teams {
		_, err := rb.Rebuild(ctx, team)
		require.NoError(t, err)
	}
	m, err := cachekeys.ReadMeta(ctx, e.rdb, layout, e.flagTeam, cachekeys.KindDefinitions)
	require.NoError(t, err)
	require.Positive(t, m.Chunks, "the big team's payload is chunked: %+v", m)

	v := e.verifier(t, layout, false)
	rep, _ := e.verifyAll(t, v)
	require.Zero(t, rep.ProblemCount, "problems: %v", rep.Problems)

	// A chunk that goes missing breaks the payload; a changed flag makes a cache stale,
	// judged by the data watermark flagwarden recorded with the build.
	require.NoError(t, e.rdb.Del(ctx, layout.Chunk(e.flagTeam, cachekeys.KindDefinitions, m.Build, 1)).Err())
	checks, err := v.Team(ctx, e.flagTeam)
	require.NoError(t, err)
	require.Equal(t, cachekeys.KindDefinitions, checks[1].Kind)
	require.Equal(t, Undecodable, checks[1].Outcome, checks[1].Line())
	require.Contains(t, checks[1].Detail, "chunk 1")

	var other int64
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT team_id FROM posthog_featureflag WHERE team_id <> $1 AND active AND NOT deleted LIMIT 1`, e.flagTeam).Scan(&other))
	_, err = e.pool.Exec(ctx, `UPDATE posthog_featureflag SET name = 'renamed', updated_at = now() WHERE team_id = $1`, other)
	require.NoError(t, err)
	checks, err = v.Team(ctx, other)
	require.NoError(t, err)
	for _, c := range checks {
		require.Equal(t, Stale, c.Outcome, c.Line())
		require.Equal(t, "flagwarden_meta", c.AgeFrom)
		require.Equal(t, CheckOK, c.ETag, "the metadata still describes the stored bytes")
	}
}

// The periodic check covers every team in bounded passes and keeps a team's problems
// until the team checks out clean.
func TestServicePassesAndKeepsProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.writeAll(t, time.Now())
	bad := e.teams[len(e.teams)-1]
	require.NoError(t, e.rdb.Del(ctx, phLayout.Payload(bad, cachekeys.KindFlags)).Err())

	reg := prometheus.NewRegistry()
	s := NewService(e.verifier(t, phLayout, true), NewPGTeams(e.pool, true), ServiceOptions{TeamsPerPass: 3, Registerer: reg})
	passes := 0
	for s.cursor != 0 || passes == 0 {
		require.NoError(t, s.RunOnce(ctx))
		passes++
		require.LessOrEqual(t, s.LastReport().Teams, 3, "a pass checks at most teams_per_pass teams")
	}
	require.Equal(t, (len(e.teams)+2)/3, passes, "the passes cover every team once, then start over")
	ps := s.Problems()
	require.Len(t, ps, 1)
	require.Equal(t, bad, ps[0].TeamID)
	require.Len(t, ps[0].Checks, 1)
	require.Equal(t, Missing, ps[0].Checks[0].Outcome)
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.wrong))
	require.Equal(t, 1.0, testutil.ToFloat64(s.metrics.checks.WithLabelValues(TierRedis, string(cachekeys.KindFlags), string(Missing))))
	require.Equal(t, float64(len(e.teams)), testutil.ToFloat64(s.metrics.teams))

	// Repaired, the team's problems go at its next check.
	for kind, p := range e.build(t, bad) {
		e.writeLikeDjango(t, bad, kind, p, time.Now())
	}
	for range passes {
		require.NoError(t, s.RunOnce(ctx))
	}
	require.Empty(t, s.Problems())
	require.Zero(t, testutil.ToFloat64(s.metrics.wrong))
}

// A rebuild in the PostHog layout with the S3 tier verifies clean, and an unchanged
// rebuild repairs what verify finds when the payload key expired or another writer
// replaced it, and renews the key's TTL with the expiry set's score.
func TestPostHogRebuildVerifiesAndRepairs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	pub := rebuild.NewPublisher(e.rdb, rebuild.PublisherOptions{Layout: phLayout, Compress: true, PostHogTTL: ttl, Mirror: e.tier})
	rb := rebuild.NewRebuilder(e.src, rebuild.NewBuilder(rebuild.BuilderOptions{}), pub)
	for _, team := range e.teams {
		_, err := rb.Rebuild(ctx, team)
		require.NoError(t, err)
	}
	v := e.verifier(t, phLayout, true)
	rep, byKey := e.verifyAll(t, v)
	require.Zero(t, rep.ProblemCount, "problems after a rebuild: %v", rep.Problems)
	require.Equal(t, "flagwarden_meta", byKey[key(e.flagTeam, cachekeys.KindFlags, TierRedis)].AgeFrom)

	team := e.flagTeam
	require.NoError(t, e.rdb.Del(ctx, phLayout.Payload(team, cachekeys.KindFlags)).Err())
	other := e.build(t, team)[cachekeys.KindDefinitions]
	other = append(other[:len(other)-1], []byte(`, "written_by": "someone else"}`)...)
	require.NoError(t, e.rdb.Set(ctx, phLayout.Payload(team, cachekeys.KindDefinitions), hypercache.Encode(other, true), 0).Err())
	require.NoError(t, e.rdb.Set(ctx, phLayout.ETag(team, cachekeys.KindDefinitions), hypercache.Encode([]byte(etagOf(other)), true), 0).Err())
	checks, err := v.Team(ctx, team)
	require.NoError(t, err)
	require.Equal(t, Missing, checks[0].Outcome, checks[0].Line())
	require.Equal(t, Different, checks[2].Outcome, checks[2].Line())

	res, err := rb.Rebuild(ctx, team)
	require.NoError(t, err)
	require.False(t, res.Unchanged, "a payload that is gone or replaced is written again")
	checks, err = v.Team(ctx, team)
	require.NoError(t, err)
	for _, c := range checks {
		require.Equal(t, OK, c.Outcome, c.Line())
	}

	require.NoError(t, e.rdb.Expire(ctx, phLayout.Payload(team, cachekeys.KindFlags), time.Minute).Err())
	res, err = rb.Rebuild(ctx, team)
	require.NoError(t, err)
	require.True(t, res.Unchanged)
	left, err := e.rdb.TTL(ctx, phLayout.Payload(team, cachekeys.KindFlags)).Result()
	require.NoError(t, err)
	require.Greater(t, left, ttl-time.Minute, "an unchanged build renews the key with the expiry set")
}

// Verifying a large team streams both tiers' entries and the fresh build: the heap grows
// by far less than the payloads' size.
func TestVerifyLargeTeamInBoundedMemory(t *testing.T) {
	// Not parallel: the heap reading is process wide.
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	seed, err := seed.Fleet(ctx, pool, seed.Options{Teams: 1, Seed: 4, FlagTeamShare: 0, GiantFlags: 40000})
	require.NoError(t, err)
	e := &env{pool: pool, redisURL: testenv.Redis(t), s3srv: testenv.S3(t), src: rebuild.NewPGSource(pool, nil)}
	opt, err := redis.ParseURL(e.redisURL)
	require.NoError(t, err)
	e.rdb = redis.NewClient(opt)
	t.Cleanup(func() { e.rdb.Close() })
	e.tier, err = s3tier.New(ctx, s3tier.Options{Endpoint: e.s3srv.Endpoint, Bucket: e.s3srv.Bucket, Region: e.s3srv.Region,
		AccessKeyID: e.s3srv.AccessKey, SecretAccessKey: e.s3srv.SecretKey, PathStyle: true, Timeout: 30 * time.Second})
	require.NoError(t, err)
	pub := rebuild.NewPublisher(e.rdb, rebuild.PublisherOptions{Layout: phLayout, Compress: true, PostHogTTL: ttl, Mirror: e.tier})
	res, err := rebuild.NewRebuilder(e.src, rebuild.NewBuilder(rebuild.BuilderOptions{}), pub).Rebuild(ctx, seed.GiantTeamID)
	require.NoError(t, err)
	payloads := res.FlagsBytes + res.DefinitionsBytes

	v := e.verifier(t, phLayout, true)
	v.opts.ChunkBytes = 1 << 20
	runtime.GC()
	base := heapBytes()
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if h := heapBytes(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	})
	start := time.Now()
	checks, err := v.Team(ctx, seed.GiantTeamID)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	require.Len(t, checks, 4)
	for _, c := range checks {
		require.Equal(t, OK, c.Outcome, c.Line())
	}
	grew := peak.Load() - base
	t.Logf("verified %d flags (%.1f MiB of JSON, read from Redis and S3 and built afresh) in %s; heap grew by at most %.1f MiB",
		res.Flags, float64(payloads)/(1<<20), took.Round(time.Millisecond), float64(grew)/(1<<20))
	require.Less(t, grew, min(payloads/3, 16<<20), "verification memory does not grow with the payload")
}

func heapBytes() int64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return int64(s[0].Value.Uint64())
}
