// Package web serves flagwarden over HTTP with gin: the REST API under /api/v1, the
// embedded dashboard, /metrics and the health endpoints.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyFunc reports whether a dependency answers; nil means ready.
type ReadyFunc func(ctx context.Context) error

// Options configures the HTTP server.
type Options struct {
	// Listen is host:port; port 0 picks a free one (see Server.Addr).
	Listen string
	// ReadHeaderTimeout bounds reading request headers.
	ReadHeaderTimeout time.Duration
	// Gatherer is what /metrics exposes.
	Gatherer prometheus.Gatherer
	// Ready maps a dependency name to its check; /-/ready answers 200 only when all pass.
	Ready map[string]ReadyFunc
	// Logger receives request errors.
	Logger *slog.Logger
	// Routes adds the API and dashboard routes to the engine, if set.
	Routes func(r *gin.Engine)
}

// NewRouter returns the gin engine with the health, readiness and metrics routes, plus
// whatever opts.Routes adds.
func NewRouter(opts Options) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/-/healthy", func(c *gin.Context) { c.String(http.StatusOK, "OK\n") })
	r.GET("/-/ready", readyHandler(opts.Ready))
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})))
	if opts.Routes != nil {
		opts.Routes(r)
	}
	return r
}

func readyHandler(checks map[string]ReadyFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
		defer cancel()
		type result struct {
			name string
			err  error
		}
		results := make(chan result, len(checks))
		for name, check := range checks {
			go func() { results <- result{name, check(ctx)} }()
		}
		failed := map[string]string{}
		for range checks {
			r := <-results
			if r.err != nil {
				failed[r.name] = r.err.Error()
			}
		}
		if len(failed) > 0 {
			c.JSON(http.StatusServiceUnavailable, gin.H{"ready": false, "failed": failed})
			return
		}
		c.JSON(http.StatusOK, gin.H{"ready": true})
	}
}

// Server is the HTTP server as a service.
type Server struct {
	opts   Options
	srv    *http.Server
	mu     sync.Mutex
	ln     net.Listener
	served chan struct{}
}

// NewServer returns a server for handler.
func NewServer(opts Options, handler http.Handler) *Server {
	return &Server{opts: opts, srv: &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}}
}

// Name implements service.Service.
func (s *Server) Name() string { return "http" }

// Start implements service.Service: it listens (so Addr is known on return) and serves
// in the background.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("http server already started")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.opts.Listen, err)
	}
	s.ln = ln
	served := make(chan struct{})
	s.served = served
	go func() {
		// The local, not the field: Stop clears the field while this goroutine runs.
		defer close(served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("http server stopped", "err", err)
		}
	}()
	s.opts.Logger.Info("listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the server listens on, once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Stop implements service.Service: in-flight requests finish within ctx.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	served := s.served
	s.served = nil
	s.mu.Unlock()
	if served == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	<-served
	return err
}
