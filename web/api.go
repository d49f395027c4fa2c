package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flagwarden/flagwarden/detectors"
	detectordefaults "github.com/flagwarden/flagwarden/detectors/defaults"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/rebuild"
)

// Snapshots is the latest measurement of each source (internal/snapshot.Store).
type Snapshots interface {
	Queues() snapshot.Queues
	Teams() snapshot.Teams
	Team(id int64) (snapshot.TeamSize, bool)
	Pods() snapshot.Pods
	Caches() snapshot.Caches
}

// Series is the in-memory history (internal/series.Store).
type Series interface {
	Range(key string, from, to time.Time) []series.Point
	Last(key string) (series.Point, bool)
	Keys(prefix string) []string
}

// Findings lists what the detectors found.
type Findings interface {
	Active(ctx context.Context) ([]detectors.Finding, error)
	Recent(ctx context.Context, limit int) ([]detectors.Finding, error)
}

// Engine is the rebuild engine as the API drives it.
type Engine interface {
	Request(ctx context.Context, teamID int64, reason string) (rebuild.RequestResult, error)
	Quarantine(ctx context.Context, teamID int64, reason string) error
	Release(ctx context.Context, teamID int64, reason string) error
	Quarantined(ctx context.Context) ([]rebuild.Quarantine, error)
	Status(ctx context.Context) (rebuild.Status, error)
	History(ctx context.Context, teamID int64, limit int) ([]rebuild.BuildResult, error)
}

// APIOptions configures the REST API and the dashboard. Snapshots and Series are
// required; Findings, Engine and Payloads may be nil when that component is disabled,
// and the API then answers with an empty result or a 503 that says so.
//
// Interface fields must hold a nil interface, not a typed nil pointer, to mean
// "disabled": a typed nil is a non-nil interface value.
type APIOptions struct {
	Snapshots Snapshots
	Series    Series
	// Loops reports collector and detector loop health; nil means none run here.
	Loops    func() []loop.Health
	Findings Findings
	Engine   Engine
	// Payloads streams published cache payloads; nil disables the flags endpoints.
	Payloads PayloadStore

	// Auth holds the bearer tokens and whether reads are open.
	Auth Auth
	// HandlerTimeout bounds one API request (default 30s).
	HandlerTimeout time.Duration
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxConcurrent bounds API requests in flight; past it the API answers 503 (default 256).
	MaxConcurrent int

	// BacklogLimit is the queue depth the backlog ETA is computed against (default 100000).
	BacklogLimit int64
	// TrendWindow is how much queue history the trend is fitted on (default 6h).
	TrendWindow time.Duration
	// StaleAfter is the cache lag past which a team's cache counts as stale (default 15m).
	StaleAfter time.Duration
	// WorkerMemoryLimit is the worker memory a load-everything build is compared with
	// (default 8 GiB); the teams page marks it on the size distribution.
	WorkerMemoryLimit int64

	// CacheTTL is how long the answers of the findings and team-list endpoints, and the
	// outlier and quarantine marks, may be reused (default 1s; negative: never).
	CacheTTL time.Duration

	// Logger receives request errors and the audit log of writes (never tokens).
	Logger *slog.Logger
	// Registerer receives the HTTP metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultAPIOptions are the settings the API uses where APIOptions leave a field unset.
func DefaultAPIOptions() APIOptions {
	var o APIOptions
	o.withDefaults()
	return o
}

func (o *APIOptions) withDefaults() {
	o.HandlerTimeout = cmp.Or(o.HandlerTimeout, 30*time.Second)
	o.MaxBodyBytes = cmp.Or(o.MaxBodyBytes, 1<<20)
	o.MaxConcurrent = cmp.Or(o.MaxConcurrent, 256)
	o.BacklogLimit = cmp.Or(o.BacklogLimit, detectordefaults.BacklogLimit)
	o.TrendWindow = cmp.Or(o.TrendWindow, 6*time.Hour)
	o.StaleAfter = cmp.Or(o.StaleAfter, detectordefaults.StaleAfter)
	o.WorkerMemoryLimit = cmp.Or(o.WorkerMemoryLimit, detectordefaults.WorkerMemoryLimit)
	o.CacheTTL = cmp.Or(o.CacheTTL, time.Second)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o *APIOptions) validate() error {
	switch {
	case o.Snapshots == nil:
		return errors.New("web: APIOptions.Snapshots is required")
	case o.Series == nil:
		return errors.New("web: APIOptions.Series is required")
	case o.HandlerTimeout < 0:
		return fmt.Errorf("web: APIOptions.HandlerTimeout must be positive, got %s", o.HandlerTimeout)
	case o.MaxBodyBytes < 0:
		return fmt.Errorf("web: APIOptions.MaxBodyBytes must be positive, got %d", o.MaxBodyBytes)
	case o.MaxConcurrent < 0:
		return fmt.Errorf("web: APIOptions.MaxConcurrent must be positive, got %d", o.MaxConcurrent)
	case o.BacklogLimit < 0:
		return fmt.Errorf("web: APIOptions.BacklogLimit must be positive, got %d", o.BacklogLimit)
	}
	for i, t := range o.Auth.Tokens {
		if len(t.Token) == 0 {
			return fmt.Errorf("web: APIOptions.Auth.Tokens[%d].Token is empty", i)
		}
		if t.Role != RoleRead && t.Role != RoleOperate {
			return fmt.Errorf("web: APIOptions.Auth.Tokens[%d].Role must be read or operate, got %q", i, t.Role)
		}
	}
	return nil
}

// API serves the REST API under /api/v1 and the dashboard.
type API struct {
	opts    APIOptions
	log     *slog.Logger
	auth    *authenticator
	metrics *httpMetrics
	sem     chan struct{}

	resp   *responseCache
	teams  teamIndexCache
	decor  decorationCache
	caches cacheIndexCache
}

// NewAPI validates opts and returns the API; Register adds its routes to a router.
func NewAPI(opts APIOptions) (*API, error) {
	opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	a := &API{
		opts:    opts,
		log:     opts.Logger,
		auth:    newAuthenticator(opts.Auth),
		metrics: newHTTPMetrics(opts.Registerer),
		sem:     make(chan struct{}, opts.MaxConcurrent),
	}
	a.decor.ttl = opts.CacheTTL
	a.decor.sem = make(chan struct{}, 1)
	if opts.CacheTTL > 0 {
		a.resp = newResponseCache(opts.CacheTTL, opts.HandlerTimeout, 1024, func(key string, err error) {
			a.log.Warn("refreshing a cached answer failed", "request", key, "err", err)
		})
	}
	return a, nil
}

// Register adds the API and dashboard routes to r. It fits Options.Routes.
func (a *API) Register(r *gin.Engine) {
	// Off: gin would answer /api/v1/teams/ with a 301 text/html; noRoute answers instead.
	r.RedirectTrailingSlash = false
	v1 := r.Group("/api/v1", headWithoutBody, a.metrics.middleware(), a.clock, a.limit, a.deadline, a.bodyLimit, a.authenticate)
	// The document and whoami need no role: the dashboard asks who it is before it has
	// a token, and a client reads the document to learn how to authenticate.
	getAndHead(v1, "/openapi.json", a.openAPI)
	getAndHead(v1, "/whoami", a.whoami)
	read := v1.Group("", a.require(RoleRead))
	getAndHead(read, "/queues", a.queues)
	getAndHead(read, "/teams", a.listTeams)
	getAndHead(read, "/teams/distribution", a.distribution)
	getAndHead(read, "/teams/:id", a.team)
	getAndHead(read, "/teams/:id/flags", a.payload("flags"))
	getAndHead(read, "/teams/:id/flags/definitions", a.payload("definitions"))
	getAndHead(read, "/outliers", a.outliers)
	getAndHead(read, "/findings", a.findings)
	getAndHead(read, "/pods", a.pods)
	getAndHead(read, "/caches", a.cacheFreshness)
	getAndHead(read, "/rebuilds", a.rebuildStatus)
	getAndHead(read, "/collectors", a.collectors)

	write := v1.Group("", a.require(RoleOperate))
	write.POST("/teams/:id/rebuild", a.requestRebuild)
	write.POST("/teams/:id/quarantine", a.quarantine)
	write.POST("/teams/:id/release", a.release)

	a.registerDashboard(r)
	r.NoRoute(headWithoutBody, a.metrics.middleware(), a.noRoute)
}

// getAndHead registers a read for GET and for HEAD, which answers the same without a body
// (headWithoutBody), as HTTP asks of every GET resource.
func getAndHead(g *gin.RouterGroup, path string, h gin.HandlerFunc) {
	g.GET(path, h)
	g.HEAD(path, h)
}

// now is the API's clock.
func (a *API) now() time.Time { return a.opts.Now() }

// clockHeader carries the API's clock, so the dashboard says "3 h ago" against the time
// the data was measured in (the demo runs on simulated time), not the browser's.
const clockHeader = "X-Flagwarden-Now"

func (a *API) clock(c *gin.Context) {
	c.Header(clockHeader, a.now().UTC().Format(time.RFC3339Nano))
	c.Next()
}
