// Package s3tier writes and reads PostHog's second cache tier: the S3 objects
// cache/teams/{team_id}/feature_flags/{file} that PostHog's readers fall back to when
// the Redis key is missing. Objects hold the plain JSON text (no pickle, no zstd), as
// PostHog's writer stores them. Uploads stream in bounded memory: a payload up to one
// part is a single PUT, a larger one a multipart upload holding at most two parts, and
// a failed or abandoned multipart upload is aborted so no parts are left behind.
package s3tier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
)

// MinPartSize is S3's smallest part of a multipart upload (all but the last).
const MinPartSize = 5 << 20

// maxParts is S3's largest part count of one upload.
const maxParts = 10000

// Options configure the tier.
type Options struct {
	// Endpoint is the S3 API's base URL; empty uses AWS's regional endpoint.
	Endpoint string
	// Bucket holds the objects. Required.
	Bucket string
	// Region signs requests. Default us-east-1.
	Region string
	// AccessKeyID and SecretAccessKey are static credentials; both empty uses the AWS
	// default credential chain.
	AccessKeyID     string
	SecretAccessKey string
	// PathStyle puts the bucket in the path rather than the host name.
	PathStyle bool
	// Timeout bounds each request. Default 30s.
	Timeout time.Duration
	// PartSize is the size of one multipart part and the largest payload sent as one
	// PUT. Default and minimum MinPartSize.
	PartSize int64
	// HTTPClient, if set, sends the requests.
	HTTPClient *http.Client
	// Registerer receives the tier's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Tier is the S3 tier of one bucket.
type Tier struct {
	client  *s3.Client
	opts    Options
	metrics *metrics
}

type metrics struct {
	uploads  *prometheus.CounterVec
	bytes    prometheus.Counter
	requests *prometheus.CounterVec
}

// New returns the tier. It sends no request: an unreachable server is an error of the
// first upload, not of startup.
func New(ctx context.Context, opts Options) (*Tier, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3tier: Bucket is required")
	}
	opts.Region = cmp.Or(opts.Region, "us-east-1")
	opts.Timeout = cmp.Or(opts.Timeout, 30*time.Second)
	opts.PartSize = max(cmp.Or(opts.PartSize, MinPartSize), MinPartSize)
	if (opts.AccessKeyID == "") != (opts.SecretAccessKey == "") {
		return nil, errors.New("s3tier: AccessKeyID and SecretAccessKey are set together or not at all")
	}
	loaders := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(opts.Region)}
	if opts.AccessKeyID != "" {
		loaders = append(loaders, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, "")))
	}
	if opts.HTTPClient != nil {
		loaders = append(loaders, awsconfig.WithHTTPClient(opts.HTTPClient))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loaders...)
	if err != nil {
		return nil, fmt.Errorf("s3tier: load AWS configuration: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		// Checksums only where the API requires them: S3-compatible servers differ in
		// which of the newer checksum headers and trailers they accept; the payload is
		// still covered by the SigV4 payload hash.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	f := promauto.With(opts.Registerer)
	return &Tier{client: client, opts: opts, metrics: &metrics{
		uploads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_s3_uploads_total",
			Help: "Payload uploads to the S3 tier by method (put, multipart) and result (ok, error, aborted).",
		}, []string{"method", "result"}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_s3_uploaded_bytes_total",
			Help: "Payload bytes of committed uploads to the S3 tier.",
		}),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_s3_request_errors_total",
			Help: "Failed S3 requests by operation.",
		}, []string{"op"}),
	}}, nil
}

// Key is the object key of a team's payload: PostHog's HyperCache key without the
// django prefix, the same for Redis and S3.
func Key(team int64, kind cachekeys.Kind) string {
	return "cache/teams/" + strconv.FormatInt(team, 10) + "/feature_flags/" + kind.File()
}

// Bucket is the bucket the tier writes.
func (t *Tier) Bucket() string { return t.opts.Bucket }

// PartSize is the multipart part size in use.
func (t *Tier) PartSize() int64 { return t.opts.PartSize }

func (t *Tier) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, t.opts.Timeout)
}

func (t *Tier) failed(op string, err error) error {
	t.metrics.requests.WithLabelValues(op).Inc()
	return err
}

// ErrNotFound means the object does not exist.
var ErrNotFound = errors.New("no such object")

// Object is a stored payload being read.
type Object struct {
	// Body streams the JSON text; the caller closes it.
	Body         io.ReadCloser
	Size         int64
	LastModified time.Time
	// ETag is the object's S3 ETag (not PostHog's ETag).
	ETag string
}

// Open starts reading a team's stored payload, or returns ErrNotFound. ctx bounds the
// whole read, not only the request: the body streams from the connection as it is
// read, so memory stays at the reader's buffer.
func (t *Tier) Open(ctx context.Context, team int64, kind cachekeys.Kind) (*Object, error) {
	out, err := t.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &t.opts.Bucket, Key: aws.String(Key(team, kind))})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, ErrNotFound
		}
		return nil, t.failed("get", fmt.Errorf("read s3://%s/%s: %w", t.opts.Bucket, Key(team, kind), err))
	}
	o := &Object{Body: out.Body, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag)}
	if out.LastModified != nil {
		o.LastModified = out.LastModified.UTC()
	}
	return o, nil
}

// Delete removes a team's object; a missing object is not an error.
func (t *Tier) Delete(ctx context.Context, team int64, kind cachekeys.Kind) error {
	rctx, cancel := t.reqCtx(ctx)
	defer cancel()
	_, err := t.client.DeleteObject(rctx, &s3.DeleteObjectInput{Bucket: &t.opts.Bucket, Key: aws.String(Key(team, kind))})
	if err != nil {
		return t.failed("delete", fmt.Errorf("delete s3://%s/%s: %w", t.opts.Bucket, Key(team, kind), err))
	}
	return nil
}

// Ping checks that the bucket is reachable with the configured credentials.
func (t *Tier) Ping(ctx context.Context) error {
	rctx, cancel := t.reqCtx(ctx)
	defer cancel()
	if _, err := t.client.HeadBucket(rctx, &s3.HeadBucketInput{Bucket: &t.opts.Bucket}); err != nil {
		return t.failed("head_bucket", fmt.Errorf("s3 bucket %s: %w", t.opts.Bucket, err))
	}
	return nil
}
