package rebuild

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/hypercache"
	"github.com/flagwarden/flagwarden/internal/writebehind"
	"github.com/flagwarden/flagwarden/rebuild/defaults"
)

// PublisherOptions configure how payloads reach Redis.
type PublisherOptions struct {
	Layout cachekeys.Layout
	// ChunkBytes is the size of one write (APPEND) to Redis. Default 1 MiB.
	ChunkBytes int
	// MaxValueBytes is the largest single Redis value written; a payload beyond it is
	// stored as chunk keys with a manifest. Redis's hard limit is 512 MB. Default 256 MiB.
	// PostHog's readers know no chunks: in the PostHog layout a stored value beyond it
	// fails the build with a *PayloadTooLargeError and the live cache stays as it was.
	MaxValueBytes int64
	// Compress, in the PostHog layout, zstd-compresses stored values over 512 bytes as
	// PostHog's compressor does with USE_REDIS_COMPRESSION (its readers accept both).
	Compress bool
	// Mirror, if set, receives every PostHog-layout payload as plain JSON too: PostHog's
	// second tier (S3), which its readers fall back to on a Redis miss.
	Mirror Mirror
	// TempTTL expires a build's temporary keys should the process die mid-build.
	// Default 1h.
	TempTTL time.Duration
	// OldChunkGrace is how long a replaced chunked payload stays readable for readers
	// in the middle of it. Default 5m.
	OldChunkGrace time.Duration
	// PostHogTTL, with the PostHog layout, is the expiry recorded in PostHog's expiry
	// sorted sets and set on the payload key. Default 7 days (FLAGS_CACHE_TTL).
	PostHogTTL time.Duration
	// Clock stamps build times. Default the wall clock; the demo passes its simulated
	// clock so that cache freshness is judged on the same clock as the data's changes.
	Clock clock.Clock
}

// DefaultPublisherOptions are the settings a Publisher uses where PublisherOptions
// leave a field unset.
func DefaultPublisherOptions() PublisherOptions { return PublisherOptions{}.withDefaults() }

func (o PublisherOptions) withDefaults() PublisherOptions {
	o.ChunkBytes = cmp.Or(o.ChunkBytes, defaults.ChunkBytes)
	o.MaxValueBytes = cmp.Or(o.MaxValueBytes, defaults.MaxValueBytes)
	o.TempTTL = cmp.Or(o.TempTTL, time.Hour)
	o.OldChunkGrace = cmp.Or(o.OldChunkGrace, 5*time.Minute)
	o.PostHogTTL = cmp.Or(o.PostHogTTL, 7*24*time.Hour)
	o.Clock = clock.Or(o.Clock)
	if int64(o.ChunkBytes) > o.MaxValueBytes {
		o.ChunkBytes = int(o.MaxValueBytes)
	}
	return o
}

// Mirror is a second store of PostHog-layout payloads (S3). Begin is called as a
// payload starts; the upload then receives the payload's JSON in order.
type Mirror interface {
	Begin(ctx context.Context, team int64, kind cachekeys.Kind) (MirrorUpload, error)
}

// MirrorUpload is one payload on its way to the mirror. Commit makes it live and is
// called before the Redis payload goes live, so that a Redis miss never falls back to
// an older copy than Redis had; Abort discards it.
type MirrorUpload interface {
	io.Writer
	Commit(ctx context.Context) error
	Abort(ctx context.Context)
}

// PayloadTooLargeError is a PostHog-layout payload whose stored value would exceed the
// largest Redis value written. PostHog's readers have no chunk protocol, so it is never
// published; the engine quarantines the team with this reason.
type PayloadTooLargeError struct {
	TeamID int64
	Kind   cachekeys.Kind
	// Limit is PublisherOptions.MaxValueBytes; Stored is how far the value had grown
	// when it passed it.
	Limit, Stored int64
}

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("team %d %s: stored payload passed %d bytes, over the %d-byte Redis value limit (PostHog's readers cannot read chunks)",
		e.TeamID, e.Kind, e.Stored, e.Limit)
}

// Publisher streams payloads into Redis and makes them live atomically.
type Publisher struct {
	rdb  redis.UniversalClient
	opts PublisherOptions
}

// NewPublisher returns a publisher writing to rdb.
func NewPublisher(rdb redis.UniversalClient, opts PublisherOptions) *Publisher {
	return &Publisher{rdb: rdb, opts: opts.withDefaults()}
}

// EncodeChunk is the write-behind chunk of PostHog-layout streams: the encoder's
// output is far smaller than its input, so appends still reach ChunkBytes while the
// two raw buffers per stream stay small (each build holds four of them, and the
// garbage collector lets the heap reach twice what is live).
const EncodeChunk = 64 << 10

func (p *Publisher) chunk() int {
	if p.opts.Layout.PostHog {
		return min(p.opts.ChunkBytes, EncodeChunk)
	}
	return p.opts.ChunkBytes
}

// StoredAppend bounds one APPEND of PostHog-layout (encoded) bytes. The encoded output
// is a twentieth of the payload, so even 256 KiB appends are few (about 350 for both
// payloads of a million flags) while each stream holds a quarter of what a ChunkBytes
// batch would: the publish path's heap stays near the encoder's own.
const StoredAppend = 256 << 10

func (p *Publisher) storedAppend() int { return min(p.opts.ChunkBytes, StoredAppend) }

// Layout is the key layout the publisher writes.
func (p *Publisher) Layout() cachekeys.Layout { return p.opts.Layout }

// Stream is one payload being written. It is an io.Writer; Commit makes it live, Abort
// removes what was written. Readers never see a Stream's bytes before Commit.
//
// Full chunks go to Redis from a write-behind goroutine while the caller fills the next
// one (two chunk buffers per stream), so reading the next flag page overlaps the write
// (and in the PostHog layout the compression) of the previous chunk. A write error
// surfaces on a later Write or on Commit.
type Stream struct {
	p     *Publisher
	ctx   context.Context
	team  int64
	kind  cachekeys.Kind
	build string
	hash  hash.Hash
	total int64
	done  bool
	wb    *writebehind.Writer

	// Owned by the write-behind goroutine until the writer is closed.
	inPart int64 // bytes in the current temporary value
	parts  int   // values rolled into chunk keys so far
	wrote  bool  // the temporary key exists
	// The PostHog layout: the payload's stored form (pickle, maybe zstd).
	enc    *hypercache.Writer
	out    []byte       // encoded bytes not yet appended
	stored int64        // encoded bytes so far
	upload MirrorUpload // the mirror's copy, or nil
}

// Begin starts a payload of one team and kind. ctx bounds every write. The caller
// must end the stream with Commit or Abort, which also end its writer goroutine.
func (p *Publisher) Begin(ctx context.Context, team int64, kind cachekeys.Kind) *Stream {
	var b [8]byte
	_, _ = rand.Read(b[:])
	s := &Stream{p: p, ctx: ctx, team: team, kind: kind, build: hex.EncodeToString(b[:]), hash: sha256.New()}
	var beginErr error
	if p.opts.Layout.PostHog {
		s.enc = hypercache.NewWriter(storedSink{s}, p.opts.Compress)
		if p.opts.Mirror != nil {
			if s.upload, beginErr = p.opts.Mirror.Begin(ctx, team, kind); beginErr != nil {
				beginErr = fmt.Errorf("begin mirror upload of team %d %s: %w", team, kind, beginErr)
			}
		}
	}
	s.wb = writebehind.New(p.chunk(), s.handle, s.complete)
	s.wb.Fail(beginErr)
	return s
}

// handle takes one chunk of payload, in the write-behind goroutine: to the mirror,
// then to Redis, encoded in the PostHog layout and as it is in flagwarden's own.
func (s *Stream) handle(chunk []byte) error {
	if s.upload != nil {
		if _, err := s.upload.Write(chunk); err != nil {
			return fmt.Errorf("mirror payload of team %d %s: %w", s.team, s.kind, err)
		}
	}
	if s.enc != nil {
		_, err := s.enc.Write(chunk)
		return err
	}
	return s.flush(chunk)
}

// complete ends the PostHog-layout encoding after the last chunk (or drops it).
func (s *Stream) complete(ok bool) error {
	if s.enc == nil {
		return nil
	}
	if !ok {
		s.enc.Abort()
		return nil
	}
	if err := s.enc.Close(); err != nil {
		return fmt.Errorf("encode payload of team %d %s: %w", s.team, s.kind, err)
	}
	return s.flushOut()
}

// storedSink receives the PostHog-layout encoder's output: it batches appends to the
// temporary key and patches the header with SETRANGE once the length is known.
type storedSink struct{ s *Stream }

func (k storedSink) Write(p []byte) (int, error) {
	s := k.s
	if limit := s.p.opts.MaxValueBytes; s.stored+int64(len(p)) > limit {
		return 0, &PayloadTooLargeError{TeamID: s.team, Kind: s.kind, Limit: limit, Stored: s.stored + int64(len(p))}
	}
	if s.out == nil {
		s.out = make([]byte, 0, s.p.storedAppend()+EncodeChunk) // allocated once: no growth garbage
	}
	s.out = append(s.out, p...)
	s.stored += int64(len(p))
	if len(s.out) >= s.p.storedAppend() {
		if err := s.flushOut(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (k storedSink) WriteAt(p []byte, off int64) (int, error) {
	s := k.s
	if err := s.flushOut(); err != nil {
		return 0, err
	}
	if err := s.p.rdb.SetRange(s.ctx, s.temp(), off, string(p)).Err(); err != nil {
		return 0, fmt.Errorf("patch payload header of team %d %s: %w", s.team, s.kind, err)
	}
	return len(p), nil
}

func (s *Stream) flushOut() error {
	if len(s.out) == 0 {
		return nil
	}
	err := s.appendTemp(s.out)
	s.out = s.out[:0]
	return err
}

// Write hashes b and hands it to the write-behind goroutine.
func (s *Stream) Write(b []byte) (int, error) {
	if s.done {
		return 0, errors.New("stream already finished")
	}
	s.hash.Write(b)
	s.total += int64(len(b))
	return s.wb.Write(b)
}

func (s *Stream) temp() string { return s.p.opts.Layout.Temp(s.team, s.kind, s.build) }

// flush appends one chunk to the temporary value, first rolling the value into a
// chunk key when the chunk would take it past MaxValueBytes.
func (s *Stream) flush(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	l := s.p.opts.Layout
	if s.inPart > 0 && s.inPart+int64(len(buf)) > s.p.opts.MaxValueBytes {
		if err := s.p.rdb.Rename(s.ctx, s.temp(), l.Chunk(s.team, s.kind, s.build, s.parts)).Err(); err != nil {
			return fmt.Errorf("roll chunk %d of team %d %s: %w", s.parts, s.team, s.kind, err)
		}
		s.parts++
		s.inPart = 0
	}
	return s.appendTemp(buf)
}

// appendTemp appends buf to the temporary value, setting its expiry on the first write.
func (s *Stream) appendTemp(buf []byte) error {
	pipe := s.p.rdb.Pipeline()
	// APPEND with the []byte itself, not a string copy of it; buf is reused only
	// after Exec returns.
	pipe.Do(s.ctx, "APPEND", s.temp(), buf)
	if s.inPart == 0 {
		pipe.Expire(s.ctx, s.temp(), s.p.opts.TempTTL)
	}
	if !s.wrote {
		// Register the build, so that its keys can be found if its process dies.
		building := s.p.opts.Layout.Building(s.team, s.kind)
		pipe.SAdd(s.ctx, building, s.build)
		pipe.Expire(s.ctx, building, s.p.opts.TempTTL)
	}
	if _, err := pipe.Exec(s.ctx); err != nil {
		return fmt.Errorf("write payload of team %d %s: %w", s.team, s.kind, err)
	}
	s.wrote = true
	s.inPart += int64(len(buf))
	return nil
}

// Bytes is the payload length so far.
func (s *Stream) Bytes() int64 { return s.total }

// ETag is the hex SHA-256 of the bytes written so far.
func (s *Stream) ETag() string { return hex.EncodeToString(s.hash.Sum(nil)) }

// Published is the outcome of one Commit.
type Published struct {
	Meta cachekeys.Meta
	// Unchanged is true when the live payload already had this ETag and was left as is.
	Unchanged bool
}

// Commit makes the payload live: the live key (or manifest) is replaced in one
// MULTI/EXEC, so a reader sees the old payload or the new one. An unchanged payload
// (same ETag as live) is not rewritten; only its build time moves.
func (s *Stream) Commit(meta cachekeys.Meta) (Published, error) {
	if s.done {
		return Published{}, errors.New("stream already finished")
	}
	if err := s.wb.Close(); err != nil {
		s.Abort()
		return Published{}, err
	}
	s.done = true
	ctx, l, rdb := s.ctx, s.p.opts.Layout, s.p.rdb
	meta.ETag, meta.Bytes, meta.Build = s.ETag(), s.total, s.build
	meta.StoredBytes = s.total
	if s.enc != nil {
		meta.StoredBytes = s.stored
	}
	if meta.BuiltAt.IsZero() {
		meta.BuiltAt = s.p.opts.Clock.Now().UTC()
	}
	team := strconv.FormatInt(s.team, 10)

	live, err := s.liveMeta(ctx, meta)
	if err != nil && !errors.Is(err, cachekeys.ErrNoMeta) {
		s.abort()
		return Published{}, err
	}
	if err == nil && live.ETag == meta.ETag && l.PostHog {
		// The metadata can outlive what it describes: the payload key expires on its own
		// TTL, and another writer (Django) may have replaced it and its :etag. Then the
		// payload is written again rather than recorded as unchanged.
		if same, cerr := s.liveMatches(ctx, meta); cerr != nil {
			s.abort()
			return Published{}, cerr
		} else if !same {
			err = cachekeys.ErrNoMeta
		}
	}
	// The mirror goes live first: a Redis miss then never falls back to an older copy.
	if s.upload != nil {
		if err := s.upload.Commit(ctx); err != nil {
			s.upload = nil // committing failed: it cleans up after itself
			s.abort()
			return Published{}, fmt.Errorf("publish mirror copy of team %d %s: %w", s.team, s.kind, err)
		}
		s.upload = nil
	}
	if err == nil && live.ETag == meta.ETag {
		s.abort()
		_, err := rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			if live.Build == "" {
				pipe.HSet(ctx, l.Meta(s.team, s.kind), live.Fields()...) // first sight of a payload Django wrote
			}
			pipe.HSet(ctx, l.Meta(s.team, s.kind), "built_at", meta.BuiltAt.Format(time.RFC3339Nano),
				"source_watermark", formatWatermark(meta.SourceWatermark))
			pipe.ZAdd(ctx, l.Index(s.kind), redis.Z{Member: team, Score: cachekeys.IndexScore(meta.BuiltAt)})
			s.posthogExtras(pipe, meta, team)
			if l.PostHog {
				// The expiry set now says the entry lives another TTL: so must the key.
				pipe.Expire(ctx, l.Payload(s.team, s.kind), s.p.opts.PostHogTTL)
			}
			return nil
		})
		if err != nil {
			return Published{}, fmt.Errorf("record unchanged payload of team %d %s: %w", s.team, s.kind, err)
		}
		live.BuiltAt, live.SourceWatermark = meta.BuiltAt, meta.SourceWatermark
		return Published{Meta: live, Unchanged: true}, nil
	}

	if !s.wrote {
		// An empty payload never reaches Redis through flush; builders always write
		// something, but keep the key present for correctness.
		if err := rdb.Set(ctx, s.temp(), "", s.p.opts.TempTTL).Err(); err != nil {
			s.abort()
			return Published{}, fmt.Errorf("write payload of team %d %s: %w", s.team, s.kind, err)
		}
	}
	if s.parts > 0 {
		meta.Chunks = s.parts + 1
	}
	_, err = rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		if meta.Chunks > 0 {
			last := l.Chunk(s.team, s.kind, s.build, s.parts)
			pipe.Rename(ctx, s.temp(), last)
			for i := range meta.Chunks {
				pipe.Persist(ctx, l.Chunk(s.team, s.kind, s.build, i))
			}
			pipe.Del(ctx, l.Payload(s.team, s.kind))
		} else {
			pipe.Rename(ctx, s.temp(), l.Payload(s.team, s.kind))
			if l.PostHog {
				pipe.Expire(ctx, l.Payload(s.team, s.kind), s.p.opts.PostHogTTL)
			} else {
				pipe.Persist(ctx, l.Payload(s.team, s.kind))
			}
		}
		pipe.Del(ctx, l.Meta(s.team, s.kind))
		pipe.HSet(ctx, l.Meta(s.team, s.kind), meta.Fields()...)
		pipe.ZAdd(ctx, l.Index(s.kind), redis.Z{Member: team, Score: cachekeys.IndexScore(meta.BuiltAt)})
		pipe.SRem(ctx, l.Building(s.team, s.kind), s.build)
		s.posthogExtras(pipe, meta, team)
		// A replaced chunked payload stays readable for a grace period, then expires.
		for i := range live.Chunks {
			pipe.Expire(ctx, l.Chunk(s.team, s.kind, live.Build, i), s.p.opts.OldChunkGrace)
		}
		return nil
	})
	if err != nil {
		s.abort()
		return Published{}, fmt.Errorf("publish payload of team %d %s: %w", s.team, s.kind, err)
	}
	return Published{Meta: meta}, nil
}

// liveMeta describes the live payload: flagwarden's metadata hash, or in the PostHog
// layout, where Django may have written the payload, its pickled :etag (the first 16
// hex digits of the same SHA-256). A Django payload whose :etag matches meta is the
// same content, so it is described by meta with the stored length Redis reports.
func (s *Stream) liveMeta(ctx context.Context, meta cachekeys.Meta) (cachekeys.Meta, error) {
	l, rdb := s.p.opts.Layout, s.p.rdb
	live, err := cachekeys.ReadMeta(ctx, rdb, l, s.team, s.kind)
	if !l.PostHog || !errors.Is(err, cachekeys.ErrNoMeta) {
		return live, err
	}
	pipe := rdb.Pipeline()
	etag := pipe.Get(ctx, l.ETag(s.team, s.kind))
	stored := pipe.StrLen(ctx, l.Payload(s.team, s.kind))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return live, fmt.Errorf("read live etag of team %d %s: %w", s.team, s.kind, err)
	}
	raw, _ := etag.Bytes()
	tag, derr := hypercache.DecodeString(raw, 64)
	if derr != nil || stored.Val() == 0 || tag != meta.ETag[:16] {
		return live, cachekeys.ErrNoMeta
	}
	live = meta
	live.Build, live.StoredBytes = "", stored.Val()
	return live, nil
}

// liveMatches reports whether the PostHog-layout payload key still holds the content
// meta describes: the key exists and its :etag is meta's.
func (s *Stream) liveMatches(ctx context.Context, meta cachekeys.Meta) (bool, error) {
	l := s.p.opts.Layout
	pipe := s.p.rdb.Pipeline()
	exists := pipe.Exists(ctx, l.Payload(s.team, s.kind))
	etag := pipe.Get(ctx, l.ETag(s.team, s.kind))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("read live payload of team %d %s: %w", s.team, s.kind, err)
	}
	raw, _ := etag.Bytes()
	tag, derr := hypercache.DecodeString(raw, 64)
	return exists.Val() == 1 && derr == nil && tag == meta.ETag[:16], nil
}

func (s *Stream) posthogExtras(pipe redis.Pipeliner, meta cachekeys.Meta, team string) {
	l := s.p.opts.Layout
	if !l.PostHog {
		return
	}
	// PostHog's ETag is the first 16 hex digits of the SHA-256, stored as Django stores
	// every value: pickled.
	pipe.Set(s.ctx, l.ETag(s.team, s.kind), hypercache.Encode([]byte(meta.ETag[:16]), s.p.opts.Compress), s.p.opts.PostHogTTL)
	pipe.ZAdd(s.ctx, l.Expiry(s.kind), redis.Z{Member: team, Score: float64(meta.BuiltAt.Add(s.p.opts.PostHogTTL).Unix())})
}

func formatWatermark(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Abort removes everything the stream wrote; the live payload is untouched. It is safe
// to call after Commit (then it does nothing) and when Redis is unreachable (the
// temporary keys then expire on their own).
func (s *Stream) Abort() {
	if s.done {
		return
	}
	s.done = true
	s.abort()
}

func (s *Stream) abort() {
	s.wb.Abort() // no write may land after the keys are deleted
	if s.upload != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
		s.upload.Abort(ctx)
		cancel()
		s.upload = nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
	defer cancel()
	keys := []string{s.temp()}
	for i := 0; i <= s.parts; i++ {
		keys = append(keys, s.p.opts.Layout.Chunk(s.team, s.kind, s.build, i))
	}
	pipe := s.p.rdb.Pipeline()
	pipe.Del(ctx, keys...)
	pipe.SRem(ctx, s.p.opts.Layout.Building(s.team, s.kind), s.build)
	_, _ = pipe.Exec(ctx) // best effort: the keys carry a TTL
}

// Clean removes the temporary and chunk keys of every build of team still registered
// as writing: call it only when no build of the team runs (its process died). It
// returns how many keys it removed.
func (p *Publisher) Clean(ctx context.Context, team int64) (int64, error) {
	l := p.opts.Layout
	var removed int64
	for _, kind := range cachekeys.Kinds {
		builds, err := p.rdb.SMembers(ctx, l.Building(team, kind)).Result()
		if err != nil {
			return removed, fmt.Errorf("list unfinished builds of team %d %s: %w", team, kind, err)
		}
		for _, build := range builds {
			// Chunk keys are numbered from 0 in the order they were rolled.
			const batch = 16
			keys := []string{l.Temp(team, kind, build)}
			for first := 0; ; first += batch {
				for i := first; i < first+batch; i++ {
					keys = append(keys, l.Chunk(team, kind, build, i))
				}
				n, err := p.rdb.Del(ctx, keys...).Result()
				if err != nil {
					return removed, fmt.Errorf("remove keys of build %s of team %d %s: %w", build, team, kind, err)
				}
				removed += n
				// Fewer than a batch of chunks: the last one is behind (the temporary
				// key of the first batch may be gone already, renamed into a chunk).
				if n < int64(len(keys)) && (first > 0 || n < batch) {
					break
				}
				keys = keys[:0]
			}
			if err := p.rdb.SRem(ctx, l.Building(team, kind), build).Err(); err != nil {
				return removed, fmt.Errorf("forget build %s of team %d %s: %w", build, team, kind, err)
			}
		}
	}
	return removed, nil
}
