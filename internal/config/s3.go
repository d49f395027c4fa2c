package config

import (
	"net/url"
	"strings"
	"time"
)

// S3 is the object store PostHog's readers fall back to when a Redis key is missing
// (its second HyperCache tier). With cache.layout posthog and enabled, every published
// payload is also written there as plain JSON, at the same key without the django
// prefix, before the Redis payload goes live.
type S3 struct {
	// Enabled writes the S3 tier.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the S3 API's base URL (http://127.0.0.1:9000 for an S3-compatible
	// server); empty uses AWS's regional endpoint.
	Endpoint string `yaml:"endpoint"`
	// Bucket holds the cache objects (PostHog's OBJECT_STORAGE_BUCKET).
	Bucket string `yaml:"bucket"`
	// Region signs requests (PostHog's OBJECT_STORAGE_REGION).
	Region string `yaml:"region"`
	// AccessKeyID and SecretAccessKey are static credentials; both empty uses the AWS
	// default chain (environment, web identity, instance role).
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey Secret `yaml:"secret_access_key"`
	// PathStyle addresses the bucket in the path (endpoint/bucket/key), as most
	// S3-compatible servers and PostHog's Rust reader with a custom endpoint do.
	PathStyle bool `yaml:"path_style"`
	// Timeout bounds each request (one PUT, one part, one GET).
	Timeout time.Duration `yaml:"timeout"`
	// PartSize is the size of one multipart part: a payload up to it is one PUT, a
	// larger one is uploaded in parts of this size, so an upload holds at most two
	// parts in memory. S3 requires at least 5MiB.
	PartSize ByteSize `yaml:"part_size"`
}

func defaultS3() S3 {
	return S3{Region: "us-east-1", Timeout: 30 * time.Second, PartSize: 5 << 20}
}

// minPartSize is S3's smallest part (except the last).
const minPartSize = 5 << 20

func (s S3) validate(p *problems, layout string) {
	if !s.Enabled {
		return
	}
	if layout != "posthog" {
		p.add("cache.s3.enabled", "needs cache.layout posthog (the S3 tier is PostHog's), got %q", layout)
	}
	p.required("cache.s3.bucket", s.Bucket)
	p.required("cache.s3.region", s.Region)
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		switch {
		case err != nil:
			p.add("cache.s3.endpoint", "is not a valid URL: %s", RedactURL(s.Endpoint))
		case u.Scheme != "http" && u.Scheme != "https":
			p.add("cache.s3.endpoint", "must use scheme [http https], got %q", u.Scheme)
		case u.Host == "":
			p.add("cache.s3.endpoint", "must name a host, got %q", s.Endpoint)
		case u.User != nil:
			p.add("cache.s3.endpoint", "must not carry credentials (use cache.s3.access_key_id and secret_access_key)")
		}
	}
	if (s.AccessKeyID == "") != (s.SecretAccessKey == "") {
		p.add("cache.s3.secret_access_key", "access_key_id and secret_access_key are set together or not at all")
	}
	if strings.ContainsAny(s.Bucket, "/ ") {
		p.add("cache.s3.bucket", "must be a bucket name without '/' or spaces, got %q", s.Bucket)
	}
	p.positive("cache.s3.timeout", s.Timeout)
	if s.PartSize < minPartSize || s.PartSize > 5<<30 {
		p.add("cache.s3.part_size", "must be between 5MiB and 5GiB (S3's part limits), got %s", s.PartSize)
	}
}
