package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// ErrNoPayload says a team has no published payload of that kind.
var ErrNoPayload = errors.New("no published payload")

// Payload is one published cache payload, ready to stream.
type Payload struct {
	// ETag identifies the payload's content (unquoted).
	ETag string
	// Size is the length in bytes; -1 when unknown (then the response is chunked).
	Size int64
	// WriteTo streams the body to w piece by piece, never holding it whole.
	WriteTo func(ctx context.Context, w io.Writer) error
}

// PayloadStore finds a team's published payload of a kind ("flags" or "definitions").
type PayloadStore interface {
	Payload(ctx context.Context, team int64, kind string) (Payload, error)
}

// payload serves GET /api/v1/teams/{id}/flags and …/flags/definitions from the cache
// Redis: headers first (ETag, length), then the body streamed as it is read.
func (a *API) payload(kind string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := teamID(c)
		if !ok {
			return
		}
		if a.opts.Payloads == nil {
			abort(c, http.StatusServiceUnavailable, codeDisabled, "payload serving disabled: no cache Redis configured")
			return
		}
		ctx := c.Request.Context()
		p, err := a.opts.Payloads.Payload(ctx, id, kind)
		if errors.Is(err, ErrNoPayload) {
			msg := fmt.Sprintf("team %d has no published %s payload", id, kind)
			if _, known := a.opts.Snapshots.Team(id); !known {
				msg = fmt.Sprintf("unknown team %d: no published %s payload", id, kind)
			}
			abort(c, http.StatusNotFound, codeNotFound, msg)
			return
		}
		if err != nil {
			a.fail(c, "read "+kind+" payload", err)
			return
		}
		etag := `"` + p.ETag + `"`
		h := c.Writer.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		if p.ETag != "" && etagMatches(c.GetHeader("If-None-Match"), p.ETag) {
			c.Status(http.StatusNotModified)
			c.Writer.WriteHeaderNow()
			return
		}
		h.Set("Content-Type", "application/json")
		if p.Size >= 0 {
			h.Set("Content-Length", strconv.FormatInt(p.Size, 10))
		}
		c.Status(http.StatusOK)
		if c.Request.Method == http.MethodHead {
			c.Writer.WriteHeaderNow() // the headers say it all; reading the payload would be waste
			return
		}
		if err := p.WriteTo(ctx, c.Writer); err != nil {
			// The status is sent; the short body (against Content-Length) tells the
			// client the transfer broke. Say why in the log.
			if !errors.Is(err, context.Canceled) {
				a.log.Warn("payload stream broke", "team", id, "kind", kind, "err", err)
			}
			c.Abort()
		}
	}
}

// etagMatches reports whether an If-None-Match header names etag: "*", or a
// comma-separated list of (possibly weak) entity tags.
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" {
			return true
		}
		part = strings.TrimPrefix(part, "W/")
		if strings.Trim(part, `"`) == etag {
			return true
		}
	}
	return false
}
