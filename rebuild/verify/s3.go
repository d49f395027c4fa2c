package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/flagwarden/flagwarden/rebuild/s3tier"
)

// checkS3 fills c from the S3 object: plain JSON text, streamed into the hash.
func (v *Verifier) checkS3(ctx context.Context, c *Check, fresh digest) {
	o, err := v.opts.S3.Open(ctx, c.TeamID, c.Kind)
	if errors.Is(err, s3tier.ErrNotFound) {
		c.Outcome, c.Detail = Missing, "no object "+s3tier.Key(c.TeamID, c.Kind)
		return
	}
	if err != nil {
		c.Outcome, c.Detail = Failed, err.Error()
		return
	}
	h := newHasher()
	_, err = io.Copy(h, o.Body)
	o.Body.Close()
	if err != nil {
		c.Outcome, c.Detail = Failed, fmt.Sprintf("read %s: %v", s3tier.Key(c.TeamID, c.Kind), err)
		return
	}
	stored := h.digest()
	if stored.bytes == 0 {
		// PostHog's readers take an empty object for a miss.
		c.Outcome, c.Detail = Missing, "empty object "+s3tier.Key(c.TeamID, c.Kind)
		return
	}
	c.StoredBytes, c.StoredSHA256 = stored.bytes, stored.sha
	c.WrittenAt, c.AgeFrom = o.LastModified, "s3_last_modified"
	if stored == fresh {
		c.Outcome = OK
		return
	}
	if o, err := v.opts.S3.Open(ctx, c.TeamID, c.Kind); err == nil {
		body := &sourceReader{r: o.Body}
		verr := validJSON(body)
		o.Body.Close()
		if verr != nil && body.err == nil {
			c.Outcome, c.Detail = Undecodable, fmt.Sprintf("object is not JSON: %v", verr)
			return
		}
	}
	// S3's Last-Modified is whole seconds.
	judgeAge(c, o.LastModified, time.Second)
}

// sourceReader keeps its source's errors apart from the JSON decoder's, so that a
// failed read is never taken for a broken object.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		s.err = err
	}
	return n, err
}
