package rebuild

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// TestBuildsShareTheirPredictions: builders that share a store (two replicas, a
// process after a restart) predict from each other's last builds, through a real
// Redis, and their payloads are byte for byte a cold build's whatever the store holds:
// nothing, another build's index, garbage, an oversized value, or no Redis at all.
func TestBuildsShareTheirPredictions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	layout := cachekeys.Layout{PostHog: true}
	store := NewRedisPredictions(f.rdb, layout, time.Hour)
	key := layout.Prediction(1, string(NewestContract), predictionVersion)
	replica := func() *Builder { return NewBuilder(BuilderOptions{Predictions: store}) }
	build := func(step string, b *Builder) BuildStats {
		t.Helper()
		var got, want BufferSink
		st, err := b.Build(ctx, f.src, 1, &got)
		require.NoError(t, err, step)
		_, err = NewBuilder(BuilderOptions{PredictionCacheBytes: -1}).Build(ctx, f.src, 1, &want)
		require.NoError(t, err, step)
		require.Equal(t, want.Flags.String(), got.Flags.String(), step)
		require.Equal(t, want.Definitions.String(), got.Definitions.String(), step)
		return st
	}
	expect := func(step string, st BuildStats, source, load, save string, attempts int) {
		t.Helper()
		require.Equal(t, source, st.PredictionSource, step)
		require.Equal(t, source != PredictionReferences, st.PredictionReused, step)
		require.Equal(t, load, st.SharedLoad, step)
		require.Equal(t, save, st.SharedSave, step)
		require.Equal(t, attempts, st.Attempts, step)
	}

	a, b := replica(), replica()
	expect("first build anywhere", build("first", a), PredictionReferences, SharedAbsent, SharedSaved, 1)
	ttl, err := f.rdb.TTL(ctx, key).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 59*time.Minute, "a stored prediction lives for the store's ttl")
	st := build("another replica", b)
	expect("another replica", st, PredictionShared, SharedLoaded, SharedKept, 1)
	require.Empty(t, st.SharedError)
	expect("the same replica again", build("again", b), PredictionPreviousBuild, "", SharedKept, 1)

	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET updated_at = now(),
		filters = '{"groups":[{"properties":[{"key":"id","type":"cohort","value":14}],"rollout_percentage":100}]}' WHERE id = 101`)
	require.NoError(t, err)
	expect("a change, built by the first replica", build("changed", a), PredictionPreviousBuild, "", SharedSaved, 1)
	expect("a restarted process after the change", build("restart", replica()), PredictionShared, SharedLoaded, SharedKept, 1)

	plant := func(v string) {
		t.Helper()
		require.NoError(t, f.rdb.Set(ctx, key, v, 0).Err())
	}
	plant(predictionMagic + "\x01\x01garbage")
	st = build("garbage", replica())
	expect("garbage", st, PredictionReferences, SharedInvalid, SharedSaved, 1)
	require.Contains(t, st.SharedError, "malformed shared prediction")
	raw, err := f.rdb.Get(ctx, key).Bytes()
	require.NoError(t, err)
	_, err = decodePrediction(raw, 1, NewestContract)
	require.NoError(t, err, "the build replaced the garbage with its own index")

	plant(string(encodePrediction(2, NewestContract, lastBuild{index: newIndex()})))
	st = build("another team's", replica())
	expect("another team's", st, PredictionReferences, SharedInvalid, SharedSaved, 1)
	require.Contains(t, st.SharedError, "written for team 2")

	plant(string(encodePrediction(1, NewestContract, lastBuild{index: newIndex(), changed: time.Now().Add(time.Hour)})))
	st = build("a wrong prediction from the future", replica())
	expect("a wrong prediction from the future", st, PredictionShared, SharedLoaded, SharedSaved, 2)

	require.NoError(t, f.rdb.SetRange(ctx, key, MaxSharedPredictionBytes, "x").Err())
	st = build("oversized", replica())
	expect("oversized", st, PredictionReferences, SharedInvalid, SharedSaved, 1)
	require.Contains(t, st.SharedError, "larger than 8 MiB")
	n, err := f.rdb.StrLen(ctx, key).Result()
	require.NoError(t, err)
	require.Less(t, n, int64(1<<20))

	require.NoError(t, f.rdb.Del(ctx, key).Err())
	expect("the entry expired", build("expired", b), PredictionPreviousBuild, "", SharedSaved, 1)

	// A store whose Redis is gone: the build goes on without it.
	srv := testenv.StartRedis(t)
	opt, err := redis.ParseURL(srv.URL())
	require.NoError(t, err)
	opt.MaxRetries = -1
	gone := redis.NewClient(opt)
	t.Cleanup(func() { gone.Close() })
	srv.Kill()
	st = build("no redis", NewBuilder(BuilderOptions{Predictions: NewRedisPredictions(gone, layout, time.Hour)}))
	expect("no redis", st, PredictionReferences, SharedFailed, SharedFailed, 1)
	require.Contains(t, st.SharedError, "save shared prediction of team 1")
}

// TestSharedPredictionsStayApart: a prediction is kept per team, contract and key
// prefix.
func TestSharedPredictionsStayApart(t *testing.T) {
	t.Parallel()
	l := cachekeys.Layout{Prefix: "env1:", PostHog: true}
	require.Equal(t, "env1:flagwarden:prediction:v1:2026-02:7", l.Prediction(7, string(Contract202602), predictionVersion))
	require.NotEqual(t, l.Prediction(7, string(Contract202602), 1), l.Prediction(7, string(Contract202609), 1))
	require.NotEqual(t, l.Prediction(7, string(Contract202602), 1), cachekeys.Layout{PostHog: true}.Prediction(7, string(Contract202602), 1))
}

// TestEngineReplicasShareTheirPredictions: two engines on one Postgres and one Redis,
// as two replicas. The team's second build runs on the other replica and predicts
// from the first one's build; its result and metrics say so.
func TestEngineReplicasShareTheirPredictions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var store PredictionStore
	b := newEngineBundle(t, false, func(o *Options) {
		store = NewRedisPredictions(o.Publisher.rdb, cachekeys.Layout{}, time.Hour)
		o.Builder.Predictions, o.CoalesceDelay = store, 10*time.Millisecond
	})
	require.NoError(t, b.e.Start(ctx))
	_, err := b.e.Request(ctx, 1, "api")
	require.NoError(t, err)
	b.idle(t)
	hist, err := b.e.History(ctx, 1, 5)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, PredictionReferences, hist[0].PredictionSource)
	require.Equal(t, SharedSaved, hist[0].SharedPredictionSave)
	require.NoError(t, b.e.Stop(ctx))

	regB := prometheus.NewRegistry()
	other, err := NewPostgres(b.pool, Options{Source: b.src, Sizes: b.src, Publisher: NewPublisher(b.rdb, PublisherOptions{}),
		Builder: BuilderOptions{Predictions: store}, CoalesceDelay: 10 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond, Registerer: regB})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Stop(context.Background()) })
	require.NoError(t, other.Start(ctx))
	_, err = other.Request(ctx, 1, "api")
	require.NoError(t, err)
	eventually(t, 20*time.Second, func() bool {
		h, err := other.History(ctx, 1, 5)
		require.NoError(t, err)
		return len(h) == 2
	}, "the other replica did not build")
	hist, err = other.History(ctx, 1, 5)
	require.NoError(t, err)
	last := hist[0]
	require.True(t, last.OK, last.Error)
	require.Equal(t, PredictionShared, last.PredictionSource)
	require.True(t, last.PredictionReused)
	require.Equal(t, 1, last.Attempts)
	require.Equal(t, SharedLoaded, last.SharedPredictionLoad)
	require.Equal(t, SharedKept, last.SharedPredictionSave)
	require.Equal(t, 1.0, testutil.ToFloat64(other.metrics.predictions.WithLabelValues(PredictionShared, "held")))
	require.Equal(t, 1.0, testutil.ToFloat64(other.metrics.shared.WithLabelValues("load", SharedLoaded)))
	require.Equal(t, 1.0, testutil.ToFloat64(other.metrics.shared.WithLabelValues("save", SharedKept)))
}

// TestOversizedIndexIsNotShared: an index no reader would take is not written, and the
// team's older entry goes, so that no build predicts from it.
func TestOversizedIndexIsNotShared(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	store := NewRedisPredictions(f.rdb, cachekeys.Layout{}, time.Hour)
	b := NewBuilder(BuilderOptions{Predictions: store})
	k := predictionKey{team: 5, contract: NewestContract}
	small := lastBuild{index: sampleIndex(), changed: time.Unix(1e9, 0)}
	var st BuildStats
	b.saveShared(ctx, k, small, false, &st)
	require.Equal(t, SharedSaved, st.SharedSave)
	big := newIndex()
	key := strings.Repeat("k", 1<<20)
	for i := range 20 {
		big.deps.add(int64(i), key, depActive, nil)
	}
	require.Greater(t, big.size(), int64(maxDecodedPrediction))
	st = BuildStats{}
	b.saveShared(ctx, k, lastBuild{index: big}, false, &st)
	require.Equal(t, SharedTooLarge, st.SharedSave)
	raw, err := store.LoadPrediction(ctx, 5, NewestContract)
	require.NoError(t, err)
	require.Nil(t, raw, "the older entry is gone")
}

// TestLoadOnlyBuilderWritesNothing: the verifier's builder predicts from the shared
// store but leaves it as it was, even when its build finds something new.
func TestLoadOnlyBuilderWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	layout := cachekeys.Layout{}
	store := NewRedisPredictions(f.rdb, layout, time.Hour)
	key := layout.Prediction(1, string(NewestContract), predictionVersion)
	_, err := NewBuilder(BuilderOptions{Predictions: store}).Build(ctx, f.src, 1, &BufferSink{})
	require.NoError(t, err)
	require.NoError(t, f.rdb.Expire(ctx, key, 100*time.Second).Err())
	before, err := f.rdb.Get(ctx, key).Bytes()
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE posthog_featureflag SET updated_at = now(),
		filters = '{"groups":[{"properties":[{"key":"id","type":"cohort","value":14}],"rollout_percentage":100}]}' WHERE id = 101`)
	require.NoError(t, err)
	var got, want BufferSink
	st, err := NewBuilder(BuilderOptions{Predictions: store, LoadPredictionsOnly: true}).Build(ctx, f.src, 1, &got)
	require.NoError(t, err)
	require.Equal(t, PredictionShared, st.PredictionSource)
	require.Equal(t, SharedLoaded, st.SharedLoad)
	require.Empty(t, st.SharedSave)
	_, err = NewBuilder(BuilderOptions{PredictionCacheBytes: -1}).Build(ctx, f.src, 1, &want)
	require.NoError(t, err)
	require.Equal(t, want.Flags.String(), got.Flags.String())
	require.Equal(t, want.Definitions.String(), got.Definitions.String())
	after, err := f.rdb.Get(ctx, key).Bytes()
	require.NoError(t, err)
	require.Equal(t, before, after, "the stored prediction is the engine's, untouched")
	ttl, err := f.rdb.TTL(ctx, key).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, ttl, 100*time.Second, "its life was not extended")
}
