package s3tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/rebuild"
)

// Upload is one payload on its way to S3: an io.Writer of the JSON text, in order.
// Commit makes the object live, Abort drops it; the live object changes only on a
// successful Commit (S3 replaces an object whole, at PUT or at multipart completion).
//
// Bytes are buffered up to one part. A payload that ends within it is sent by Commit
// as one PUT. Once the buffer fills, a multipart upload starts and full parts go up
// from a sender goroutine while the caller fills the next one: two part buffers at
// most, whatever the payload's size.
type Upload struct {
	t    *Tier
	ctx  context.Context
	key  string
	buf  []byte
	size int64
	done bool

	uploadID string
	// Set up with the multipart upload; owned by the sender until sent is closed.
	pending chan part
	free    chan []byte
	sent    chan struct{}
	closed  bool
	nparts  int32    // parts handed to the sender
	etags   []string // each sent part's ETag, in order; the sender's until sent is closed
	errMu   sync.Mutex
	err     error
}

type part struct {
	n   int32
	buf []byte
}

// Begin implements rebuild.Mirror: the publisher streams each PostHog-layout payload's
// JSON through it and commits it before the Redis payload goes live.
func (t *Tier) Begin(ctx context.Context, team int64, kind cachekeys.Kind) (rebuild.MirrorUpload, error) {
	return t.Start(ctx, team, kind), nil
}

var _ rebuild.Mirror = (*Tier)(nil)

// Start starts the upload of one team's payload. ctx bounds every request the writes
// make; Commit and Abort take their own. Nothing is sent until a part fills or Commit.
func (t *Tier) Start(ctx context.Context, team int64, kind cachekeys.Kind) *Upload {
	return &Upload{t: t, ctx: ctx, key: Key(team, kind)}
}

// Key is the object key being written.
func (u *Upload) Key() string { return u.key }

// Parts is how many parts the upload sent: 0 for a single PUT.
func (u *Upload) Parts() int { return int(u.nparts) }

// Size is the payload length so far.
func (u *Upload) Size() int64 { return u.size }

func (u *Upload) firstErr() error {
	u.errMu.Lock()
	defer u.errMu.Unlock()
	return u.err
}

func (u *Upload) setErr(err error) {
	u.errMu.Lock()
	defer u.errMu.Unlock()
	if u.err == nil {
		u.err = err
	}
}

// Write buffers b and sends every full part.
func (u *Upload) Write(b []byte) (int, error) {
	if u.done || u.closed {
		return 0, errors.New("s3 upload already finished")
	}
	if err := u.firstErr(); err != nil {
		return 0, err
	}
	n := len(b)
	partSize := int(u.t.opts.PartSize)
	for len(b) > 0 {
		// A full buffer is sent only when more bytes follow, so that a payload of
		// exactly one part is still a single PUT.
		if len(u.buf) == partSize {
			if err := u.sendPart(); err != nil {
				return 0, err
			}
		}
		if u.buf == nil {
			// Small payloads (most teams') grow the buffer as they go; a payload that
			// fills one part gets full-size buffers from then on.
			u.buf = make([]byte, 0, min(partSize, max(len(b), 64<<10)))
		}
		take := min(partSize-len(u.buf), len(b))
		u.buf = append(u.buf, b[:take]...)
		b = b[take:]
	}
	u.size += int64(n)
	return n, nil
}

// sendPart hands the full buffer to the sender, starting the multipart upload first.
func (u *Upload) sendPart() error {
	if u.uploadID == "" {
		if err := u.create(); err != nil {
			return err
		}
	}
	if err := u.handOver(); err != nil {
		return err
	}
	u.buf = <-u.free
	return u.firstErr()
}

// handOver gives the buffer to the sender as the next part.
func (u *Upload) handOver() error {
	if u.nparts+1 > maxParts {
		err := fmt.Errorf("payload for s3://%s/%s needs more than %d parts of %d bytes", u.t.opts.Bucket, u.key, maxParts, u.t.opts.PartSize)
		u.setErr(err)
		return err
	}
	u.nparts++
	u.pending <- part{n: u.nparts, buf: u.buf}
	u.buf = nil
	return nil
}

func (u *Upload) create() error {
	ctx, cancel := u.t.reqCtx(u.ctx)
	defer cancel()
	out, err := u.t.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &u.t.opts.Bucket, Key: &u.key, ContentType: aws.String("application/json"),
	})
	if err != nil {
		err = u.t.failed("create_multipart", fmt.Errorf("start multipart upload of s3://%s/%s: %w", u.t.opts.Bucket, u.key, err))
		u.setErr(err)
		return err
	}
	u.uploadID = aws.ToString(out.UploadId)
	u.pending = make(chan part)
	u.free = make(chan []byte, 2) // room for both buffers, so the sender never blocks on it
	u.free <- make([]byte, 0, u.t.opts.PartSize)
	u.sent = make(chan struct{})
	go u.sender()
	return nil
}

// sender uploads parts in order; after an error it only recycles buffers.
func (u *Upload) sender() {
	defer close(u.sent)
	for p := range u.pending {
		if u.firstErr() == nil {
			etag, err := u.uploadPart(p)
			if err != nil {
				u.setErr(err)
			} else {
				u.etags = append(u.etags, etag)
			}
		}
		u.free <- p.buf[:0]
	}
}

func (u *Upload) uploadPart(p part) (string, error) {
	ctx, cancel := u.t.reqCtx(u.ctx)
	defer cancel()
	out, err := u.t.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &u.t.opts.Bucket, Key: &u.key, UploadId: &u.uploadID, PartNumber: aws.Int32(p.n),
		Body: bytes.NewReader(p.buf), ContentLength: aws.Int64(int64(len(p.buf))),
	})
	if err != nil {
		return "", u.t.failed("upload_part", fmt.Errorf("upload part %d of s3://%s/%s: %w", p.n, u.t.opts.Bucket, u.key, err))
	}
	return aws.ToString(out.ETag), nil
}

// finish sends the last part and waits for the sender.
func (u *Upload) finish() error {
	if u.uploadID == "" {
		return u.firstErr()
	}
	if !u.closed {
		if len(u.buf) > 0 && u.firstErr() == nil {
			_ = u.handOver() // its error is the upload's
		}
		close(u.pending)
		u.closed = true
	}
	<-u.sent
	return u.firstErr()
}

// Commit makes the object live: one PUT for a payload within one part, else the last
// part and the multipart completion. On error the object is left as it was and the
// multipart upload, if any, is aborted.
func (u *Upload) Commit(ctx context.Context) error {
	if u.done {
		return errors.New("s3 upload already finished")
	}
	if err := u.finish(); err != nil {
		u.Abort(ctx)
		return err
	}
	u.done = true
	rctx, cancel := u.t.reqCtx(ctx)
	defer cancel()
	if u.uploadID == "" {
		body := u.buf
		u.buf = nil
		_, err := u.t.client.PutObject(rctx, &s3.PutObjectInput{
			Bucket: &u.t.opts.Bucket, Key: &u.key, Body: bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("application/json"),
		})
		if err != nil {
			u.t.metrics.uploads.WithLabelValues("put", "error").Inc()
			return u.t.failed("put", fmt.Errorf("write s3://%s/%s: %w", u.t.opts.Bucket, u.key, err))
		}
		u.t.metrics.uploads.WithLabelValues("put", "ok").Inc()
		u.t.metrics.bytes.Add(float64(u.size))
		return nil
	}
	parts := make([]types.CompletedPart, len(u.etags))
	for i, etag := range u.etags {
		parts[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: aws.String(etag)}
	}
	_, err := u.t.client.CompleteMultipartUpload(rctx, &s3.CompleteMultipartUploadInput{
		Bucket: &u.t.opts.Bucket, Key: &u.key, UploadId: &u.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		u.t.metrics.uploads.WithLabelValues("multipart", "error").Inc()
		u.abortMultipart(ctx)
		return u.t.failed("complete_multipart", fmt.Errorf("complete multipart upload of s3://%s/%s: %w", u.t.opts.Bucket, u.key, err))
	}
	u.t.metrics.uploads.WithLabelValues("multipart", "ok").Inc()
	u.t.metrics.bytes.Add(float64(u.size))
	return nil
}

// Abort drops the upload: the live object is untouched and a multipart upload is
// aborted so that its parts do not linger. Safe after Commit (then it does nothing)
// and when S3 is unreachable (an upload left over then is what a bucket lifecycle
// rule for incomplete multipart uploads removes).
func (u *Upload) Abort(ctx context.Context) {
	if u.done {
		return
	}
	u.done = true
	_ = u.finish() // no part may land after the abort
	u.buf = nil
	if u.uploadID == "" {
		u.t.metrics.uploads.WithLabelValues("put", "aborted").Inc()
		return
	}
	u.t.metrics.uploads.WithLabelValues("multipart", "aborted").Inc()
	u.abortMultipart(ctx)
}

func (u *Upload) abortMultipart(ctx context.Context) {
	// The caller's context may be why the upload failed; the abort still deserves a try.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(u.t.opts.Timeout, 10*time.Second))
	defer cancel()
	if _, err := u.t.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &u.t.opts.Bucket, Key: &u.key, UploadId: &u.uploadID,
	}); err != nil {
		u.t.metrics.requests.WithLabelValues("abort_multipart").Inc()
	}
}
