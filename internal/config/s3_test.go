package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestS3TierKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(strings.NewReader(minimal), nil)
	require.NoError(t, err)
	require.False(t, cfg.Cache.S3.Enabled, "the S3 tier is optional")
	require.Equal(t, "us-east-1", cfg.Cache.S3.Region)
	require.Equal(t, ByteSize(5<<20), cfg.Cache.S3.PartSize)
	require.Equal(t, 30*time.Second, cfg.Cache.S3.Timeout)

	in := minimal + `
  layout: posthog
  s3:
    enabled: true
    endpoint: http://127.0.0.1:7070
    bucket: posthog
    access_key_id: AKIDEXAMPLE
    secret_access_key: s3-secret-value-123
    path_style: true
    part_size: 8MiB
`
	cfg, err = Parse(strings.NewReader(in), nil)
	require.NoError(t, err)
	s := cfg.Cache.S3
	require.True(t, s.Enabled && s.PathStyle)
	require.Equal(t, "http://127.0.0.1:7070", s.Endpoint)
	require.Equal(t, ByteSize(8<<20), s.PartSize)
	require.Equal(t, "s3-secret-value-123", s.SecretAccessKey.Value())
	for name, out := range map[string]string{"String": cfg.String(), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", s)} {
		require.NotContains(t, out, "s3-secret-value-123", "%s leaks the S3 secret", name)
	}
	require.Contains(t, cfg.String(), "secret_access_key: <secret>")

	env := []string{
		"FLAGWARDEN_CACHE_LAYOUT=posthog",
		"FLAGWARDEN_CACHE_S3_ENABLED=true",
		"FLAGWARDEN_CACHE_S3_BUCKET=flags",
		"FLAGWARDEN_CACHE_S3_ENDPOINT=https://objects.example.test",
		"FLAGWARDEN_CACHE_S3_ACCESS_KEY_ID=id",
		"FLAGWARDEN_CACHE_S3_SECRET_ACCESS_KEY=from-env",
		"FLAGWARDEN_CACHE_S3_TIMEOUT=3s",
		"FLAGWARDEN_CACHE_S3_PATH_STYLE=true",
	}
	cfg, err = Parse(strings.NewReader(minimal), env)
	require.NoError(t, err)
	require.Equal(t, "flags", cfg.Cache.S3.Bucket)
	require.Equal(t, "from-env", cfg.Cache.S3.SecretAccessKey.Value())
	require.Equal(t, 3*time.Second, cfg.Cache.S3.Timeout)
	require.True(t, cfg.Cache.S3.PathStyle)
}

func TestS3TierValidationNamesEachField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s3, layout, field, want string
	}{
		{"bucket: b", "flagwarden", "cache.s3.enabled", "needs cache.layout posthog"},
		{"bucket: ''", "posthog", "cache.s3.bucket", "is required"},
		{"bucket: a/b", "posthog", "cache.s3.bucket", "must be a bucket name without '/'"},
		{"bucket: b\n    region: ''", "posthog", "cache.s3.region", "is required"},
		{"bucket: b\n    endpoint: ftp://host", "posthog", "cache.s3.endpoint", "must use scheme"},
		{"bucket: b\n    endpoint: 'http://'", "posthog", "cache.s3.endpoint", "must name a host"},
		{"bucket: b\n    endpoint: 'http://u:pw@host'", "posthog", "cache.s3.endpoint", "must not carry credentials"},
		{"bucket: b\n    access_key_id: only-id", "posthog", "cache.s3.secret_access_key", "access_key_id and secret_access_key are set together"},
		{"bucket: b\n    timeout: 0s", "posthog", "cache.s3.timeout", "must be a positive duration"},
		{"bucket: b\n    part_size: 1MiB", "posthog", "cache.s3.part_size", "must be between 5MiB and 5GiB"},
	} {
		in := strings.TrimRight(minimal, "\n") + "\n  layout: " + tc.layout + "\n  s3:\n    enabled: true\n    " + tc.s3 + "\n"
		_, err := Parse(strings.NewReader(in), nil)
		require.Error(t, err, tc.s3)
		require.Contains(t, err.Error(), tc.field+": "+tc.want, tc.s3)
		require.NotContains(t, err.Error(), "pw@", "a problem never prints a password")
	}
	// Disabled, nothing about it is checked.
	_, err := Parse(strings.NewReader(strings.TrimRight(minimal, "\n")+"\n  s3:\n    part_size: 1MiB\n"), nil)
	require.NoError(t, err)
}

func TestVerifyKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(strings.NewReader(minimal), nil)
	require.NoError(t, err)
	require.False(t, cfg.Verify.Enabled)
	require.Equal(t, 30*time.Minute, cfg.Verify.Interval, "PostHog's check runs every 30 minutes")
	require.Equal(t, 1000, cfg.Verify.TeamsPerPass)
	require.Equal(t, 5*time.Minute, cfg.Verify.Grace)

	for _, tc := range []struct{ yaml, want string }{
		{"verify:\n  interval: 0s\n", "verify.interval: must be a positive duration"},
		{"verify:\n  timeout: 31m\n", "verify.timeout: must not exceed verify.interval"},
		{"verify:\n  teams_per_pass: 0\n", "verify.teams_per_pass: must be at least 1"},
		{"verify:\n  grace: -1s\n", "verify.grace: must not be negative"},
	} {
		_, err := Parse(strings.NewReader(minimal+tc.yaml), nil)
		require.ErrorContains(t, err, tc.want, tc.yaml)
	}
	cfg, err = Parse(strings.NewReader(minimal), []string{"FLAGWARDEN_VERIFY_ENABLED=true", "FLAGWARDEN_VERIFY_INTERVAL=1h", "FLAGWARDEN_VERIFY_TEAMS_PER_PASS=50"})
	require.NoError(t, err)
	require.True(t, cfg.Verify.Enabled)
	require.Equal(t, time.Hour, cfg.Verify.Interval)
	require.Equal(t, 50, cfg.Verify.TeamsPerPass)
}
