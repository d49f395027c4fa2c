package s3tier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/testenv"
	"github.com/flagwarden/flagwarden/rebuild"
)

var _ rebuild.MirrorUpload = (*Upload)(nil)

func newTier(t *testing.T, srv *testenv.S3Server, reg prometheus.Registerer) *Tier {
	t.Helper()
	tier, err := New(context.Background(), Options{
		Endpoint: srv.Endpoint, Bucket: srv.Bucket, Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PathStyle: true,
		Timeout: 5 * time.Second, Registerer: reg,
	})
	require.NoError(t, err)
	return tier
}

func readAll(t *testing.T, tier *Tier, team int64, kind cachekeys.Kind) string {
	t.Helper()
	o, err := tier.Open(context.Background(), team, kind)
	require.NoError(t, err)
	defer o.Body.Close()
	b, err := io.ReadAll(o.Body)
	require.NoError(t, err)
	require.Equal(t, int64(len(b)), o.Size)
	return string(b)
}

func put(t *testing.T, tier *Tier, team int64, kind cachekeys.Kind, body string) error {
	t.Helper()
	u, err := tier.Begin(context.Background(), team, kind)
	require.NoError(t, err)
	for len(body) > 0 {
		n := min(len(body), 1000)
		if _, err := u.Write([]byte(body[:n])); err != nil {
			u.Abort(context.Background())
			return err
		}
		body = body[n:]
	}
	return u.Commit(context.Background())
}

func pendingUploads(t *testing.T, tier *Tier) int {
	t.Helper()
	out, err := tier.client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &tier.opts.Bucket})
	require.NoError(t, err)
	return len(out.Uploads)
}

func TestKeyIsPostHogsObjectKey(t *testing.T) {
	t.Parallel()
	require.Equal(t, "cache/teams/42/feature_flags/flags.json", Key(42, cachekeys.KindFlags))
	require.Equal(t, "cache/teams/7/feature_flags/flags_with_cohorts.json", Key(7, cachekeys.KindDefinitions))
}

func TestSmallPayloadIsOnePutOfPlainJSON(t *testing.T) {
	t.Parallel()
	srv := testenv.S3(t)
	reg := prometheus.NewRegistry()
	tier := newTier(t, srv, reg)
	require.NoError(t, tier.Ping(context.Background()))

	_, err := tier.Open(context.Background(), 42, cachekeys.KindFlags)
	require.ErrorIs(t, err, ErrNotFound)

	body := `{"flags": [{"key": "caf\u00e9"}], "evaluation_metadata": {}}`
	u := tier.Start(context.Background(), 42, cachekeys.KindFlags)
	_, err = io.WriteString(u, body)
	require.NoError(t, err)
	require.NoError(t, u.Commit(context.Background()))
	require.Zero(t, u.Parts(), "a small payload is one PUT")
	u.Abort(context.Background()) // after Commit: nothing happens

	require.Equal(t, body, readAll(t, tier, 42, cachekeys.KindFlags))
	// The bytes on the server's disk are the JSON text itself: no pickle, no zstd.
	onDisk, err := os.ReadFile(srv.ObjectPath("cache/teams/42/feature_flags/flags.json"))
	require.NoError(t, err)
	require.Equal(t, body, string(onDisk))
	require.Equal(t, 1.0, testutil.ToFloat64(tier.metrics.uploads.WithLabelValues("put", "ok")))

	// Exactly one part's worth is still a single PUT; an empty payload is an object too.
	exact := strings.Repeat("x", MinPartSize)
	u = tier.Start(context.Background(), 42, cachekeys.KindDefinitions)
	_, err = io.WriteString(u, exact)
	require.NoError(t, err)
	require.NoError(t, u.Commit(context.Background()))
	require.Zero(t, u.Parts())
	require.Equal(t, exact, readAll(t, tier, 42, cachekeys.KindDefinitions))
	require.NoError(t, put(t, tier, 43, cachekeys.KindFlags, ""))
	require.Empty(t, readAll(t, tier, 43, cachekeys.KindFlags))
	require.Zero(t, pendingUploads(t, tier))
}

// payload is a deterministic JSON-like stream of n bytes, produced in pieces so that
// the test itself never holds it.
type payload struct {
	n, off int64
}

func (p *payload) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := 0
	for k < len(b) && p.off < p.n {
		b[k] = "{\"key\": \"flag-0123456789\"}, "[p.off%28]
		k++
		p.off++
	}
	return k, nil
}

func heapBytes() int64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func TestLargePayloadIsMultipartInBoundedMemory(t *testing.T) {
	// Not parallel: the heap reading is process wide.
	srv := testenv.S3(t)
	tier := newTier(t, srv, prometheus.NewRegistry())
	const size = 64<<20 + 12345

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
	u := tier.Start(context.Background(), 9, cachekeys.KindDefinitions)
	want := sha256.New()
	buf := make([]byte, 32<<10)
	src := &payload{n: size}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			want.Write(buf[:n])
			_, werr := u.Write(buf[:n])
			require.NoError(t, werr)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	require.NoError(t, u.Commit(context.Background()))
	close(stop)
	wg.Wait()

	require.Equal(t, (size+MinPartSize-1)/MinPartSize, u.Parts(), "parts of PartSize")
	grew := peak.Load() - base
	t.Logf("64 MiB upload in %d parts of %d MiB: heap grew by at most %.1f MiB", u.Parts(), MinPartSize>>20, float64(grew)/(1<<20))
	// Two part buffers plus the client's own working set; the payload is 64 MiB.
	require.Less(t, grew, int64(4*MinPartSize+8<<20), "upload memory is bounded by the part size, not the payload")

	o, err := tier.Open(context.Background(), 9, cachekeys.KindDefinitions)
	require.NoError(t, err)
	got := sha256.New()
	n, err := io.Copy(got, o.Body)
	require.NoError(t, err)
	require.NoError(t, o.Body.Close())
	require.Equal(t, int64(size), n)
	require.Equal(t, hex.EncodeToString(want.Sum(nil)), hex.EncodeToString(got.Sum(nil)))
	require.True(t, strings.HasSuffix(strings.Trim(o.ETag, `"`), fmt.Sprintf("-%d", u.Parts())), "S3 stored a multipart object, ETag %s", o.ETag)
	require.Equal(t, 1.0, testutil.ToFloat64(tier.metrics.uploads.WithLabelValues("multipart", "ok")))
	require.Zero(t, pendingUploads(t, tier))
}

func TestAbortDropsTheMultipartUploadAndKeepsTheLiveObject(t *testing.T) {
	t.Parallel()
	srv := testenv.S3(t)
	tier := newTier(t, srv, prometheus.NewRegistry())
	require.NoError(t, put(t, tier, 5, cachekeys.KindFlags, `{"flags": []}`))

	u := tier.Start(context.Background(), 5, cachekeys.KindFlags)
	_, err := io.Copy(u, &payload{n: 3*MinPartSize + 10})
	require.NoError(t, err)
	require.Equal(t, 1, pendingUploads(t, tier), "parts are on their way")
	u.Abort(context.Background())
	u.Abort(context.Background()) // idempotent
	require.Zero(t, pendingUploads(t, tier), "an aborted upload leaves no parts behind")
	require.Equal(t, `{"flags": []}`, readAll(t, tier, 5, cachekeys.KindFlags))
	_, err = u.Write([]byte("x"))
	require.Error(t, err, "writes after Abort fail")
	require.Error(t, u.Commit(context.Background()), "Commit after Abort fails")
}

func TestOutageFailsTheUploadAndLeavesTheOldObject(t *testing.T) {
	t.Parallel()
	srv := testenv.S3(t)
	tier := newTier(t, srv, prometheus.NewRegistry())
	require.NoError(t, put(t, tier, 8, cachekeys.KindFlags, `{"v": 1}`))

	srv.Stop()
	require.Error(t, put(t, tier, 8, cachekeys.KindFlags, `{"v": 2}`), "a single PUT fails while S3 is down")
	u, err := tier.Begin(context.Background(), 8, cachekeys.KindDefinitions)
	require.NoError(t, err)
	_, err = io.Copy(u, &payload{n: 2*MinPartSize + 1})
	require.Error(t, err, "starting a multipart upload fails while S3 is down")
	require.Error(t, u.Commit(context.Background()))

	srv.Start()
	require.Equal(t, `{"v": 1}`, readAll(t, tier, 8, cachekeys.KindFlags), "the live object is the old one")
	_, err = tier.Open(context.Background(), 8, cachekeys.KindDefinitions)
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, put(t, tier, 8, cachekeys.KindFlags, `{"v": 2}`), "a retry after the outage succeeds")
	require.Equal(t, `{"v": 2}`, readAll(t, tier, 8, cachekeys.KindFlags))
}

func TestOutageMidMultipartFailsCommit(t *testing.T) {
	t.Parallel()
	srv := testenv.S3(t)
	tier := newTier(t, srv, prometheus.NewRegistry())
	u := tier.Start(context.Background(), 3, cachekeys.KindFlags)
	_, err := io.Copy(u, &payload{n: MinPartSize + 1}) // the multipart upload has begun
	require.NoError(t, err)
	srv.Stop()
	_, werr := io.Copy(u, &payload{n: 2 * MinPartSize})
	cerr := u.Commit(context.Background())
	require.Error(t, errors.Join(werr, cerr), "parts sent while S3 is down fail the upload")
	srv.Start()
	_, err = tier.Open(context.Background(), 3, cachekeys.KindFlags)
	require.ErrorIs(t, err, ErrNotFound, "nothing went live")
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := New(context.Background(), Options{})
	require.ErrorContains(t, err, "Bucket is required")
	_, err = New(context.Background(), Options{Bucket: "b", AccessKeyID: "only"})
	require.ErrorContains(t, err, "set together")
	tier, err := New(context.Background(), Options{Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s", PartSize: 1})
	require.NoError(t, err)
	require.Equal(t, int64(MinPartSize), tier.PartSize(), "parts are never below S3's minimum")
}
