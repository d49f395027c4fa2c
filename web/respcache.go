package web

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// responseCache holds encoded answers of the read endpoints that cost a database round
// trip or a pass over every team, for a short TTL. A dashboard on every on-call laptop
// refreshing every few seconds, or a script polling in a loop, then costs one query per
// TTL instead of one per request (the detectors write findings every pass, tens of
// seconds apart). Once an answer expires, requests keep getting it while one refresh
// runs in the background, so a slow database adds staleness, not latency; past
// maxStale an answer is no longer served and requests wait for a fresh one. Writes
// through this API clear it.
type responseCache struct {
	ttl      time.Duration
	maxStale time.Duration
	timeout  time.Duration
	max      int
	onError  func(key string, err error)

	mu      sync.Mutex
	entries map[string]*cachedResponse
}

type cachedResponse struct {
	// fill is held while a request computes the first body, so that concurrent requests
	// make one query, not a stampede; waiters give up when their own deadline passes.
	fill chan struct{}

	mu         sync.Mutex
	at         time.Time
	body       []byte
	refreshing bool
}

func newResponseCache(ttl, timeout time.Duration, max int, onError func(key string, err error)) *responseCache {
	return &responseCache{ttl: ttl, maxStale: ttl + timeout, timeout: timeout, max: max, onError: onError,
		entries: map[string]*cachedResponse{}}
}

// buildFunc computes an answer; what names it in errors.
type buildFunc func(ctx context.Context) (any, error)

// serve answers c from the cache under key, or with build's result. fail answers an
// error of build.
func (rc *responseCache) serve(c *gin.Context, key string, build buildFunc, fail func(c *gin.Context, err error)) {
	if rc == nil {
		v, err := build(c.Request.Context())
		if err != nil {
			fail(c, err)
			return
		}
		c.JSON(http.StatusOK, v)
		return
	}
	e := rc.entry(key)
	if body, ok := rc.usable(e, key, build); ok {
		c.Data(http.StatusOK, "application/json; charset=utf-8", body)
		return
	}
	select {
	case e.fill <- struct{}{}:
	case <-c.Request.Context().Done():
		abort(c, http.StatusServiceUnavailable, codeTimeout, "timed out waiting for the answer another request is computing")
		return
	}
	defer func() { <-e.fill }()
	// Another request may have filled it while this one waited.
	if body, ok := rc.usable(e, key, build); ok {
		c.Data(http.StatusOK, "application/json; charset=utf-8", body)
		return
	}
	body, err := encode(build(c.Request.Context()))
	if err != nil {
		fail(c, err)
		return
	}
	e.mu.Lock()
	e.body, e.at = body, time.Now()
	e.mu.Unlock()
	c.Data(http.StatusOK, "application/json; charset=utf-8", body)
}

func (rc *responseCache) entry(key string) *cachedResponse {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e, ok := rc.entries[key]
	if !ok {
		if len(rc.entries) >= rc.max {
			// Keys come from query strings a client chooses; bound them by starting over.
			rc.entries = map[string]*cachedResponse{}
		}
		e = &cachedResponse{fill: make(chan struct{}, 1)}
		rc.entries[key] = e
	}
	return e
}

// usable returns the entry's body if it may be served: fresh, or expired but within
// maxStale, in which case one background refresh starts.
func (rc *responseCache) usable(e *cachedResponse, key string, build buildFunc) ([]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.body == nil {
		return nil, false
	}
	age := time.Since(e.at)
	if age < rc.ttl {
		return e.body, true
	}
	if age >= rc.maxStale {
		return nil, false
	}
	if !e.refreshing {
		e.refreshing = true
		go rc.refresh(e, key, build)
	}
	return e.body, true
}

func (rc *responseCache) refresh(e *cachedResponse, key string, build buildFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), rc.timeout)
	defer cancel()
	body, err := encode(build(ctx))
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refreshing = false
	if err != nil {
		// The old answer ages out at maxStale; then requests see the error themselves.
		if rc.onError != nil {
			rc.onError(key, err)
		}
		return
	}
	e.body, e.at = body, time.Now()
}

// clear drops every cached answer (after a write).
func (rc *responseCache) clear() {
	if rc == nil {
		return
	}
	rc.mu.Lock()
	rc.entries = map[string]*cachedResponse{}
	rc.mu.Unlock()
}

func encode(v any, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}
