package web

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

// loadOpenAPI loads the served document with kin-openapi and validates it as OpenAPI 3.
func loadOpenAPI(t *testing.T, b *bundle) *openapi3.T {
	t.Helper()
	r := b.do(t, "GET", "/api/v1/openapi.json", "", "")
	require.Equal(t, http.StatusOK, r.Code)
	doc, err := openapi3.NewLoader().LoadFromData(r.Body)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "the document is valid OpenAPI 3")
	return doc
}

// closeObjects makes every documented object schema reject properties it does not list.
// The served document stays open (clients should tolerate new fields); in this test a
// field the handlers return but the document does not describe is a failure, so the
// two cannot drift.
func closeObjects(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(*openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties = openapi3.AdditionalProperties{Has: openapi3.Ptr(false)}
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, l := range [][]*openapi3.SchemaRef{s.AllOf, s.OneOf, s.AnyOf} {
			for _, x := range l {
				walk(x)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		walk(s)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, r := range op.Responses.Map() {
				if r.Value == nil {
					continue
				}
				for _, mt := range r.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}

// TestResponsesMatchTheOpenAPIDocument sends real requests to every route (successes
// and the errors each documents) and validates status, headers and body of every
// response against the served document with kin-openapi.
func TestResponsesMatchTheOpenAPIDocument(t *testing.T) {
	t.Parallel()
	url := testenv.Redis(t)
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	layout := cachekeys.Layout{Prefix: "v:"}
	b := newBundle(t, func(o *APIOptions) { o.Payloads = NewRedisPayloads(rdb, layout, 0) })
	publish(t, rdb, layout, 7, cachekeys.KindFlags, []byte(`{"flags":[{"key":"a"}]}`), 0)
	publish(t, rdb, layout, 7, cachekeys.KindDefinitions, []byte(`{"flags":[],"group_type_mapping":{}}`), 0)
	noEngine := newBundle(t, func(o *APIOptions) { o.Engine = nil })

	doc := loadOpenAPI(t, b)
	closeObjects(doc)
	require.Equal(t, "/", doc.Servers[0].URL, "the document is served by the replica it describes")
	// The router matches absolute URLs: resolve the relative server against the test's host.
	doc.Servers = openapi3.Servers{{URL: "http://flagwarden.test/"}}
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)

	type call struct {
		b                   *bundle
		method, path, token string
		body                string
		want                int
		// contentType, if set, replaces the application/json sent with a body.
		contentType string
	}
	calls := []call{
		{b, "GET", "/api/v1/openapi.json", "", "", 200, ""},
		{b, "GET", "/api/v1/whoami", readToken, "", 200, ""},
		{b, "GET", "/api/v1/whoami", "", "", 200, ""},
		{b, "GET", "/api/v1/queues", readToken, "", 200, ""},
		{b, "GET", "/api/v1/queues?queue=feature_flags&window=2h", readToken, "", 200, ""},
		{b, "GET", "/api/v1/queues?queue=nope", readToken, "", 404, ""},
		{b, "GET", "/api/v1/queues?window=soon", readToken, "", 400, ""},
		{b, "GET", "/api/v1/queues", "", "", 401, ""},
		{b, "GET", "/api/v1/queues", "not-a-token-at-all-000", "", 401, ""},
		{b, "GET", "/api/v1/teams?limit=5&sort=flags&order=asc", readToken, "", 200, ""},
		{b, "GET", "/api/v1/teams?outlier=true", readToken, "", 200, ""},
		{b, "GET", "/api/v1/teams?limit=0", readToken, "", 400, ""},
		{b, "GET", "/api/v1/teams/distribution", readToken, "", 200, ""},
		{b, "GET", "/api/v1/teams/2", readToken, "", 200, ""},
		{b, "GET", "/api/v1/teams/7?window=1h", readToken, "", 200, ""},
		{b, "GET", "/api/v1/teams/424242", readToken, "", 404, ""},
		{b, "GET", "/api/v1/teams/x", readToken, "", 400, ""},
		{b, "GET", "/api/v1/teams/7/flags", readToken, "", 200, ""},
		{b, "GET", "/api/v1/teams/7/flags/definitions", readToken, "", 200, ""},
		{b, "GET", "/api/v1/teams/8/flags", readToken, "", 404, ""},
		{b, "GET", "/api/v1/teams/x/flags/definitions", readToken, "", 400, ""},
		{b, "GET", "/api/v1/outliers", readToken, "", 200, ""},
		{b, "GET", "/api/v1/findings?limit=10&kind=outlier_team", readToken, "", 200, ""},
		{b, "GET", "/api/v1/findings?limit=-1", readToken, "", 400, ""},
		{b, "GET", "/api/v1/pods", readToken, "", 200, ""},
		{b, "GET", "/api/v1/pods?window=x", readToken, "", 400, ""},
		{b, "GET", "/api/v1/caches", readToken, "", 200, ""},
		{b, "GET", "/api/v1/caches?window=1ns", readToken, "", 400, ""},
		{b, "GET", "/api/v1/rebuilds", readToken, "", 200, ""},
		{noEngine, "GET", "/api/v1/rebuilds", readToken, "", 503, ""},
		{b, "GET", "/api/v1/collectors", readToken, "", 200, ""},
		{b, "POST", "/api/v1/teams/7/rebuild", operateToken, `{"reason":"check"}`, 202, ""},
		{b, "POST", "/api/v1/teams/7/rebuild", readToken, "", 403, ""},
		{b, "POST", "/api/v1/teams/424242/rebuild", operateToken, "", 404, ""},
		{b, "POST", "/api/v1/teams/7/rebuild", operateToken, `{"reason":1}`, 400, ""},
		{b, "POST", "/api/v1/teams/7/rebuild", operateToken, `{"reason":"` + strings.Repeat("x", 2<<20) + `"}`, 413, ""},
		{b, "POST", "/api/v1/teams/7/quarantine", operateToken, `{"reason":"too big"}`, 200, ""},
		{b, "GET", "/api/v1/teams/7", readToken, "", 200, ""}, // now with a quarantine object
		{b, "POST", "/api/v1/teams/7/release", operateToken, `{"reason":"fixed"}`, 200, ""},
		{b, "POST", "/api/v1/teams/7/release", operateToken, ``, 400, ""},
		{noEngine, "POST", "/api/v1/teams/7/quarantine", operateToken, `{"reason":"x"}`, 503, ""},
		{b, "POST", "/api/v1/teams/7/quarantine", operateToken, `{"reason":"x"}`, 415, "text/plain"},
		{b, "POST", "/api/v1/teams/7/rebuild", operateToken, `{"reason":"x"}`, 415, "text/plain"},
		{b, "POST", "/api/v1/teams/7/release", operateToken, `{"reason":"x"}`, 415, "text/plain"},
		{b, "POST", "/api/v1/teams/2147483648/rebuild", operateToken, "", 404, ""},
		{b, "GET", "/api/v1/teams/00007", readToken, "", 400, ""},
		{b, "GET", "/api/v1/pods?window=1ns", readToken, "", 400, ""},
	}
	covered := map[string]bool{}
	for _, c := range calls {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		if c.body != "" {
			req.Header.Set("Content-Type", cmp.Or(c.contentType, "application/json"))
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		rec := httptest.NewRecorder()
		c.b.router.ServeHTTP(rec, req)
		require.Equal(t, c.want, rec.Code, "%s %s: %s", c.method, c.path, rec.Body.String())

		// Route the request as a client would, against http://host/ and the document's
		// relative server.
		route, params, err := router.FindRoute(withHost(req))
		require.NoError(t, err, "%s %s is not in the document", c.method, c.path)
		covered[c.method+" "+route.Path] = true
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Body:    io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		})
		require.NoError(t, err, "%s %s answered %d, which the document does not describe:\n%s", c.method, c.path, rec.Code, rec.Body.String())
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			require.True(t, covered[method+" "+path], "no response of %s %s is validated", method, path)
		}
	}
}

// withHost gives a test request the absolute URL the router matches servers against.
func withHost(r *http.Request) *http.Request {
	c := r.Clone(r.Context())
	c.URL.Scheme, c.URL.Host = "http", "flagwarden.test"
	return c
}
