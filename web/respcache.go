package web

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// responseCache holds encoded answers of the read endpoints that cost a database round
// trip or a pass over every team, for a short TTL. A dashboard on every on-call laptop
// refreshing every few seconds, or a script polling in a loop, then costs one query per
// TTL instead of one per request, while no answer is older than the TTL (the detectors
// write findings every pass, tens of seconds apart). Writes through this API clear it.
type responseCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[string]*cachedResponse
}

type cachedResponse struct {
	// sem is held while one request computes the body, so that concurrent requests make
	// one query, not a stampede; waiters give up when their own deadline passes.
	sem  chan struct{}
	at   time.Time
	body []byte
}

func newResponseCache(ttl time.Duration, max int) *responseCache {
	return &responseCache{ttl: ttl, max: max, entries: map[string]*cachedResponse{}}
}

// serve answers from the cache under key, or runs build and caches what it rendered
// when that was a 200. build must answer through c (JSON or an error).
func (rc *responseCache) serve(c *gin.Context, key string, build func(c *gin.Context) (any, bool)) {
	if rc == nil || rc.ttl <= 0 {
		if v, ok := build(c); ok {
			c.JSON(http.StatusOK, v)
		}
		return
	}
	rc.mu.Lock()
	e, ok := rc.entries[key]
	if !ok {
		if len(rc.entries) >= rc.max {
			// Keys come from query strings a client chooses; bound them by starting over.
			rc.entries = map[string]*cachedResponse{}
		}
		e = &cachedResponse{sem: make(chan struct{}, 1)}
		rc.entries[key] = e
	}
	rc.mu.Unlock()

	select {
	case e.sem <- struct{}{}:
	case <-c.Request.Context().Done():
		abort(c, http.StatusServiceUnavailable, codeTimeout, "timed out waiting for the answer another request is computing")
		return
	}
	if e.body != nil && time.Since(e.at) < rc.ttl {
		body := e.body
		<-e.sem
		c.Data(http.StatusOK, "application/json; charset=utf-8", body)
		return
	}
	defer func() { <-e.sem }()
	v, ok := build(c)
	if !ok {
		return
	}
	body, err := jsonBody(v)
	if err != nil {
		abort(c, http.StatusInternalServerError, codeInternal, "encode response failed")
		return
	}
	e.body, e.at = body, time.Now()
	c.Data(http.StatusOK, "application/json; charset=utf-8", body)
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

func jsonBody(v any) ([]byte, error) { return json.Marshal(v) }
