// Package cachekeys is the Redis key layout of the flag caches flagwarden publishes:
// the payload keys, the chunk keys of payloads too large for one value, the per-team
// metadata hash (a manifest for chunked payloads), and the per-kind index of build
// times that makes freshness scans cheap. The publisher writes through it; the
// cache-freshness collector and the API that serves payloads read through it, so the
// three always agree.
package cachekeys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kind is one of the two caches built per team.
type Kind string

const (
	// KindFlags is the payload the /flags evaluation service reads (flags.json:
	// flags, evaluation_metadata, cohorts).
	KindFlags Kind = "flags"
	// KindDefinitions is the local-evaluation payload server SDKs download
	// (flags_with_cohorts.json: flags, group_type_mapping, cohorts).
	KindDefinitions Kind = "definitions"
)

// Kinds lists every kind in publish order.
var Kinds = []Kind{KindFlags, KindDefinitions}

// File is the kind's HyperCache file name.
func (k Kind) File() string {
	if k == KindDefinitions {
		return "flags_with_cohorts.json"
	}
	return "flags.json"
}

// Needed reports whether a team with these flag counts gets this kind of cache: the
// /flags payload holds active flags, the definitions payload every live flag. A team
// with neither has nothing to miss.
func (k Kind) Needed(activeFlags, liveFlags int64) bool {
	if k == KindFlags {
		return activeFlags > 0
	}
	return liveFlags > 0
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindFlags || k == KindDefinitions }

// ParseKind accepts "flags", "definitions" or the file names.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "flags", "flags.json":
		return KindFlags, nil
	case "definitions", "flags_with_cohorts.json":
		return KindDefinitions, nil
	}
	return "", fmt.Errorf("unknown cache kind %q (want flags or definitions)", s)
}

// PostHogPrefix is django-redis's key prefix (cache version 1) that PostHog's readers
// expect in front of every HyperCache key.
const PostHogPrefix = "posthog:1:"

// Layout names every key. The zero value is flagwarden's own layout with no prefix.
type Layout struct {
	// Prefix is prepended to every key. With PostHog set and Prefix empty, PostHogPrefix
	// is used.
	Prefix string
	// PostHog writes payloads where PostHog's own readers look for them
	// (cache/teams/{id}/feature_flags/{file}), plus its :etag keys and expiry sorted
	// sets, so that flagwarden can stand in for the Celery tasks.
	PostHog bool
}

func (l Layout) prefix() string {
	if l.PostHog && l.Prefix == "" {
		return PostHogPrefix
	}
	return l.Prefix
}

// Payload is the key holding the live payload (absent when the payload is chunked).
func (l Layout) Payload(team int64, kind Kind) string {
	if l.PostHog {
		return l.prefix() + "cache/teams/" + strconv.FormatInt(team, 10) + "/feature_flags/" + kind.File()
	}
	return l.prefix() + "flagwarden/teams/" + strconv.FormatInt(team, 10) + "/" + kind.File()
}

// Meta is the hash with the payload's metadata; for a chunked payload it is the
// manifest that names the build whose chunks are live.
func (l Layout) Meta(team int64, kind Kind) string { return l.Payload(team, kind) + ":meta" }

// Temp is the key a build streams into before it is renamed live.
func (l Layout) Temp(team int64, kind Kind, build string) string {
	return l.Payload(team, kind) + ":tmp:" + build
}

// Building is the set of builds of one team and kind that are writing temporary or
// chunk keys now: what a build that died mid-way leaves behind is found through it.
func (l Layout) Building(team int64, kind Kind) string { return l.Payload(team, kind) + ":building" }

// Chunk is the i-th chunk (from 0) of a chunked payload written by build.
func (l Layout) Chunk(team int64, kind Kind, build string, i int) string {
	return l.Payload(team, kind) + ":chunk:" + build + ":" + strconv.Itoa(i)
}

// ETag is PostHog's :etag key next to the payload (PostHog layout only).
func (l Layout) ETag(team int64, kind Kind) string { return l.Payload(team, kind) + ":etag" }

// Index is the sorted set of build times of one kind: member team id, score unix
// seconds of the last successful build (or unchanged check).
func (l Layout) Index(kind Kind) string { return l.prefix() + "flagwarden:built_at:" + string(kind) }

// Prediction is a team's shared build prediction (the rebuild engine's encoding,
// version v) for one cache contract.
func (l Layout) Prediction(team int64, contract string, v int) string {
	return l.prefix() + "flagwarden:prediction:v" + strconv.Itoa(v) + ":" + contract + ":" + strconv.FormatInt(team, 10)
}

// Expiry is PostHog's expiry-tracking sorted set for the kind (member team id, score
// expiry unix seconds).
func (l Layout) Expiry(kind Kind) string {
	if kind == KindDefinitions {
		return "flag_definitions_cache_expiry"
	}
	return "flags_cache_expiry"
}

// Meta describes the live payload of one team and kind.
type Meta struct {
	// BuiltAt is when the live payload was last built or confirmed unchanged.
	BuiltAt time.Time `json:"built_at"`
	// ETag is the hex SHA-256 of the payload bytes.
	ETag string `json:"etag"`
	// Bytes is the payload length.
	Bytes int64 `json:"bytes"`
	// StoredBytes is what Redis holds for it: in the PostHog layout the pickled and
	// maybe compressed value, else Bytes.
	StoredBytes int64 `json:"stored_bytes"`
	Flags       int64 `json:"flags"`
	Cohorts     int64 `json:"cohorts"`
	// SourceWatermark is the newest change to the team's flag data the build saw.
	SourceWatermark time.Time `json:"source_watermark,omitzero"`
	// Chunks is 0 for a payload stored in the payload key, else the chunk count.
	Chunks int `json:"chunks"`
	// Build identifies the build; chunk keys carry it.
	Build string `json:"build"`
}

// Fields renders m as HSET arguments.
func (m Meta) Fields() []any {
	return []any{
		"built_at", m.BuiltAt.UTC().Format(time.RFC3339Nano),
		"etag", m.ETag,
		"bytes", m.Bytes,
		"stored_bytes", m.StoredBytes,
		"flags", m.Flags,
		"cohorts", m.Cohorts,
		"source_watermark", formatTime(m.SourceWatermark),
		"chunks", m.Chunks,
		"build", m.Build,
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// ErrNoMeta means the team has no published payload of that kind.
var ErrNoMeta = errors.New("no cache metadata")

// ParseMeta reads a metadata hash as HGETALL returns it.
func ParseMeta(h map[string]string) (Meta, error) {
	if len(h) == 0 {
		return Meta{}, ErrNoMeta
	}
	var m Meta
	var err error
	parseInt := func(field string) int64 {
		if err != nil || h[field] == "" {
			return 0
		}
		v, e := strconv.ParseInt(h[field], 10, 64)
		if e != nil {
			err = fmt.Errorf("metadata field %s=%q: %w", field, h[field], e)
		}
		return v
	}
	parseTime := func(field string) time.Time {
		if err != nil || h[field] == "" {
			return time.Time{}
		}
		v, e := time.Parse(time.RFC3339Nano, h[field])
		if e != nil {
			err = fmt.Errorf("metadata field %s=%q: %w", field, h[field], e)
		}
		return v
	}
	m.BuiltAt = parseTime("built_at")
	m.SourceWatermark = parseTime("source_watermark")
	m.ETag = h["etag"]
	m.Build = h["build"]
	m.Bytes = parseInt("bytes")
	m.StoredBytes = parseInt("stored_bytes")
	if m.StoredBytes == 0 {
		m.StoredBytes = m.Bytes // flagwarden's own layout stores payloads as they are
	}
	m.Flags = parseInt("flags")
	m.Cohorts = parseInt("cohorts")
	m.Chunks = int(parseInt("chunks"))
	if err == nil && m.Chunks < 0 {
		err = fmt.Errorf("metadata field chunks=%d is negative", m.Chunks)
	}
	return m, err
}

// ReadMeta returns the metadata of one team's payload, or ErrNoMeta.
func ReadMeta(ctx context.Context, rdb redis.Cmdable, l Layout, team int64, kind Kind) (Meta, error) {
	h, err := rdb.HGetAll(ctx, l.Meta(team, kind)).Result()
	if err != nil {
		return Meta{}, fmt.Errorf("read cache metadata of team %d %s: %w", team, kind, err)
	}
	return ParseMeta(h)
}

// ErrPayloadChanged means a chunked payload was replaced while it was being read;
// reading again gets the new one.
var ErrPayloadChanged = errors.New("payload replaced while reading")

// CopyPayload writes one team's live payload, as stored, to w and returns its metadata.
// A payload in one key is read in GETRANGE pieces of at most 1 MiB (a value replaced
// meanwhile ends the copy with ErrPayloadChanged); a chunked payload is read chunk by
// chunk from the immutable chunks of the build the manifest names.
func CopyPayload(ctx context.Context, rdb redis.Cmdable, l Layout, team int64, kind Kind, w io.Writer) (Meta, error) {
	m, err := ReadMeta(ctx, rdb, l, team, kind)
	if err != nil {
		return m, err
	}
	if m.Chunks == 0 {
		_, err := io.Copy(w, NewRangeReader(ctx, rdb, l.Payload(team, kind), m.StoredBytes, 1<<20))
		return m, err
	}
	for i := range m.Chunks {
		b, err := rdb.Get(ctx, l.Chunk(team, kind, m.Build, i)).Bytes()
		if errors.Is(err, redis.Nil) {
			return m, ErrPayloadChanged
		}
		if err != nil {
			return m, fmt.Errorf("read chunk %d of team %d %s: %w", i, team, kind, err)
		}
		if _, err := w.Write(b); err != nil {
			return m, err
		}
	}
	return m, nil
}

// IndexEntry is one team's last build time from the index.
type IndexEntry struct {
	TeamID  int64
	BuiltAt time.Time
}

// ReadIndex returns up to limit teams of one kind ordered oldest build first, starting
// at offset: the cheap way to find stale caches without reading every hash.
func ReadIndex(ctx context.Context, rdb redis.Cmdable, l Layout, kind Kind, offset, limit int64) ([]IndexEntry, error) {
	zs, err := rdb.ZRangeWithScores(ctx, l.Index(kind), offset, offset+limit-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s build index: %w", kind, err)
	}
	out := make([]IndexEntry, 0, len(zs))
	for _, z := range zs {
		s, _ := z.Member.(string)
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			continue // not ours; the index holds only team ids
		}
		out = append(out, IndexEntry{TeamID: id, BuiltAt: unixFloat(z.Score)})
	}
	return out, nil
}

// IndexScore is the sorted-set score for a build time.
func IndexScore(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func unixFloat(f float64) time.Time { return time.UnixMilli(int64(f * 1000)).UTC() }

// RangeReader reads one Redis string value in GETRANGE pieces, so that a large value is
// never held whole. It expects exactly size bytes: a value that is shorter or longer
// (replaced meanwhile) ends the read with ErrPayloadChanged.
type RangeReader struct {
	ctx   context.Context
	rdb   redis.Cmdable
	key   string
	size  int64
	piece int64
	off   int64
	buf   []byte
}

// NewRangeReader returns a reader of key's value of size bytes, piece bytes per read.
func NewRangeReader(ctx context.Context, rdb redis.Cmdable, key string, size, piece int64) *RangeReader {
	return &RangeReader{ctx: ctx, rdb: rdb, key: key, size: size, piece: max(piece, 1)}
}

func (r *RangeReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.off >= r.size {
			// The value must end here too, or it was replaced by a longer one.
			extra, err := r.rdb.GetRange(r.ctx, r.key, r.size, r.size).Bytes()
			if err != nil {
				return 0, fmt.Errorf("read %s at %d: %w", r.key, r.size, err)
			}
			if len(extra) > 0 {
				return 0, fmt.Errorf("%s is longer than %d bytes: %w", r.key, r.size, ErrPayloadChanged)
			}
			return 0, io.EOF
		}
		end := min(r.off+r.piece, r.size) - 1
		b, err := r.rdb.GetRange(r.ctx, r.key, r.off, end).Bytes()
		if err != nil {
			return 0, fmt.Errorf("read %s at %d: %w", r.key, r.off, err)
		}
		if int64(len(b)) != end-r.off+1 {
			return 0, fmt.Errorf("%s is shorter than %d bytes: %w", r.key, r.size, ErrPayloadChanged)
		}
		r.off += int64(len(b))
		r.buf = b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
