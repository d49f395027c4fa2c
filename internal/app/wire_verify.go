package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/rebuild"
	"github.com/flagwarden/flagwarden/rebuild/s3tier"
	"github.com/flagwarden/flagwarden/rebuild/verify"
)

// NewS3Tier is PostHog's S3 cache tier as cache.s3 describes it, or nil when it is not
// enabled. It sends no request; reg (may be nil) receives its metrics.
func NewS3Tier(ctx context.Context, cfg config.Config, reg prometheus.Registerer) (*s3tier.Tier, error) {
	s := cfg.Cache.S3
	if !s.Enabled {
		return nil, nil
	}
	t, err := s3tier.New(ctx, s3tier.Options{
		Endpoint: s.Endpoint, Bucket: s.Bucket, Region: s.Region,
		AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey.Value(), PathStyle: s.PathStyle,
		Timeout: s.Timeout, PartSize: int64(s.PartSize), Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("cache.s3: %w", err)
	}
	return t, nil
}

// Mirror is the tier as the publisher takes it: a nil interface when there is none.
func Mirror(t *s3tier.Tier) rebuild.Mirror {
	if t == nil {
		return nil
	}
	return t
}

// NewVerifier is the cache verification the configuration describes: the fresh build
// configured as the rebuild engine's, against the cache Redis and, if set, the S3 tier;
// teams whose data changed within grace are not judged.
func NewVerifier(cfg config.Config, src rebuild.FlagSource, rdb redis.UniversalClient, tier *s3tier.Tier, grace time.Duration) (*verify.Verifier, error) {
	opts := verify.Options{
		Source:  src,
		Builder: BuilderOptions(cfg, nil),
		Redis:   rdb,
		Layout:  CacheLayout(cfg),
		TTL:     cfg.Cache.TTL,
		Grace:   grace,
	}
	// The fresh builds predict from the rebuild engine's last builds, which makes them
	// cheaper, and store nothing: a check must not write to the Redis it checks.
	opts.Builder.Predictions, opts.Builder.LoadPredictionsOnly = SharedPredictions(cfg, rdb), true
	if tier != nil {
		opts.S3 = tier
	}
	return verify.New(opts)
}

// wireVerify runs the periodic cache verification on the leader; its problems become
// cache_mismatch findings.
func (a *App) wireVerify(context.Context) error {
	v := a.cfg.Verify
	if !v.Enabled {
		return nil
	}
	var teams verify.TeamLister
	switch {
	case a.embedded != nil:
		l, ok := a.embedded.Flags.(verify.TeamLister)
		if !ok {
			return errors.New("verify.enabled: the embedded flag source cannot list its teams")
		}
		teams = l
	default:
		teams = verify.NewPGTeams(a.flagPool, false)
	}
	vf, err := NewVerifier(a.cfg, a.rebuildSource(), a.cache, a.s3, v.Grace)
	if err != nil {
		return err
	}
	vf.SetClock(a.now)
	logger := a.logger.With("component", "verify")
	svc := verify.NewService(vf, teams, verify.ServiceOptions{
		TeamsPerPass: v.TeamsPerPass, Logger: logger, Registerer: a.registry, Now: a.now,
	})
	a.mismatches = svc
	l := loop.New("cache_verify", loop.Timing{Interval: v.Interval, Timeout: v.Timeout, Jitter: 0.1}, svc.RunOnce, logger, a.loopMetrics)
	a.loops = append(a.loops, l)
	a.leaderOnly = append(a.leaderOnly, l)
	return nil
}
