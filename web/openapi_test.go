package web

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/require"
)

// TestOpenAPICoversRoutes walks the routes gin registered and fails when an /api/v1
// route is missing from the served document, or the document names a route that does
// not exist, or a documented error code is not one the API uses.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	r := b.do(t, "GET", "/api/v1/openapi.json", "", "")
	require.Equal(t, 200, r.Code)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."))

	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	registered := map[string]bool{}
	for _, route := range b.router.Routes() {
		if !strings.HasPrefix(route.Path, "/api/v1/") {
			continue
		}
		path := param.ReplaceAllString(route.Path, "{$1}")
		if route.Method == "HEAD" {
			// HEAD answers like GET without a body; the document says so once.
			require.True(t, slices.ContainsFunc(b.router.Routes(), func(r gin.RouteInfo) bool { return r.Method == "GET" && r.Path == route.Path }),
				"HEAD %s has no GET", route.Path)
			continue
		}
		method := strings.ToLower(route.Method)
		registered[method+" "+path] = true
		ops, ok := doc.Paths[path]
		require.True(t, ok, "route %s %s is not documented in openapi.json", route.Method, path)
		_, ok = ops[method]
		require.True(t, ok, "method %s of %s is not documented in openapi.json", route.Method, path)
	}
	require.NotEmpty(t, registered)
	opIDs := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			require.True(t, registered[method+" "+path], "openapi.json documents %s %s, which is not registered", method, path)
			var o struct {
				Summary     string                     `json:"summary"`
				OperationID string                     `json:"operationId"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			require.NoError(t, json.Unmarshal(op, &o))
			require.NotEmpty(t, o.Summary, "%s %s has no summary", method, path)
			require.Regexp(t, `^[a-z][A-Za-z]+$`, o.OperationID, "%s %s has no operationId", method, path)
			require.False(t, opIDs[o.OperationID], "operationId %s is used twice", o.OperationID)
			opIDs[o.OperationID] = true
			require.Contains(t, o.Responses, "401", "%s %s must document auth failures", method, path)
			if strings.Contains(path, "{id}") {
				require.Contains(t, o.Responses, "400", "%s %s must document a bad id", method, path)
				require.Contains(t, o.Responses, "404", "%s %s must document an unknown team", method, path)
			}
		}
	}
	var codes struct {
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Error struct {
							Properties struct {
								Code struct {
									Enum []string `json:"enum"`
								} `json:"code"`
							} `json:"properties"`
						} `json:"error"`
					} `json:"properties"`
				} `json:"Error"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &codes))
	enum := codes.Components.Schemas.Error.Properties.Error.Properties.Code.Enum
	for _, c := range []string{codeBadRequest, codeBodyTooLarge, codeUnsupportedMediaType, codeUnauthorized, codeForbidden, codeNotFound, codeOverloaded, codeTimeout, codeDisabled, codeInternal} {
		require.True(t, slices.Contains(enum, c), "error code %s is not in the Error schema", c)
	}
}
