package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
)

// fuzzBundle is one API over the fixture stores with every component on (payloads from
// an in-process Redis), so that no answer is a 503 for a component that is off.
func fuzzBundle(f *testing.F) *bundle {
	f.Helper()
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(mr.Close)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	f.Cleanup(func() { _ = rdb.Close() })
	return newBundle(f, func(o *APIOptions) { o.Payloads = NewRedisPayloads(rdb, cachekeys.Layout{}, 0) })
}

// checkAnswer fails for what no input may cause: a 5xx (a panic is a 500 from the
// recovery middleware) or an API error outside the one JSON error shape.
func checkAnswer(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s %q answered %d: %s", req.Method, req.URL.String(), rec.Code, rec.Body.String())
	}
	if rec.Code < 400 || !strings.HasPrefix(req.URL.Path, "/api/") {
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("%s %q answered %d with Content-Type %q", req.Method, req.URL.String(), rec.Code, ct)
	}
	if req.Method == http.MethodHead {
		if rec.Body.Len() > 0 {
			t.Fatalf("HEAD %q answered with a body", req.URL.String())
		}
		return
	}
	var e errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s %q answered %d outside the error shape: %s", req.Method, req.URL.String(), rec.Code, rec.Body.String())
	}
}

// FuzzAPIWriteBody sends arbitrary bodies and Content-Types to the write endpoints.
func FuzzAPIWriteBody(f *testing.F) {
	b := fuzzBundle(f)
	for _, s := range []struct{ op, ct, body string }{
		{"rebuild", "application/json", `{"reason":"flag edited"}`},
		{"quarantine", "application/json", `{"reason":"one team must not starve the rest"}`},
		{"release", "application/json; charset=utf-8", `{"reason":"fixed"}`},
		{"rebuild", "", ""},
		{"quarantine", "text/plain", `{"reason":"x"}`},
		{"quarantine", "application/json", `{"reason":"x"}{"reason":"y"}`},
		{"release", "application/json", `{"reason":`},
		{"rebuild", "application/json", `{"reason":"x","force":true}`},
		{"quarantine", "application/json", `{"reason":"\u0000\ud800"}`},
		{"rebuild", "application/json", "{\"reason\":\"x\"}" + strings.Repeat(" ", 4096)},
		{"rebuild", "application/json;;", `[]`},
	} {
		f.Add(s.op, s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, op, contentType string, body []byte) {
		switch op {
		case "rebuild", "quarantine", "release":
		default:
			op = "rebuild"
		}
		req := httptest.NewRequest("POST", "/api/v1/teams/7/"+op, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+operateToken)
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		b.router.ServeHTTP(rec, req)
		checkAnswer(t, req, rec)
		if rec.Code < 300 && len(strings.TrimSpace(string(body))) > 0 && !isJSON(contentType) {
			t.Fatalf("a body sent as %q was accepted", contentType)
		}
	})
}

// FuzzAPIPathParams sends arbitrary team ids, path tails and query strings to every
// route that takes them, read and write.
func FuzzAPIPathParams(f *testing.F) {
	b := fuzzBundle(f)
	for _, s := range []struct{ method, id, tail, query string }{
		{"GET", "2", "", "window=6h"},
		{"GET", "7", "/flags", ""},
		{"GET", "7", "/flags/definitions", ""},
		{"POST", "7", "/rebuild", ""},
		{"GET", "+5", "", ""},
		{"GET", "00001", "", ""},
		{"POST", "9223372036854775807", "/rebuild", ""},
		{"GET", "2147483648", "", ""},
		{"GET", "-1", "", ""},
		{"GET", "0x10", "", ""},
		{"GET", "1e3", "", ""},
		{"HEAD", "2", "", "window=1ns"},
		{"GET", "2", "/", ""},
		{"GET", "", "", "limit=99999999999999999999&offset=-1&sort=%00"},
		{"GET", "distribution", "", ""},
		{"DELETE", "7", "", ""},
		{"GET", "２", "", ""},
	} {
		f.Add(s.method, s.id, s.tail, s.query)
	}
	routes := []string{"/api/v1/queues", "/api/v1/teams", "/api/v1/pods", "/api/v1/findings"}
	f.Fuzz(func(t *testing.T, method, id, tail, query string) {
		switch method {
		case "GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS":
		default:
			method = "GET"
		}
		paths := append([]string{"/api/v1/teams/" + url.PathEscape(id) + tail}, routes...)
		for _, p := range paths {
			// The URL is set directly: a query with bytes a request line cannot carry
			// still reaches the router, as from a client that does not check.
			u := &url.URL{Path: p, RawQuery: query}
			req := httptest.NewRequest(method, "/", nil)
			req.URL, req.RequestURI = u, u.RequestURI()
			req.Header.Set("Authorization", "Bearer "+operateToken)
			rec := httptest.NewRecorder()
			b.router.ServeHTTP(rec, req)
			checkAnswer(t, req, rec)
		}
	})
}
