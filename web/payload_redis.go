package web

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/hypercache"
)

// RedisPayloads reads published payloads from the cache Redis through the layout the
// publisher writes with.
type RedisPayloads struct {
	rdb    redis.Cmdable
	layout cachekeys.Layout
	piece  int64
}

// defaultPiece is how much of a single-key payload one GETRANGE reads.
const defaultPiece = 256 << 10

// NewRedisPayloads returns a payload store over rdb. piece bounds one read of a payload
// stored in one key (0: 256 KiB); chunked payloads are read a chunk at a time.
func NewRedisPayloads(rdb redis.Cmdable, layout cachekeys.Layout, piece int64) *RedisPayloads {
	return &RedisPayloads{rdb: rdb, layout: layout, piece: cmp.Or(piece, defaultPiece)}
}

// errPayloadTorn says the bytes read did not hash to the manifest's ETag: the payload
// was replaced between two reads of one key.
var errPayloadTorn = errors.New("payload replaced while streaming (content does not match its ETag)")

// Payload implements PayloadStore.
func (p *RedisPayloads) Payload(ctx context.Context, team int64, kind string) (Payload, error) {
	k, err := cachekeys.ParseKind(kind)
	if err != nil {
		return Payload{}, err
	}
	m, err := cachekeys.ReadMeta(ctx, p.rdb, p.layout, team, k)
	if errors.Is(err, cachekeys.ErrNoMeta) {
		return Payload{}, ErrNoPayload
	}
	if err != nil {
		return Payload{}, err
	}
	return Payload{
		ETag: m.ETag,
		Size: m.Bytes,
		WriteTo: func(ctx context.Context, w io.Writer) error {
			return p.stream(ctx, team, k, m, w)
		},
	}, nil
}

// stream writes the payload m describes. Chunks are immutable per build, so a chunked
// payload is consistent chunk by chunk. A payload in one key is read in GETRANGE pieces,
// and a publish may RENAME a new value over it between two pieces; so the bytes are
// hashed as they go and the last piece is held back until the hash matches the ETag:
// a torn read ends the response short, which the client sees as a broken transfer,
// never as a complete but mixed payload.
func (p *RedisPayloads) stream(ctx context.Context, team int64, k cachekeys.Kind, m cachekeys.Meta, w io.Writer) error {
	if m.Chunks > 0 {
		var sent int64
		for i := range m.Chunks {
			b, err := p.rdb.Get(ctx, p.layout.Chunk(team, k, m.Build, i)).Bytes()
			if errors.Is(err, redis.Nil) {
				return cachekeys.ErrPayloadChanged
			}
			if err != nil {
				return fmt.Errorf("read chunk %d of team %d %s: %w", i, team, k, err)
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			sent += int64(len(b))
		}
		if sent != m.Bytes {
			return fmt.Errorf("team %d %s: chunks hold %d bytes, manifest says %d: %w", team, k, sent, m.Bytes, cachekeys.ErrPayloadChanged)
		}
		return nil
	}
	key := p.layout.Payload(team, k)
	if p.layout.PostHog {
		return p.streamStored(ctx, key, m, w)
	}
	var h hash.Hash
	if len(m.ETag) == sha256.Size*2 {
		h = sha256.New()
	}
	var held []byte
	for off := int64(0); off < m.Bytes; off += p.piece {
		end := min(off+p.piece, m.Bytes) - 1
		b, err := p.rdb.GetRange(ctx, key, off, end).Bytes()
		if err != nil {
			return fmt.Errorf("read payload of team %d %s at %d: %w", team, k, off, err)
		}
		if int64(len(b)) != end-off+1 {
			return fmt.Errorf("team %d %s: payload shorter than its manifest: %w", team, k, cachekeys.ErrPayloadChanged)
		}
		if h != nil {
			h.Write(b)
		}
		if held != nil {
			if _, err := w.Write(held); err != nil {
				return err
			}
		}
		held = b
	}
	if h != nil && hex.EncodeToString(h.Sum(nil)) != m.ETag {
		return errPayloadTorn
	}
	// The key must not have grown past the manifest either (a longer new value).
	if extra, err := p.rdb.GetRange(ctx, key, m.Bytes, m.Bytes).Bytes(); err == nil && len(extra) > 0 && h == nil {
		return fmt.Errorf("team %d %s: payload longer than its manifest: %w", team, k, cachekeys.ErrPayloadChanged)
	}
	_, err := io.Copy(w, bytes.NewReader(held))
	return err
}

// streamStored writes a PostHog-layout payload: the stored value (pickled, maybe
// compressed) is read in GETRANGE pieces and decoded as it streams. As in stream, the
// last piece of JSON is held back until the whole value has hashed to the ETag, so a
// value replaced mid-read ends the response short instead of mixing two payloads.
func (p *RedisPayloads) streamStored(ctx context.Context, key string, m cachekeys.Meta, w io.Writer) error {
	value := cachekeys.NewRangeReader(ctx, p.rdb, key, m.StoredBytes, p.piece)
	dec, err := hypercache.NewReader(value)
	if err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	defer dec.Close()
	if dec.Len() != m.Bytes {
		return fmt.Errorf("%s holds %d bytes, its metadata says %d: %w", key, dec.Len(), m.Bytes, cachekeys.ErrPayloadChanged)
	}
	h := sha256.New()
	buf, held := make([]byte, p.piece), make([]byte, 0, p.piece)
	for {
		n, err := io.ReadFull(dec, buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, werr := w.Write(held); werr != nil {
				return werr
			}
			held = append(held[:0], buf[:n]...)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
	}
	if hex.EncodeToString(h.Sum(nil)) != m.ETag {
		return errPayloadTorn
	}
	_, err = w.Write(held)
	return err
}
