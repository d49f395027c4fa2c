package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flagwarden/flagwarden/rebuild"
)

// Error codes of the one error shape, {"error": {"code": ..., "message": ...}}.
const (
	codeBadRequest   = "bad_request"
	codeBodyTooLarge = "body_too_large"
	// codeUnsupportedMediaType answers a write whose body is not sent as JSON.
	codeUnsupportedMediaType = "unsupported_media_type"
	codeUnauthorized         = "unauthorized"
	codeForbidden            = "forbidden"
	codeNotFound             = "not_found"
	codeOverloaded           = "overloaded"
	codeTimeout              = "timeout"
	codeDisabled             = "disabled"
	codeInternal             = "internal"
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// abort answers with the one error shape and stops the handler chain.
func abort(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Code: code, Message: message}})
}

// fail answers for an error a store or the engine returned: typed errors become their
// status, a request that ran out of time a 503, anything else a logged 500.
func (a *API) fail(c *gin.Context, what string, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, rebuild.ErrUnknownTeam):
		abort(c, http.StatusNotFound, codeNotFound, "unknown team")
	case errors.As(err, &tooLarge):
		abort(c, http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			"request body exceeds "+strconv.FormatInt(tooLarge.Limit, 10)+" bytes")
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(c.Request.Context().Err(), context.DeadlineExceeded):
		abort(c, http.StatusServiceUnavailable, codeTimeout, what+": timed out after "+a.opts.HandlerTimeout.String())
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		c.Abort()
	default:
		a.log.Error("request failed", "route", c.FullPath(), "what", what, "err", err)
		abort(c, http.StatusInternalServerError, codeInternal, what+" failed")
	}
}

// failWith is fail for what, as a function of the error.
func (a *API) failWith(what string) func(c *gin.Context, err error) {
	return func(c *gin.Context, err error) { a.fail(c, what, err) }
}

// noRoute answers what no route matched. gin's own trailing-slash redirect is off (it
// answers 301 text/html, also under /api/), so an API path gets the JSON error shape
// with the path it probably meant, and a dashboard path is redirected here instead.
func (a *API) noRoute(c *gin.Context) {
	p := c.Request.URL.Path
	trimmed := strings.TrimRight(p, "/")
	if strings.HasPrefix(p, "/api/") {
		msg := "no such endpoint: " + c.Request.Method + " " + p
		if trimmed != p && trimmed != "" {
			msg += " (without the trailing slash: " + trimmed + ")"
		}
		abort(c, http.StatusNotFound, codeNotFound, msg)
		return
	}
	if trimmed != p && trimmed != "" && (c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead) {
		target := trimmed
		if q := c.Request.URL.RawQuery; q != "" {
			target += "?" + q
		}
		c.Redirect(http.StatusMovedPermanently, target)
		return
	}
	c.String(http.StatusNotFound, "404 page not found\n")
}

// headWithoutBody makes a HEAD request answer like its GET with the body left out:
// status and headers as GET would send them, for the JSON errors too.
func headWithoutBody(c *gin.Context) {
	if c.Request.Method == http.MethodHead {
		c.Writer = headWriter{c.Writer}
	}
	c.Next()
}

// headWriter drops the body of a HEAD answer. net/http's server drops it as well, but
// only at the connection: this keeps recorders and the middleware chain honest too.
type headWriter struct{ gin.ResponseWriter }

func (w headWriter) Write(b []byte) (int, error) {
	w.WriteHeaderNow()
	return len(b), nil
}

func (w headWriter) WriteString(s string) (int, error) {
	w.WriteHeaderNow()
	return len(s), nil
}

// httpMetrics counts requests by route template, never by raw path.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	shed     prometheus.Counter
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	f := promauto.With(reg)
	return &httpMetrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "flagwarden_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flagwarden_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "flagwarden_http_in_flight_requests",
			Help: "API requests being answered now.",
		}),
		shed: f.NewCounter(prometheus.CounterOpts{
			Name: "flagwarden_http_concurrency_limit_exceeded_total",
			Help: "API requests answered 503 because http.max_concurrent were already in flight.",
		}),
	}
}

func (m *httpMetrics) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		method := c.Request.Method
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions:
		default:
			method = "other" // bounded label values even for made-up methods
		}
		m.requests.WithLabelValues(route, method, strconv.Itoa(c.Writer.Status())).Inc()
		m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	}
}

// limit sheds requests past MaxConcurrent with a 503 rather than queueing them.
func (a *API) limit(c *gin.Context) {
	select {
	case a.sem <- struct{}{}:
	default:
		a.metrics.shed.Inc()
		c.Header("Retry-After", "1")
		abort(c, http.StatusServiceUnavailable, codeOverloaded,
			"too many requests in flight (limit "+strconv.Itoa(cap(a.sem))+"), try again later")
		return
	}
	a.metrics.inFlight.Inc()
	defer func() {
		a.metrics.inFlight.Dec()
		<-a.sem
	}()
	c.Next()
}

// deadline bounds the request: handlers pass the request context to every store and
// engine call, and answer 503 when it expires. (http.TimeoutHandler would buffer the
// whole response, which the payload streams must not.)
func (a *API) deadline(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.opts.HandlerTimeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

func (a *API) bodyLimit(c *gin.Context) {
	if c.Request.ContentLength > a.opts.MaxBodyBytes {
		abort(c, http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			"request body exceeds "+strconv.FormatInt(a.opts.MaxBodyBytes, 10)+" bytes")
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, a.opts.MaxBodyBytes)
	c.Next()
}

// Role is what a token may do.
type Role string

// Roles: read sees everything; operate also requests rebuilds and quarantines teams.
const (
	RoleRead    Role = "read"
	RoleOperate Role = "operate"
)

// Auth holds the API's bearer tokens and whether reads are open.
type Auth struct {
	// OpenReads lets requests without a token read (writes always need operate).
	OpenReads bool
	// Tokens are the accepted bearer tokens.
	Tokens []Token
}

// Token is one bearer token and its role.
type Token struct {
	// Name identifies the token in logs and errors (the token itself never appears).
	Name string
	// Token is the secret value.
	Token string
	// Role is RoleRead or RoleOperate.
	Role Role
}

// String leaves the secret out, so that printing the options never leaks a token.
func (t Token) String() string {
	return t.Name + " (" + string(t.Role) + ")"
}

// identity is who made a request: a token's name and role, or anonymous.
type identity struct {
	Name string
	Role Role
}

const identityKey = "flagwarden.identity"

// authenticator checks bearer tokens. Tokens are kept as SHA-256 digests and every
// configured token is compared (in constant time) on every request, so neither the
// comparison nor the loop leaks how much of a token matched or which one did.
type authenticator struct {
	openReads bool
	tokens    []storedToken
}

type storedToken struct {
	digest [sha256.Size]byte
	name   string
	role   Role
}

func newAuthenticator(cfg Auth) *authenticator {
	a := &authenticator{openReads: cfg.OpenReads}
	for _, t := range cfg.Tokens {
		a.tokens = append(a.tokens, storedToken{digest: sha256.Sum256([]byte(t.Token)), name: t.Name, role: t.Role})
	}
	return a
}

// lookup returns the identity for a presented token.
func (a *authenticator) lookup(token string) (identity, bool) {
	d := sha256.Sum256([]byte(token))
	var found identity
	ok := 0
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare(d[:], t.digest[:]) == 1 {
			found, ok = identity{Name: t.name, Role: t.role}, 1
		}
	}
	return found, ok == 1
}

// authenticate resolves the caller. A request without a token is anonymous; a request
// with a token that is malformed or unknown is refused at once, even on open reads, so
// a typo never silently downgrades an operator to anonymous.
func (a *API) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	if h == "" {
		c.Set(identityKey, identity{})
		c.Next()
		return
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		c.Header("WWW-Authenticate", `Bearer realm="flagwarden"`)
		abort(c, http.StatusUnauthorized, codeUnauthorized, "the Authorization header must be \"Bearer <token>\"")
		return
	}
	id, known := a.auth.lookup(strings.TrimSpace(token))
	if !known {
		c.Header("WWW-Authenticate", `Bearer realm="flagwarden", error="invalid_token"`)
		abort(c, http.StatusUnauthorized, codeUnauthorized, "unknown token")
		return
	}
	c.Set(identityKey, id)
	c.Next()
}

// require lets a request through when its identity has role: operate includes read,
// and reads are open to anonymous callers when Auth.OpenReads is set.
func (a *API) require(role Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := callerOf(c)
		switch {
		case id.Role == RoleOperate:
		case id.Role == RoleRead && role == RoleRead:
		case id.Role == "" && role == RoleRead && a.auth.openReads:
		case id.Role == "":
			c.Header("WWW-Authenticate", `Bearer realm="flagwarden"`)
			abort(c, http.StatusUnauthorized, codeUnauthorized, "a bearer token with the "+string(role)+" role is required")
			return
		default:
			abort(c, http.StatusForbidden, codeForbidden, "token "+strconv.Quote(id.Name)+" has role "+string(id.Role)+"; this needs "+string(role))
			return
		}
		c.Next()
	}
}

func callerOf(c *gin.Context) identity {
	v, _ := c.Get(identityKey)
	id, _ := v.(identity)
	return id
}
