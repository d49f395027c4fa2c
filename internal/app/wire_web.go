package app

import (
	"context"
	"fmt"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/web"
)

// wireWeb builds the REST API and dashboard over the stores and components the other
// wire functions made (it runs last), and adds them to the router.
func (a *App) wireWeb(ctx context.Context) error {
	cfg := a.cfg
	opts := web.APIOptions{
		Snapshots:         a.snapshots,
		Series:            a.series,
		Loops:             func() []loop.Health { return a.healthOf(a.loops) },
		Payloads:          web.NewRedisPayloads(a.cache, CacheLayout(cfg), 0),
		Auth:              webAuth(cfg.Auth),
		HandlerTimeout:    cfg.HTTP.HandlerTimeout,
		MaxBodyBytes:      cfg.HTTP.MaxBodyBytes,
		MaxConcurrent:     cfg.HTTP.MaxConcurrent,
		CacheTTL:          cacheTTL(cfg.HTTP.CacheTTL),
		BacklogLimit:      cfg.Detectors.BacklogLimit,
		StaleAfter:        cfg.Detectors.StaleAfter,
		WorkerMemoryLimit: int64(cfg.Detectors.WorkerMemoryLimit),
		Logger:            a.logger.With("component", "api"),
		Registerer:        a.registry,
		Now:               a.now,
	}
	// Findings and the engine stay nil interfaces (not typed nil pointers) when their
	// component is off, which the API answers as "disabled".
	if a.findings != nil {
		opts.Findings = a.findings
	}
	if a.engine != nil {
		opts.Engine = a.engine
	}
	api, err := web.NewAPI(opts)
	if err != nil {
		return fmt.Errorf("web api: %w", err)
	}
	a.routes = append(a.routes, func(r *gin.Engine) { api.Register(r) })
	return nil
}

// cacheTTL maps the config's "0: never" onto the API's "negative: never".
func cacheTTL(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
