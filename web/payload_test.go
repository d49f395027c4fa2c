package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// publish writes a payload the way the publisher does: the bytes in one key or in
// chunks of a build, then the metadata hash that makes them live.
func publish(t *testing.T, rdb *redis.Client, l cachekeys.Layout, team int64, kind cachekeys.Kind, body []byte, chunk int) cachekeys.Meta {
	t.Helper()
	ctx := context.Background()
	sum := sha256.Sum256(body)
	m := cachekeys.Meta{BuiltAt: fixtureNow, ETag: hex.EncodeToString(sum[:]), Bytes: int64(len(body)), Flags: 3,
		Build: fmt.Sprintf("b%d", time.Now().UnixNano())}
	if chunk > 0 {
		for i := 0; i*chunk < len(body); i++ {
			require.NoError(t, rdb.Set(ctx, l.Chunk(team, kind, m.Build, i), body[i*chunk:min((i+1)*chunk, len(body))], 0).Err())
			m.Chunks++
		}
	} else {
		stored := body
		if l.PostHog { // as the publisher stores it: pickled, compressed
			stored = hypercache.Encode(body, true)
		}
		m.StoredBytes = int64(len(stored))
		require.NoError(t, rdb.Set(ctx, l.Payload(team, kind), stored, 0).Err())
	}
	require.NoError(t, rdb.HSet(ctx, l.Meta(team, kind), m.Fields()...).Err())
	return m
}

// bigPayload is a JSON payload of about n bytes.
func bigPayload(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"flags":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"key":"flag-%d","filters":{"groups":[{"rollout_percentage":50}]}}`, i, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func TestPayloadStreaming(t *testing.T) {
	t.Parallel()
	url := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	layout := cachekeys.Layout{Prefix: "t:"}
	// A small piece size so that a 300 KB payload takes many GETRANGE reads.
	store := NewRedisPayloads(rdb, layout, 4096)
	b := newBundle(t, func(o *APIOptions) { o.Payloads = store })

	single := bigPayload(300_000)
	mSingle := publish(t, rdb, layout, 7, cachekeys.KindFlags, single, 0)
	chunked := bigPayload(500_000)
	mChunked := publish(t, rdb, layout, 7, cachekeys.KindDefinitions, chunked, 64<<10)
	require.Greater(t, mChunked.Chunks, 5)

	srv := httptest.NewServer(b.router)
	t.Cleanup(srv.Close)
	get := func(path string, headers ...string) (*http.Response, []byte) {
		req, err := http.NewRequest("GET", srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+readToken)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	for _, tc := range []struct {
		path string
		body []byte
		meta cachekeys.Meta
	}{
		{"/api/v1/teams/7/flags", single, mSingle},
		{"/api/v1/teams/7/flags/definitions", chunked, mChunked},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := get(tc.path)
			require.Equal(t, 200, resp.StatusCode)
			require.Equal(t, `"`+tc.meta.ETag+`"`, resp.Header.Get("ETag"))
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			require.EqualValues(t, len(tc.body), resp.ContentLength)
			require.True(t, bytes.Equal(tc.body, body), "streamed body differs from the published one")

			resp, body = get(tc.path, "If-None-Match", `"`+tc.meta.ETag+`"`)
			require.Equal(t, http.StatusNotModified, resp.StatusCode)
			require.Empty(t, body)
			require.Equal(t, `"`+tc.meta.ETag+`"`, resp.Header.Get("ETag"))

			resp, _ = get(tc.path, "If-None-Match", `"stale-etag"`)
			require.Equal(t, 200, resp.StatusCode)

			// HEAD: the GET's headers, length included, without reading the payload.
			req, err := http.NewRequest("HEAD", srv.URL+tc.path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+readToken)
			head, err := srv.Client().Do(req)
			require.NoError(t, err)
			head.Body.Close()
			require.Equal(t, 200, head.StatusCode)
			require.EqualValues(t, len(tc.body), head.ContentLength)
			require.Equal(t, `"`+tc.meta.ETag+`"`, head.Header.Get("ETag"))
		})
	}

	t.Run("unknown team", func(t *testing.T) {
		resp, body := get("/api/v1/teams/4242/flags")
		require.Equal(t, 404, resp.StatusCode)
		require.Contains(t, string(body), "unknown team 4242")
	})
	t.Run("known team without payload", func(t *testing.T) {
		resp, body := get("/api/v1/teams/8/flags/definitions")
		require.Equal(t, 404, resp.StatusCode)
		require.Contains(t, string(body), "team 8 has no published definitions payload")
	})
	t.Run("malformed metadata", func(t *testing.T) {
		require.NoError(t, rdb.HSet(context.Background(), layout.Meta(9, cachekeys.KindFlags), "bytes", "lots").Err())
		resp, body := get("/api/v1/teams/9/flags")
		require.Equal(t, 500, resp.StatusCode)
		require.Contains(t, string(body), codeInternal)
	})
	t.Run("a chunk gone mid-read breaks the transfer", func(t *testing.T) {
		m := publish(t, rdb, layout, 10, cachekeys.KindFlags, chunked, 64<<10)
		require.NoError(t, rdb.Del(context.Background(), layout.Chunk(10, cachekeys.KindFlags, m.Build, 3)).Err())
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/teams/10/flags", nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, "headers were sent before the chunk was missed")
		got, err := io.ReadAll(resp.Body)
		require.Error(t, err, "the client must see a broken transfer, not a short payload")
		require.Less(t, len(got), len(chunked))
	})
	t.Run("a value replaced between pieces is not served whole", func(t *testing.T) {
		old := bigPayload(100_000)
		publish(t, rdb, layout, 11, cachekeys.KindFlags, old, 0)
		// Replace the value but keep the old manifest: what a RENAME between two
		// GETRANGE reads looks like to the reader.
		replaced := bytes.ToUpper(old)
		require.NoError(t, rdb.Set(context.Background(), layout.Payload(11, cachekeys.KindFlags), replaced, 0).Err())
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/teams/11/flags", nil)
		req.Header.Set("Authorization", "Bearer "+readToken)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		require.Error(t, err)
		require.Less(t, len(got), len(old))
	})
	t.Run("redis gone", func(t *testing.T) {
		dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { dead.Close() })
		b2 := newBundle(t, func(o *APIOptions) { o.Payloads = NewRedisPayloads(dead, layout, 0) })
		r := b2.do(t, "GET", "/api/v1/teams/7/flags", readToken, "")
		require.Equal(t, 500, r.Code)
		require.Equal(t, codeInternal, r.errorCode(t))
	})
	t.Run("unknown kind", func(t *testing.T) {
		_, err := store.Payload(context.Background(), 7, "everything")
		require.ErrorContains(t, err, "unknown cache kind")
	})
	require.False(t, strings.Contains(string(single), "\x00"))
}

// maxWriteRecorder records the largest single write: the most of a payload held at once.
type maxWriteRecorder struct {
	bytes.Buffer
	maxWrite int
}

func (m *maxWriteRecorder) Write(p []byte) (int, error) {
	m.maxWrite = max(m.maxWrite, len(p))
	return m.Buffer.Write(p)
}

func TestPayloadIsNeverHeldWhole(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(testenv.Redis(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	layout := cachekeys.Layout{PostHog: true}
	body := bigPayload(1 << 20)
	publish(t, rdb, layout, 3, cachekeys.KindFlags, body, 0)
	publish(t, rdb, layout, 3, cachekeys.KindDefinitions, body, 100_000)
	store := NewRedisPayloads(rdb, layout, 32<<10)
	for kind, most := range map[string]int{"flags": 32 << 10, "definitions": 100_000} {
		p, err := store.Payload(context.Background(), 3, kind)
		require.NoError(t, err)
		var rec maxWriteRecorder
		require.NoError(t, p.WriteTo(context.Background(), &rec))
		require.True(t, bytes.Equal(body, rec.Bytes()), "%s payload differs", kind)
		require.LessOrEqual(t, rec.maxWrite, most, "%s: one write held more than one piece or chunk", kind)
	}
}
