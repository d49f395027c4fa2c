package rebuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

var posthogLayout = cachekeys.Layout{PostHog: true}

// posthogPayload decodes one team's live PostHog-layout payload with flagwarden's own
// reader (the tests below also read it with Django's).
func (f *fixture) posthogPayload(t *testing.T, team int64, kind cachekeys.Kind) (cachekeys.Meta, []byte) {
	t.Helper()
	m, stored := f.payload(t, posthogLayout, team, kind)
	r, err := hypercache.NewReader(bytes.NewReader(stored))
	require.NoError(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return m, b
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// addManyFlags gives team 2 n flags with filters of about 300 bytes each.
func (f *fixture) addManyFlags(t *testing.T, n int) {
	t.Helper()
	_, err := f.pool.Exec(context.Background(), `INSERT INTO posthog_featureflag
		(id, team_id, key, name, filters, created_at, deleted, active, version)
		SELECT 10000 + i, 2, 'bulk-' || lpad(i::text, 6, '0'), 'bulk flag ' || i,
			jsonb_build_object('groups', jsonb_build_array(jsonb_build_object(
				'properties', jsonb_build_array(jsonb_build_object('key', 'email', 'type', 'person', 'operator', 'icontains',
					'value', 'user' || (i * 7919 % 100003) || '@example.com')),
				'rollout_percentage', i % 101))),
			now(), false, true, 1
		FROM generate_series(1, $1) i`, n)
	require.NoError(t, err)
}

// TestPostHogLayoutReadByDjango publishes in the PostHog layout and reads every value
// back through django-redis configured as PostHog configures it: the payloads are the
// bytes flagwarden built, and :etag is the first 16 hex digits of their SHA-256.
func TestPostHogLayoutReadByDjango(t *testing.T) {
	t.Parallel()
	url := testenv.Redis(t)
	f := newFixture(t, url)
	f.addManyFlags(t, 6000) // a payload over a megabyte: the streamed, patched form
	ctx := context.Background()
	r := f.rebuilder(BuilderOptions{}, PublisherOptions{Layout: posthogLayout, Compress: true, ChunkBytes: 256 << 10})
	for _, team := range []int64{1, 2} {
		res, err := r.Rebuild(ctx, team)
		require.NoError(t, err)
		require.True(t, res.OK)
	}

	var keys []string
	want := map[string][]byte{}
	for _, team := range []int64{1, 2} {
		for _, kind := range cachekeys.Kinds {
			m, payload := f.posthogPayload(t, team, kind)
			require.Equal(t, sha(payload), m.ETag)
			require.EqualValues(t, len(payload), m.Bytes)
			stored, err := f.rdb.StrLen(ctx, posthogLayout.Payload(team, kind)).Result()
			require.NoError(t, err)
			require.Equal(t, stored, m.StoredBytes)
			require.True(t, json.Valid(payload))
			base := strings.TrimPrefix(posthogLayout.Payload(team, kind), cachekeys.PostHogPrefix)
			keys = append(keys, base, base+":etag")
			want[base], want[base+":etag"] = payload, []byte(m.ETag[:16])
			if team == 2 {
				require.Greater(t, len(payload), 1<<20)
				require.Less(t, stored*5, int64(len(payload)), "stored compressed")
			}
		}
	}
	got := testenv.DjangoGet(t, url, keys...)
	for _, k := range keys {
		v := got[k]
		require.Empty(t, v.Error, k)
		require.False(t, v.Missing, k)
		require.Equal(t, len(want[k]), v.Len, k)
		require.Equal(t, sha(want[k]), v.SHA256, k)
	}
	// No temporary key is left behind.
	tmp, err := f.rdb.Keys(ctx, "*:tmp:*").Result()
	require.NoError(t, err)
	require.Empty(t, tmp)
}

// TestPostHogLayoutUnchangedDjangoPayload: when Django already wrote the same content
// (its :etag matches), the build leaves Django's value alone.
func TestPostHogLayoutUnchangedDjangoPayload(t *testing.T) {
	t.Parallel()
	url := testenv.Redis(t)
	f := newFixture(t, url)
	ctx := context.Background()
	r := f.rebuilder(BuilderOptions{}, PublisherOptions{Layout: posthogLayout, Compress: true})
	_, err := r.Rebuild(ctx, 1)
	require.NoError(t, err)
	m, payload := f.posthogPayload(t, 1, cachekeys.KindFlags)

	// Replace it by what Django writes for the same JSON, and drop flagwarden's metadata.
	key := strings.TrimPrefix(posthogLayout.Payload(1, cachekeys.KindFlags), cachekeys.PostHogPrefix)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p"), payload, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "e"), []byte(m.ETag[:16]), 0o600))
	testenv.DjangoSet(t, url, key, filepath.Join(dir, "p"))
	testenv.DjangoSet(t, url, key+":etag", filepath.Join(dir, "e"))
	require.NoError(t, f.rdb.Del(ctx, posthogLayout.Meta(1, cachekeys.KindFlags)).Err())
	django, err := f.rdb.Get(ctx, posthogLayout.Payload(1, cachekeys.KindFlags)).Bytes()
	require.NoError(t, err)

	pub := NewPublisher(f.rdb, PublisherOptions{Layout: posthogLayout, Compress: true})
	s := pub.Begin(ctx, 1, cachekeys.KindFlags)
	_, err = s.Write(payload)
	require.NoError(t, err)
	p, err := s.Commit(cachekeys.Meta{})
	require.NoError(t, err)
	require.True(t, p.Unchanged)
	after, err := f.rdb.Get(ctx, posthogLayout.Payload(1, cachekeys.KindFlags)).Bytes()
	require.NoError(t, err)
	require.Equal(t, django, after, "Django's value is left as it was")
	live, err := cachekeys.ReadMeta(ctx, f.rdb, posthogLayout, 1, cachekeys.KindFlags)
	require.NoError(t, err)
	require.Equal(t, m.ETag, live.ETag)
	require.EqualValues(t, len(django), live.StoredBytes)
}

// TestPostHogLayoutOversizedPayload: PostHog's readers know no chunks, so a value over
// the limit is never written; the live cache stays, the engine quarantines the team
// with the reason and does not retry.
func TestPostHogLayoutOversizedPayload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newEngineBundle(t, false, func(o *Options) {
		o.MaxAttempts = 5
	})
	pubOpts := PublisherOptions{Layout: posthogLayout, Compress: false, ChunkBytes: 16 << 10}
	good := NewPublisher(b.rdb, pubOpts)
	_, err := NewRebuilder(b.src, NewBuilder(BuilderOptions{}), good).Rebuild(ctx, 2)
	require.NoError(t, err)
	before, err := b.rdb.Get(ctx, posthogLayout.Payload(2, cachekeys.KindFlags)).Bytes()
	require.NoError(t, err)

	b.addManyFlags(t, 400) // about 150 KB of JSON, uncompressed
	pubOpts.MaxValueBytes = 64 << 10
	b.e.rebuild = NewRebuilder(b.src, NewBuilder(BuilderOptions{}), NewPublisher(b.rdb, pubOpts))
	_, err = b.e.rebuild.Rebuild(ctx, 2)
	tooLarge, ok := errors.AsType[*PayloadTooLargeError](err)
	require.True(t, ok, "error %v", err)
	require.Equal(t, int64(64<<10), tooLarge.Limit)

	_, err = b.e.Request(ctx, 2, "api")
	require.NoError(t, err)
	require.NoError(t, b.e.Start(ctx))
	eventually(t, 30*time.Second, func() bool { qs, _ := b.e.Quarantined(ctx); return len(qs) == 1 }, "team was not quarantined")
	qs, err := b.e.Quarantined(ctx)
	require.NoError(t, err)
	require.Contains(t, qs[0].Reason, "Redis value limit")
	require.True(t, qs[0].Auto)
	b.idle(t)
	require.EqualValues(t, 1, b.builds.Load(), fmt.Sprintf("no retry of a build that cannot fit (%d builds)", b.builds.Load()))

	after, err := b.rdb.Get(ctx, posthogLayout.Payload(2, cachekeys.KindFlags)).Bytes()
	require.NoError(t, err)
	require.Equal(t, before, after, "the live cache stays as it was")
	tmp, err := b.rdb.Keys(ctx, "*:tmp:*").Result()
	require.NoError(t, err)
	require.Empty(t, tmp)
}
