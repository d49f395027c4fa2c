package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/hypercache"
)

// errChanged means the entry was replaced while it was read; reading again gets the
// new one.
var errChanged = errors.New("entry replaced while it was read")

// readAttempts bounds the re-reads of an entry that keeps being replaced.
const readAttempts = 3

// segment is one Redis string of a stored value: the payload key, or one chunk of a
// chunked payload in flagwarden's own layout.
type segment struct {
	key  string
	size int64
}

// rangeReader streams Redis strings in GETRANGE chunks, so a value of any size costs
// one chunk of memory. A chunk shorter than the length read beforehand means the value
// was replaced: errChanged. Its own errors are kept apart from the decoder's, so that a
// Redis failure is never taken for a broken value.
type rangeReader struct {
	ctx   context.Context
	rdb   redis.Cmdable
	segs  []segment
	chunk int64
	seg   int
	off   int64
	buf   []byte
	err   error
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.seg >= len(r.segs) {
			return 0, io.EOF
		}
		s := r.segs[r.seg]
		if r.off >= s.size {
			r.seg++
			r.off = 0
			continue
		}
		end := min(r.off+r.chunk, s.size) - 1
		b, err := r.rdb.GetRange(r.ctx, s.key, r.off, end).Bytes()
		if err != nil {
			r.err = fmt.Errorf("read %s: %w", s.key, err)
			return 0, r.err
		}
		if int64(len(b)) != end-r.off+1 {
			r.err = errChanged
			return 0, r.err
		}
		r.buf = b
		r.off += int64(len(b))
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// redisEntry is what one read of an entry saw.
type redisEntry struct {
	// identity changes whenever the entry is rewritten: lengths, expiry score, build.
	identity string
	segs     []segment
	meta     cachekeys.Meta
	hasMeta  bool
	etag     []byte
	hasETag  bool
	score    float64
	tracked  bool
	// undecodable is set when the value is not a Redis string at all.
	undecodable string
}

// look reads everything about an entry but its bytes, in one round trip (two for a
// chunked payload in flagwarden's layout).
func (v *Verifier) look(ctx context.Context, team int64, kind cachekeys.Kind) (redisEntry, error) {
	l := v.opts.Layout
	var e redisEntry
	pipe := v.opts.Redis.Pipeline()
	strlen := pipe.StrLen(ctx, l.Payload(team, kind))
	metaCmd := pipe.HGetAll(ctx, l.Meta(team, kind))
	var etagCmd *redis.StringCmd
	var scoreCmd *redis.FloatCmd
	if l.PostHog {
		etagCmd = pipe.Get(ctx, l.ETag(team, kind))
		scoreCmd = pipe.ZScore(ctx, l.Expiry(kind), strconv.FormatInt(team, 10))
	}
	_, _ = pipe.Exec(ctx) // each command's own error is looked at below
	size, err := strlen.Result()
	if err != nil {
		if !isWrongType(err) {
			return e, fmt.Errorf("read %s: %w", l.Payload(team, kind), err)
		}
		e.undecodable = "the key holds another Redis type than a string"
	}
	if h, err := metaCmd.Result(); err != nil {
		return e, fmt.Errorf("read %s: %w", l.Meta(team, kind), err)
	} else if m, err := cachekeys.ParseMeta(h); err == nil {
		e.meta, e.hasMeta = m, true
	}
	if l.PostHog {
		if b, err := etagCmd.Bytes(); err == nil {
			e.etag, e.hasETag = b, true
		} else if !errors.Is(err, redis.Nil) && !isWrongType(err) {
			return e, fmt.Errorf("read %s: %w", l.ETag(team, kind), err)
		}
		if s, err := scoreCmd.Result(); err == nil {
			e.score, e.tracked = s, true
		} else if !errors.Is(err, redis.Nil) {
			return e, fmt.Errorf("read %s: %w", l.Expiry(kind), err)
		}
	}
	switch {
	case e.undecodable != "":
	case !l.PostHog && e.hasMeta && e.meta.Chunks > 0:
		// flagwarden's own layout: a chunked payload lives in the chunks the manifest names.
		pipe := v.opts.Redis.Pipeline()
		cmds := make([]*redis.IntCmd, e.meta.Chunks)
		for i := range cmds {
			cmds[i] = pipe.StrLen(ctx, l.Chunk(team, kind, e.meta.Build, i))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return e, fmt.Errorf("read chunks of %s: %w", l.Payload(team, kind), err)
		}
		for i, c := range cmds {
			if c.Val() == 0 {
				e.undecodable = fmt.Sprintf("chunk %d of build %s is missing", i, e.meta.Build)
				e.segs = nil
				break
			}
			e.segs = append(e.segs, segment{key: l.Chunk(team, kind, e.meta.Build, i), size: c.Val()})
		}
	case size > 0:
		e.segs = []segment{{key: l.Payload(team, kind), size: size}}
	}
	e.identity = fmt.Sprintf("%v|%v|%s|%s", e.segs, e.score, e.meta.Build, e.meta.ETag)
	return e, nil
}

func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && len(re.Error()) >= 9 && re.Error()[:9] == "WRONGTYPE"
}

// open streams the entry's JSON text: decoded from the pickle (and zstd) in the PostHog
// layout, as stored in flagwarden's. close must be called.
func (v *Verifier) open(ctx context.Context, e redisEntry) (r io.Reader, rr *rangeReader, closeFn func(), err error) {
	rr = &rangeReader{ctx: ctx, rdb: v.opts.Redis, segs: e.segs, chunk: v.opts.ChunkBytes}
	if !v.opts.Layout.PostHog {
		return rr, rr, func() {}, nil
	}
	hr, err := hypercache.NewReader(rr)
	if err != nil {
		if rr.err != nil {
			return nil, rr, nil, rr.err
		}
		return nil, rr, nil, err
	}
	return hr, rr, hr.Close, nil
}

// checkRedis fills c from the Redis entry, reading it again when it is replaced
// meanwhile.
func (v *Verifier) checkRedis(ctx context.Context, c *Check, fresh digest) {
	for range readAttempts {
		err := v.readRedis(ctx, c, fresh)
		if errors.Is(err, errChanged) {
			continue
		}
		if err != nil {
			c.Outcome, c.Detail = Failed, err.Error()
		}
		return
	}
	c.Outcome, c.Detail = Failed, fmt.Sprintf("the entry was replaced during each of %d reads", readAttempts)
}

func (v *Verifier) readRedis(ctx context.Context, c *Check, fresh digest) error {
	*c = Check{TeamID: c.TeamID, Kind: c.Kind, Tier: c.Tier, FreshBytes: c.FreshBytes, FreshSHA256: c.FreshSHA256,
		DataChangedAt: c.DataChangedAt}
	e, err := v.look(ctx, c.TeamID, c.Kind)
	if err != nil {
		return err
	}
	if e.undecodable != "" {
		c.Outcome, c.Detail = Undecodable, e.undecodable
		return nil
	}
	if len(e.segs) == 0 {
		c.Outcome, c.Detail = Missing, "no entry"
		if !v.opts.Layout.PostHog && e.hasMeta {
			c.Detail = "metadata names a payload that is not there"
		}
		return nil
	}
	stored, marker, decodeErr, err := v.hashEntry(ctx, e)
	if err != nil {
		return err
	}
	// A value replaced during the read is read again rather than judged.
	if again, err := v.look(ctx, c.TeamID, c.Kind); err != nil {
		return err
	} else if again.identity != e.identity {
		return errChanged
	}
	if decodeErr != nil {
		c.Outcome, c.Detail = Undecodable, decodeErr.Error()
		return nil
	}
	if marker {
		c.Outcome, c.Detail = Missing, "stored as PostHog's "+hypercache.Missing+" marker"
		return nil
	}
	c.StoredBytes, c.StoredSHA256 = stored.bytes, stored.sha
	v.sideChecks(c, e, stored)

	var asOf time.Time
	var margin time.Duration
	switch {
	case e.hasMeta && e.meta.ETag == stored.sha:
		// flagwarden wrote these bytes and recorded what data they reflect.
		c.WrittenAt, c.AgeFrom = e.meta.BuiltAt, "flagwarden_meta"
		asOf = cmpTime(e.meta.SourceWatermark, e.meta.BuiltAt)
	case e.tracked:
		// Django's expiry score is int(time.time()) + TTL at the write.
		c.WrittenAt, c.AgeFrom = time.Unix(int64(e.score), 0).UTC().Add(-v.opts.TTL), "expiry_set"
		asOf, margin = c.WrittenAt, time.Second
	}
	if stored == fresh {
		c.Outcome = OK
		return nil
	}
	if err := v.validateRedisJSON(ctx, e); err != nil {
		c.Outcome, c.Detail = Undecodable, err.Error()
		return nil
	}
	judgeAge(c, asOf, margin)
	return nil
}

func cmpTime(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}

// hashEntry hashes the entry's JSON text. decodeErr is set when the value is not what
// PostHog's readers accept; err when Redis failed (or errChanged).
func (v *Verifier) hashEntry(ctx context.Context, e redisEntry) (d digest, marker bool, decodeErr, err error) {
	r, rr, closeFn, err := v.open(ctx, e)
	if err != nil {
		if rr != nil && rr.err != nil {
			return d, false, nil, rr.err
		}
		return d, false, err, nil
	}
	defer closeFn()
	h := newHasher()
	if hr, ok := r.(*hypercache.Reader); ok && hr.Len() == int64(len(hypercache.Missing)) {
		var small bytes.Buffer
		if _, err := io.Copy(&small, r); err != nil {
			if rr.err != nil {
				return d, false, nil, rr.err
			}
			return d, false, err, nil
		}
		if small.String() == hypercache.Missing {
			return d, true, nil, nil
		}
		_, _ = h.Write(small.Bytes()) // a hasher never fails
		return h.digest(), false, nil, nil
	}
	if _, err := io.Copy(h, r); err != nil {
		if rr.err != nil {
			return d, false, nil, rr.err
		}
		return d, false, err, nil
	}
	return h.digest(), false, nil, nil
}

// sideChecks judges the :etag and the expiry tracking against the stored bytes.
func (v *Verifier) sideChecks(c *Check, e redisEntry, stored digest) {
	if !v.opts.Layout.PostHog {
		switch {
		case !e.hasMeta || e.meta.ETag == "":
			c.ETag = CheckMissing
		case e.meta.ETag != stored.sha:
			c.ETag = CheckWrong
		default:
			c.ETag = CheckOK
		}
		return
	}
	switch {
	case !e.hasETag:
		c.ETag = CheckMissing
		c.Detail = appendDetail(c.Detail, "no :etag, so PostHog's readers never answer 304")
	default:
		tag, err := hypercache.DecodeString(e.etag, 64)
		switch {
		case err != nil:
			c.ETag = CheckUndecodable
			c.Detail = appendDetail(c.Detail, ":etag is not a pickled string: "+err.Error())
		case tag != stored.sha[:16]:
			c.ETag = CheckWrong
			c.Detail = appendDetail(c.Detail, fmt.Sprintf(":etag is %q, the stored payload's is %q", tag, stored.sha[:16]))
		default:
			c.ETag = CheckOK
		}
	}
	if e.tracked {
		c.Expiry = CheckOK
	} else {
		c.Expiry = CheckMissing
		c.Detail = appendDetail(c.Detail, "not in "+v.opts.Layout.Expiry(c.Kind)+", so PostHog never refreshes it")
	}
}

func appendDetail(d, more string) string {
	if d == "" {
		return more
	}
	return d + "; " + more
}

// validateRedisJSON reads the entry again to tell a broken value (not JSON) from other
// JSON. Only entries that differ from the fresh build pay for it.
func (v *Verifier) validateRedisJSON(ctx context.Context, e redisEntry) error {
	r, rr, closeFn, err := v.open(ctx, e)
	if err != nil {
		return nil // changed or failed meanwhile: judge it by its bytes
	}
	defer closeFn()
	if err := validJSON(r); err != nil && rr.err == nil {
		return fmt.Errorf("stored text is not JSON: %w", err)
	}
	return nil
}

// validJSON reads exactly one JSON value from r, in bounded memory (one token at a
// time).
func validJSON(r io.Reader) error {
	dec := json.NewDecoder(r)
	// Numbers stay text: a float64 conversion would reject valid JSON numbers beyond
	// its range (a 2,000-digit integer is still one JSON value).
	dec.UseNumber()
	depth, values := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			switch {
			case values == 0:
				return errors.New("empty")
			case depth > 0:
				return errors.New("truncated")
			}
			return nil
		}
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				if depth == 0 {
					values++
				}
				depth++
			} else {
				depth--
			}
		} else if depth == 0 {
			values++
		}
		if values > 1 {
			return errors.New("more than one JSON value")
		}
	}
}
