package cachekeys

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/testenv"
)

func TestLayoutKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		layout Layout
		kind   Kind
		want   string
	}{
		{"own flags", Layout{}, KindFlags, "flagwarden/teams/42/flags.json"},
		{"own definitions prefixed", Layout{Prefix: "fw:"}, KindDefinitions, "fw:flagwarden/teams/42/flags_with_cohorts.json"},
		{"posthog default prefix", Layout{PostHog: true}, KindFlags, "posthog:1:cache/teams/42/feature_flags/flags.json"},
		{"posthog definitions", Layout{PostHog: true}, KindDefinitions, "posthog:1:cache/teams/42/feature_flags/flags_with_cohorts.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.layout.Payload(42, tt.kind))
			require.Equal(t, tt.want+":meta", tt.layout.Meta(42, tt.kind))
			require.Equal(t, tt.want+":chunk:b1:3", tt.layout.Chunk(42, tt.kind, "b1", 3))
		})
	}
	require.Equal(t, "flags_cache_expiry", Layout{PostHog: true}.Expiry(KindFlags))
	require.Equal(t, "flagwarden:built_at:definitions", Layout{}.Index(KindDefinitions))
	k, err := ParseKind("flags_with_cohorts.json")
	require.NoError(t, err)
	require.Equal(t, KindDefinitions, k)
	_, err = ParseKind("nope")
	require.Error(t, err)
}

func TestParseMeta(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 2, 5, 10, 0, 0, 123, time.UTC)
	m := Meta{BuiltAt: at, ETag: "abc", Bytes: 10, StoredBytes: 4, Flags: 2, Cohorts: 1, SourceWatermark: at.Add(-time.Hour), Chunks: 3, Build: "b"}
	h := map[string]string{}
	f := m.Fields()
	for i := 0; i < len(f); i += 2 {
		h[f[i].(string)] = toString(f[i+1])
	}
	got, err := ParseMeta(h)
	require.NoError(t, err)
	require.Equal(t, m, got)

	// Metadata written before stored sizes were recorded: the payload is stored as is.
	delete(h, "stored_bytes")
	got, err = ParseMeta(h)
	require.NoError(t, err)
	require.Equal(t, int64(10), got.StoredBytes)

	_, err = ParseMeta(nil)
	require.ErrorIs(t, err, ErrNoMeta)
	_, err = ParseMeta(map[string]string{"bytes": "ten"})
	require.ErrorContains(t, err, "bytes")
	_, err = ParseMeta(map[string]string{"built_at": "yesterday"})
	require.ErrorContains(t, err, "built_at")
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	}
	panic("unexpected type")
}

func TestCopyPayloadSingleAndChunked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opt, err := redis.ParseURL(testenv.Redis(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	l := Layout{Prefix: "t:"}

	var buf bytes.Buffer
	_, err = CopyPayload(ctx, rdb, l, 1, KindFlags, &buf)
	require.ErrorIs(t, err, ErrNoMeta)

	require.NoError(t, rdb.Set(ctx, l.Payload(1, KindFlags), `{"flags":[]}`, 0).Err())
	require.NoError(t, rdb.HSet(ctx, l.Meta(1, KindFlags), Meta{ETag: "e1", Bytes: 12, BuiltAt: time.Now()}.Fields()...).Err())
	m, err := CopyPayload(ctx, rdb, l, 1, KindFlags, &buf)
	require.NoError(t, err)
	require.Equal(t, "e1", m.ETag)
	require.Equal(t, `{"flags":[]}`, buf.String())

	buf.Reset()
	for i, part := range []string{`{"flags":[`, `1,2`, `]}`} {
		require.NoError(t, rdb.Set(ctx, l.Chunk(2, KindDefinitions, "b7", i), part, 0).Err())
	}
	require.NoError(t, rdb.HSet(ctx, l.Meta(2, KindDefinitions), Meta{Chunks: 3, Build: "b7", BuiltAt: time.Now()}.Fields()...).Err())
	_, err = CopyPayload(ctx, rdb, l, 2, KindDefinitions, &buf)
	require.NoError(t, err)
	require.Equal(t, `{"flags":[1,2]}`, buf.String())

	require.NoError(t, rdb.Del(ctx, l.Chunk(2, KindDefinitions, "b7", 1)).Err())
	_, err = CopyPayload(ctx, rdb, l, 2, KindDefinitions, &bytes.Buffer{})
	require.True(t, errors.Is(err, ErrPayloadChanged))

	now := time.Now().Truncate(time.Millisecond)
	require.NoError(t, rdb.ZAdd(ctx, l.Index(KindFlags), redis.Z{Member: "5", Score: IndexScore(now)}, redis.Z{Member: "6", Score: IndexScore(now.Add(-time.Hour))}).Err())
	idx, err := ReadIndex(ctx, rdb, l, KindFlags, 0, 10)
	require.NoError(t, err)
	require.Equal(t, []IndexEntry{{6, now.Add(-time.Hour).UTC()}, {5, now.UTC()}}, idx)
}
