package hypercache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/testenv"
)

// memSink is a Sink over memory.
type memSink struct{ b []byte }

func (m *memSink) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }

func (m *memSink) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("patch at %d beyond %d bytes", off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}

// sampleJSON is flag-like ASCII JSON of about n bytes, varied enough that zstd has
// real work to do.
func sampleJSON(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	b.WriteString(`{"flags": [`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"active": true, "filters": {"groups": [{"properties": [{"key": "email", "operator": "icontains", "type": "person", "value": "u%d@example.com"}], "rollout_percentage": %d}]}, "id": %d, "key": "flag-%x"}`,
			r.IntN(1e6), r.IntN(101), i, r.Uint64())
	}
	b.WriteString("]}")
	return b.Bytes()[:max(0, min(n, b.Len()))]
}

func decodeAll(t *testing.T, stored []byte) ([]byte, *Reader) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(stored))
	require.NoError(t, err)
	defer r.Close()
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, r.Len(), int64(len(got)))
	return got, r
}

func writeChunked(t *testing.T, payload []byte, compress bool, seed uint64) *memSink {
	t.Helper()
	sink := &memSink{}
	w := NewWriter(sink, compress)
	r := rand.New(rand.NewPCG(seed, 1))
	for rest := payload; len(rest) > 0; {
		n := min(len(rest), 1+r.IntN(200_000))
		_, err := w.Write(rest[:n])
		require.NoError(t, err)
		rest = rest[n:]
	}
	require.NoError(t, w.Close())
	require.Equal(t, int64(len(sink.b)), w.Stored())
	require.Equal(t, int64(len(payload)), w.Len())
	return sink
}

var sizes = []int{0, 1, 255, 256, 490, 600, frameTarget - 1, frameTarget, frameTarget + 1, 1 << 20, 5<<20 + 3}

func TestWriterRoundTrip(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		for i, n := range sizes {
			t.Run(fmt.Sprintf("compress=%v/%d", compress, n), func(t *testing.T) {
				t.Parallel()
				payload := sampleJSON(n, uint64(i))
				sink := writeChunked(t, payload, compress, uint64(i))
				got, r := decodeAll(t, sink.b)
				require.Equal(t, payload, got)
				pickled := len(AppendPickle(nil, payload))
				require.Equal(t, compress && pickled > CompressAbove, r.Compressed, "compressed iff PostHog would compress")
				if compress && n >= 1<<20 {
					require.Less(t, len(sink.b)*5, len(payload), "flag JSON compresses at least 5x")
				}
			})
		}
	}
}

// TestPickleMatchesPython compares the pickle of strings of every form with
// pickle.dumps(s, 4), django-redis's protocol, of the real Python that Django runs on.
func TestPickleMatchesPython(t *testing.T) {
	t.Parallel()
	py := testenv.Python(t)
	for _, n := range []int{0, 3, 255, 256, 1000, frameTarget - 1, frameTarget, 100_000} {
		s := strings.Repeat("a", n)
		if n > 3 {
			s = "é" + s[2:] // two UTF-8 bytes, so n stays the byte length
		}
		out, err := exec.Command(py, "-c", fmt.Sprintf(
			"import pickle,sys; sys.stdout.buffer.write(pickle.dumps(%q if %d<=3 else 'é'+'a'*%d, 4))", s, n, n-2)).Output()
		require.NoError(t, err)
		require.Equal(t, out, AppendPickle(nil, []byte(s)), "n=%d", n)
	}
}

func TestSmallValuesAsPython(t *testing.T) {
	t.Parallel()
	// pickle.dumps("__missing__", 4) and pickle.dumps("abc", 4), from CPython 3.11.
	require.Equal(t, []byte("\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00\x8c\x0b__missing__\x94."), Encode([]byte(Missing), true))
	require.Equal(t, []byte("\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00\x8c\x03abc\x94."), Encode([]byte("abc"), true))
	s, err := DecodeString(Encode([]byte("0123456789abcdef"), true), 64)
	require.NoError(t, err)
	require.Equal(t, "0123456789abcdef", s)
	_, err = DecodeString(Encode([]byte(strings.Repeat("x", 100)), true), 64)
	require.ErrorIs(t, err, ErrUndecodable)
}

func TestReaderRejects(t *testing.T) {
	t.Parallel()
	good := Encode(sampleJSON(2000, 1), true)
	plain := Encode([]byte(`{"flags": []}`), false)
	big := writeChunked(t, sampleJSON(200_000, 2), false, 2).b
	cases := map[string][]byte{
		"empty":              nil,
		"plain JSON":         []byte(`{"flags": []}`),
		"pickled int":        []byte("\x80\x04K\x01."),
		"protocol 6":         []byte("\x80\x06\x8c\x01a\x94."),
		"protocol 1":         []byte("X\x01\x00\x00\x00a."),
		"truncated string":   plain[:len(plain)-4],
		"no stop":            plain[:len(plain)-1],
		"after stop":         append(bytes.Clone(plain), 'x'),
		"invalid UTF-8":      Encode([]byte("ab\xffcd"), false),
		"cut UTF-8 at end":   Encode([]byte("ab\xc3"), false),
		"corrupt zstd":       append(bytes.Clone(good[:20]), bytes.Repeat([]byte{0xAA}, 40)...),
		"truncated zstd":     good[:len(good)/2],
		"large truncated":    big[:len(big)-100],
		"other opcode after": append(bytes.Clone(plain[:len(plain)-2]), 'N', '.'),
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := NewReader(bytes.NewReader(v))
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			require.ErrorIs(t, err, ErrUndecodable)
		})
	}
}

func TestUTF8AcrossReads(t *testing.T) {
	t.Parallel()
	s := []byte(strings.Repeat("aé€😀", 30_000)) // 1-, 2-, 3- and 4-byte runes
	stored := writeChunked(t, s, true, 9).b
	r, err := NewReader(bytes.NewReader(stored))
	require.NoError(t, err)
	defer r.Close()
	var got []byte
	buf := make([]byte, 7) // odd reads split runes everywhere
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	require.Equal(t, s, got)
}

func TestWriterTooLarge(t *testing.T) {
	t.Parallel()
	w := NewWriter(&memSink{}, true)
	w.total = maxPickleUnicode - 1
	_, err := w.Write([]byte("ab"))
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorIs(t, w.Close(), ErrTooLarge)
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestDjangoRedisReadsAndWrites hands values to the readers PostHog's Django side uses
// (django-redis with PostHog's zstd compressor settings, Debian's python3-django-redis
// and python3-zstd) in both directions, through a real Redis.
func TestDjangoRedisReadsAndWrites(t *testing.T) {
	t.Parallel()
	url := testenv.Redis(t)
	rdb := redisClient(t, url)
	ctx := t.Context()

	var keys []string
	want := map[string][]byte{}
	for i, n := range sizes {
		for _, compress := range []bool{false, true} {
			payload := sampleJSON(n, uint64(100+i))
			key := fmt.Sprintf("cache/teams/%d/feature_flags/flags.json:%v", n, compress)
			stored := writeChunked(t, payload, compress, uint64(i)).b
			require.NoError(t, rdb.Set(ctx, "posthog:1:"+key, stored, 0).Err())
			keys = append(keys, key)
			want[key] = payload
		}
	}
	results := testenv.DjangoGet(t, url, keys...)
	for _, key := range keys {
		res := results[key]
		require.Empty(t, res.Error, key)
		// An empty value reads as a miss in Django as in Rust; PostHog never stores "" for
		// a payload, so only the non-empty ones must come back.
		if len(want[key]) == 0 {
			continue
		}
		require.False(t, res.Missing, key)
		require.Equal(t, len(want[key]), res.Len, key)
		require.Equal(t, sha(want[key]), res.SHA256, key)
	}

	// And what Django writes, flagwarden reads.
	for i, n := range []int{5, 600, frameTarget + 10, 3 << 20} {
		payload := sampleJSON(n, uint64(200+i))
		path := t.TempDir() + "/v.json"
		require.NoError(t, writeFile(path, payload))
		key := fmt.Sprintf("django/%d", n)
		testenv.DjangoSet(t, url, key, path)
		stored, err := rdb.Get(ctx, "posthog:1:"+key).Bytes()
		require.NoError(t, err)
		got, r := decodeAll(t, stored)
		require.Equal(t, payload, got)
		require.Equal(t, len(AppendPickle(nil, payload)) > CompressAbove, r.Compressed)
		if len(AppendPickle(nil, payload)) <= CompressAbove {
			require.Equal(t, Encode(payload, true), stored, "small values are byte-identical to Django's")
		}
	}
}
