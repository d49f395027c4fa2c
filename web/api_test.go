package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/rebuild"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	closed := newBundle(t)
	open := newBundle(t, func(o *APIOptions) { o.Auth.OpenReads = true })
	for _, tc := range []struct {
		name   string
		b      *bundle
		method string
		path   string
		header string
		body   string
		want   int
		code   string
	}{
		{"read without token", closed, "GET", "/api/v1/findings", "", "", 401, codeUnauthorized},
		{"read with read token", closed, "GET", "/api/v1/findings", "Bearer " + readToken, "", 200, ""},
		{"read with operate token", closed, "GET", "/api/v1/findings", "Bearer " + operateToken, "", 200, ""},
		{"scheme is case-insensitive", closed, "GET", "/api/v1/findings", "bearer " + readToken, "", 200, ""},
		{"unknown token", closed, "GET", "/api/v1/findings", "Bearer not-a-configured-token", "", 401, codeUnauthorized},
		{"token prefix is not the token", closed, "GET", "/api/v1/findings", "Bearer " + readToken[:10], "", 401, codeUnauthorized},
		{"basic auth", closed, "GET", "/api/v1/findings", "Basic dXNlcjpwYXNz", "", 401, codeUnauthorized},
		{"bearer without token", closed, "GET", "/api/v1/findings", "Bearer ", "", 401, codeUnauthorized},
		{"write with read token", closed, "POST", "/api/v1/teams/7/quarantine", "Bearer " + readToken, `{"reason":"x"}`, 403, codeForbidden},
		{"write without token", closed, "POST", "/api/v1/teams/7/quarantine", "", `{"reason":"x"}`, 401, codeUnauthorized},
		{"write with operate token", closed, "POST", "/api/v1/teams/7/quarantine", "Bearer " + operateToken, `{"reason":"x"}`, 200, ""},
		{"open read without token", open, "GET", "/api/v1/teams", "", "", 200, ""},
		{"open read with a bad token is refused", open, "GET", "/api/v1/teams", "Bearer wrong-token-xxxxxxxx", "", 401, codeUnauthorized},
		{"open reads never open writes", open, "POST", "/api/v1/teams/7/rebuild", "", "", 401, codeUnauthorized},
		{"openapi needs no token", closed, "GET", "/api/v1/openapi.json", "", "", 200, ""},
		{"whoami needs no token", closed, "GET", "/api/v1/whoami", "", "", 200, ""},
		{"whoami refuses a bad token", closed, "GET", "/api/v1/whoami", "Bearer wrong-token-xxxxxxxx", "", 401, codeUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := []string{}
			if tc.header != "" {
				h = append(h, "Authorization", tc.header)
			}
			r := tc.b.do(t, tc.method, tc.path, "", tc.body, h...)
			require.Equal(t, tc.want, r.Code, "body: %s", r.Body)
			if tc.code != "" {
				require.Equal(t, tc.code, r.errorCode(t))
			}
			if tc.want == 401 {
				require.Contains(t, r.Header.Get("WWW-Authenticate"), "Bearer")
			}
		})
	}
}

func TestWhoami(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	m := b.do(t, "GET", "/api/v1/whoami", operateToken, "").json(t)
	require.Equal(t, map[string]any{"authenticated": true, "name": "oncall", "role": "operate",
		"open_reads": false, "can_read": true, "can_operate": true}, m)
	m = b.do(t, "GET", "/api/v1/whoami", readToken, "").json(t)
	require.Equal(t, false, m["can_operate"])
	m = b.do(t, "GET", "/api/v1/whoami", "", "").json(t)
	require.Equal(t, false, m["can_read"])
}

func TestTokensNeverLogged(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	b := newBundle(t, func(o *APIOptions) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	require.Equal(t, 200, b.do(t, "POST", "/api/v1/teams/2/quarantine", operateToken, `{"reason":"audit me"}`).Code)
	b.engine.err = errors.New("boom")
	b.api.decor.invalidate()
	for _, tok := range []string{operateToken, readToken, "made-up-token-123456"} {
		b.do(t, "GET", "/api/v1/teams/2", tok, "")
		b.do(t, "POST", "/api/v1/teams/2/release", tok, `{"reason":"x"}`)
	}
	out := logs.String()
	require.Contains(t, out, "team quarantined", "the write is audited")
	require.Contains(t, out, "by=oncall", "the audit names the token")
	require.Contains(t, out, "request failed", "the failure is logged")
	for _, tok := range []string{operateToken, readToken, "made-up-token-123456"} {
		require.NotContains(t, out, tok)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestErrors(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	noEngine := newBundle(t, func(o *APIOptions) { o.Engine = nil; o.Payloads = nil })
	tiny := newBundle(t, func(o *APIOptions) { o.MaxBodyBytes = 32 })
	failing := newBundle(t)
	failing.engine.err = errors.New("state database is gone")
	failing.findings.err = errors.New("state database is gone")
	for _, tc := range []struct {
		name   string
		b      *bundle
		method string
		path   string
		body   string
		want   int
		code   string
	}{
		{"id not a number", b, "GET", "/api/v1/teams/abc", "", 400, codeBadRequest},
		{"id zero", b, "GET", "/api/v1/teams/0", "", 400, codeBadRequest},
		{"id negative", b, "GET", "/api/v1/teams/-4", "", 400, codeBadRequest},
		{"id overflows int64: no such team", b, "GET", "/api/v1/teams/99999999999999999999", "", 404, codeNotFound},
		{"id past int4: no such team", b, "GET", "/api/v1/teams/2147483648", "", 404, codeNotFound},
		{"id past int4 on rebuild", b, "POST", "/api/v1/teams/9223372036854775807/rebuild", "", 404, codeNotFound},
		{"id past int4 on quarantine", b, "POST", "/api/v1/teams/2147483648/quarantine", `{"reason":"x"}`, 404, codeNotFound},
		{"id past int4 on payload", b, "GET", "/api/v1/teams/4294967296/flags", "", 404, codeNotFound},
		{"id with plus sign", b, "GET", "/api/v1/teams/+5", "", 400, codeBadRequest},
		{"id with leading zeros", b, "GET", "/api/v1/teams/00001", "", 400, codeBadRequest},
		{"id with leading zeros on write", b, "POST", "/api/v1/teams/007/rebuild", "", 400, codeBadRequest},
		{"id with spaces", b, "GET", "/api/v1/teams/%205", "", 400, codeBadRequest},
		{"window below a second", b, "GET", "/api/v1/queues?window=1ns", "", 400, codeBadRequest},
		{"window below a second on pods", b, "GET", "/api/v1/pods?window=999ms", "", 400, codeBadRequest},
		{"window below a second on a team", b, "GET", "/api/v1/teams/2?window=1us", "", 400, codeBadRequest},
		{"trailing slash under the API", b, "GET", "/api/v1/teams/", "", 404, codeNotFound},
		{"trailing slash on a write", b, "POST", "/api/v1/teams/7/rebuild/", "", 404, codeNotFound},
		{"unknown team", b, "GET", "/api/v1/teams/4242", "", 404, codeNotFound},
		{"unknown team rebuild", b, "POST", "/api/v1/teams/4242/rebuild", "", 404, codeNotFound},
		{"unknown team quarantine", b, "POST", "/api/v1/teams/4242/quarantine", `{"reason":"x"}`, 404, codeNotFound},
		{"unknown team release", b, "POST", "/api/v1/teams/4242/release", `{"reason":"x"}`, 404, codeNotFound},
		{"bad id on write", b, "POST", "/api/v1/teams/x/rebuild", "", 400, codeBadRequest},
		{"bad id on payload", b, "GET", "/api/v1/teams/x/flags", "", 400, codeBadRequest},
		{"limit too big", b, "GET", "/api/v1/teams?limit=501", "", 400, codeBadRequest},
		{"limit not a number", b, "GET", "/api/v1/teams?limit=ten", "", 400, codeBadRequest},
		{"offset negative", b, "GET", "/api/v1/teams?offset=-1", "", 400, codeBadRequest},
		{"unknown sort", b, "GET", "/api/v1/teams?sort=name", "", 400, codeBadRequest},
		{"unknown order", b, "GET", "/api/v1/teams?order=up", "", 400, codeBadRequest},
		{"bad bool filter", b, "GET", "/api/v1/teams?outlier=maybe", "", 400, codeBadRequest},
		{"bad window", b, "GET", "/api/v1/queues?window=forever", "", 400, codeBadRequest},
		{"negative window", b, "GET", "/api/v1/pods?window=-1h", "", 400, codeBadRequest},
		{"unknown queue", b, "GET", "/api/v1/queues?queue=nope", "", 404, codeNotFound},
		{"findings limit", b, "GET", "/api/v1/findings?limit=0", "", 400, codeBadRequest},
		{"malformed body", b, "POST", "/api/v1/teams/7/quarantine", `{"reason":`, 400, codeBadRequest},
		{"body not an object", b, "POST", "/api/v1/teams/7/quarantine", `["x"]`, 400, codeBadRequest},
		{"unknown body field", b, "POST", "/api/v1/teams/7/quarantine", `{"reason":"x","force":true}`, 400, codeBadRequest},
		{"two objects", b, "POST", "/api/v1/teams/7/quarantine", `{"reason":"x"}{"reason":"y"}`, 400, codeBadRequest},
		{"reason missing", b, "POST", "/api/v1/teams/7/quarantine", `{}`, 400, codeBadRequest},
		{"reason blank", b, "POST", "/api/v1/teams/7/release", `{"reason":"   "}`, 400, codeBadRequest},
		{"reason too long", b, "POST", "/api/v1/teams/7/quarantine", `{"reason":"` + strings.Repeat("x", 501) + `"}`, 400, codeBadRequest},
		{"body too large", tiny, "POST", "/api/v1/teams/7/quarantine", `{"reason":"` + strings.Repeat("x", 100) + `"}`, 413, codeBodyTooLarge},
		{"engine disabled: status", noEngine, "GET", "/api/v1/rebuilds", "", 503, codeDisabled},
		{"engine disabled: rebuild", noEngine, "POST", "/api/v1/teams/7/rebuild", "", 503, codeDisabled},
		{"engine disabled: quarantine", noEngine, "POST", "/api/v1/teams/7/quarantine", `{"reason":"x"}`, 503, codeDisabled},
		{"payloads disabled", noEngine, "GET", "/api/v1/teams/7/flags", "", 503, codeDisabled},
		{"engine fails", failing, "GET", "/api/v1/rebuilds", "", 500, codeInternal},
		{"findings fail", failing, "GET", "/api/v1/findings", "", 500, codeInternal},
		{"findings fail on team list", failing, "GET", "/api/v1/teams", "", 500, codeInternal},
		{"unknown endpoint", b, "GET", "/api/v1/nope", "", 404, codeNotFound},
		{"wrong method", b, "DELETE", "/api/v1/teams/7", "", 404, codeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.b.do(t, tc.method, tc.path, operateToken, tc.body)
			require.Equal(t, tc.want, r.Code, "body: %s", r.Body)
			require.Equal(t, tc.code, r.errorCode(t))
			require.Equal(t, "application/json; charset=utf-8", r.Header.Get("Content-Type"))
		})
	}
}

func TestDisabledComponentsAnswerEmpty(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(o *APIOptions) { o.Findings = nil; o.Engine = nil; o.Loops = nil })
	f := b.do(t, "GET", "/api/v1/findings", readToken, "")
	require.Equal(t, 200, f.Code)
	require.JSONEq(t, `{"enabled":false,"active":[],"recent":[]}`, string(f.Body))
	o := b.do(t, "GET", "/api/v1/outliers", readToken, "")
	require.JSONEq(t, `{"enabled":false,"outliers":[]}`, string(o.Body))
	c := b.do(t, "GET", "/api/v1/collectors", readToken, "")
	require.JSONEq(t, `{"collectors":[]}`, string(c.Body))
	team := b.do(t, "GET", "/api/v1/teams/2", readToken, "").json(t)
	require.Equal(t, false, team["engine_enabled"])
	require.Nil(t, team["quarantine"])
	require.Equal(t, []any{}, team["rebuilds"])
}

func TestHandlerTimeout(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(o *APIOptions) { o.HandlerTimeout = 50 * time.Millisecond })
	b.engine.block = make(chan struct{}) // never closed: every engine call waits for the deadline
	r := b.do(t, "GET", "/api/v1/rebuilds", readToken, "")
	require.Equal(t, http.StatusServiceUnavailable, r.Code, "body: %s", r.Body)
	require.Equal(t, codeTimeout, r.errorCode(t))
	r = b.do(t, "POST", "/api/v1/teams/7/rebuild", operateToken, "")
	require.Equal(t, codeTimeout, r.errorCode(t))
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(o *APIOptions) { o.MaxConcurrent = 2 })
	b.engine.block = make(chan struct{})
	var wg sync.WaitGroup
	results := make(chan int, 2)
	for range 2 {
		wg.Go(func() { results <- b.do(t, "GET", "/api/v1/rebuilds", readToken, "").Code })
	}
	// Wait until both hold a slot, then one more must be shed.
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(b.api.metrics.inFlight) < 2 {
		require.True(t, time.Now().Before(deadline), "two requests never got in flight")
		time.Sleep(5 * time.Millisecond)
	}
	r := b.do(t, "GET", "/api/v1/findings", readToken, "")
	require.Equal(t, http.StatusServiceUnavailable, r.Code)
	require.Equal(t, codeOverloaded, r.errorCode(t))
	require.Equal(t, "1", r.Header.Get("Retry-After"))
	require.Equal(t, 1.0, testutil.ToFloat64(b.api.metrics.shed))
	close(b.engine.block)
	wg.Wait()
	close(results)
	for code := range results {
		require.Equal(t, 200, code)
	}
	require.Equal(t, 200, b.do(t, "GET", "/api/v1/findings", readToken, "").Code, "slots are given back")
}

func TestQueues(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	var got struct {
		Unacked      int64 `json:"unacked"`
		Overdue      int64 `json:"overdue"`
		BacklogLimit int64 `json:"backlog_limit"`
		Queues       []struct {
			Name             string           `json:"name"`
			Depth            int64            `json:"depth"`
			ByPriority       map[string]int64 `json:"by_priority"`
			OldestAgeSeconds float64          `json:"oldest_age_seconds"`
			History          []series.Point   `json:"history"`
			Trend            *Trend           `json:"trend"`
			Composition      struct {
				DuplicateRatio float64 `json:"duplicate_ratio"`
			} `json:"composition"`
		} `json:"queues"`
	}
	r := b.do(t, "GET", "/api/v1/queues", readToken, "")
	require.Equal(t, 200, r.Code)
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.EqualValues(t, 12, got.Unacked)
	require.EqualValues(t, 3, got.Overdue)
	require.Len(t, got.Queues, 2)
	ff := got.Queues[0]
	require.Equal(t, "feature_flags", ff.Name, "deepest queue first")
	require.EqualValues(t, 16200, ff.Depth)
	require.Equal(t, map[string]int64{"0": 200, "3": 1000, "6": 15000}, ff.ByPriority)
	require.Equal(t, 4*3600.0, ff.OldestAgeSeconds)
	require.Equal(t, 0.99, ff.Composition.DuplicateRatio)
	require.LessOrEqual(t, len(ff.History), maxHistoryPoints)
	require.Greater(t, len(ff.History), 100)
	require.NotNil(t, ff.Trend)
	// 20 per minute is 1,200 an hour; the burst at the end must not bend it.
	require.InDelta(t, 1200, ff.Trend.SlopePerHour, 30)
	require.Greater(t, ff.Trend.Tau, 0.9)
	require.NotNil(t, ff.Trend.ETAToLimitSeconds)
	last := 5000 + 20*360 + 4000.0
	require.InDelta(t, (100000-last)/1200*3600, *ff.Trend.ETAToLimitSeconds, 0.03*(100000-last)/1200*3600)
	require.Nil(t, ff.Trend.ETAToEmptySeconds)
	flat := got.Queues[1]
	require.Equal(t, 0.0, flat.Trend.SlopePerHour)
	require.Nil(t, flat.Trend.ETAToLimitSeconds)

	one := b.do(t, "GET", "/api/v1/queues?queue=celery&window=1h", readToken, "").json(t)
	require.Len(t, one["queues"], 1)
	require.Equal(t, 3600.0, one["window_seconds"])
}

func TestTeamsList(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	type page struct {
		Total int64      `json:"total"`
		Teams []teamView `json:"teams"`
	}
	get := func(q string) page {
		r := b.do(t, "GET", "/api/v1/teams"+q, readToken, "")
		require.Equal(t, 200, r.Code, "body: %s", r.Body)
		var p page
		require.NoError(t, json.Unmarshal(r.Body, &p))
		return p
	}
	p := get("")
	require.EqualValues(t, 300, p.Total)
	require.Len(t, p.Teams, 50)
	require.EqualValues(t, 2, p.Teams[0].TeamID, "the outlier is the biggest")
	require.True(t, p.Teams[0].Outlier)
	require.EqualValues(t, 2_100_000_000, p.Teams[0].PayloadBytes)
	require.EqualValues(t, 8*4_000_000_000, p.Teams[0].NaiveBuildBytes)
	require.EqualValues(t, 299, p.Teams[1].TeamID)
	for i := 1; i < len(p.Teams); i++ {
		require.GreaterOrEqual(t, p.Teams[i-1].PayloadBytes, p.Teams[i].PayloadBytes)
	}
	p2 := get("?limit=50&offset=50")
	require.EqualValues(t, 250, p2.Teams[0].TeamID, "the second page follows the first")
	asc := get("?sort=team_id&order=asc&limit=3")
	require.Equal(t, []int64{1, 2, 3}, ids(asc.Teams))
	flags := get("?sort=flags&limit=1")
	require.EqualValues(t, 2, flags.Teams[0].TeamID)
	f := get("?min_bytes=40000&max_bytes=42000")
	for _, tv := range f.Teams {
		require.GreaterOrEqual(t, tv.PayloadBytes, int64(40000))
		require.LessOrEqual(t, tv.PayloadBytes, int64(42000))
	}
	require.EqualValues(t, len(f.Teams), f.Total)
	require.NotZero(t, f.Total)
	require.Equal(t, []int64{2}, ids(get("?outlier=true").Teams))
	require.EqualValues(t, 299, get("?outlier=false").Total)
	require.Equal(t, []int64{2}, ids(get("?bad=true").Teams))
	require.Equal(t, []int64{17}, ids(get("?project_id=17").Teams))
	require.Empty(t, get("?quarantined=true").Teams)
	require.Equal(t, 200, b.do(t, "POST", "/api/v1/teams/17/quarantine", operateToken, `{"reason":"noisy"}`).Code)
	require.Equal(t, []int64{17}, ids(get("?quarantined=true").Teams), "a write shows at once")
	past := get("?offset=1000")
	require.Empty(t, past.Teams)
	require.EqualValues(t, 300, past.Total)
}

func ids(ts []teamView) []int64 {
	out := []int64{}
	for _, t := range ts {
		out = append(out, t.TeamID)
	}
	return out
}

func TestDistribution(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	var d struct {
		Teams      int      `json:"teams"`
		EmptyTeams int      `json:"empty_teams"`
		Buckets    []bucket `json:"buckets"`
		MaxBytes   int64    `json:"max_bytes"`
		NaiveLimit int64    `json:"naive_limit_payload_bytes"`
		Outliers   []teamView
	}
	r := b.do(t, "GET", "/api/v1/teams/distribution", readToken, "")
	require.Equal(t, 200, r.Code)
	require.NoError(t, json.Unmarshal(r.Body, &d))
	require.Equal(t, 300, d.Teams)
	require.Equal(t, 1, d.EmptyTeams)
	total := 0
	for i, bk := range d.Buckets {
		total += bk.Count
		if i > 0 {
			require.Equal(t, d.Buckets[i-1].UpperBytes, bk.LowerBytes, "bins are contiguous")
		}
	}
	require.Equal(t, 299, total, "every non-empty team is in a bin")
	lastBin := d.Buckets[len(d.Buckets)-1]
	require.Equal(t, 1, lastBin.Count, "the outlier sits alone in the top bin")
	require.Greater(t, lastBin.UpperBytes, d.MaxBytes)
	require.LessOrEqual(t, lastBin.LowerBytes, d.MaxBytes)
	require.Len(t, d.Outliers, 1)
	require.EqualValues(t, 2, d.Outliers[0].TeamID)
	// 8 GiB workers, a build holding 8× both of two equal payloads: 512 MiB each.
	require.EqualValues(t, 512<<20, d.NaiveLimit)
}

func TestTeam(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	require.Equal(t, 200, b.do(t, "POST", "/api/v1/teams/2/quarantine", operateToken, `{"reason":"4 GB payload"}`).Code)
	var got struct {
		Team    teamView `json:"team"`
		History struct {
			PayloadBytes []series.Point `json:"payload_bytes"`
			Flags        []series.Point `json:"flags"`
		} `json:"history"`
		Caches []struct {
			Kind       string  `json:"kind"`
			Stale      bool    `json:"stale"`
			Missing    bool    `json:"missing"`
			AgeSeconds float64 `json:"age_seconds"`
		} `json:"caches"`
		Findings   []detectors.Finding   `json:"findings"`
		Rebuilds   []rebuild.BuildResult `json:"rebuilds"`
		Quarantine *rebuild.Quarantine   `json:"quarantine"`
	}
	r := b.do(t, "GET", "/api/v1/teams/2", readToken, "")
	require.Equal(t, 200, r.Code)
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.EqualValues(t, 48000, got.Team.Flags)
	require.True(t, got.Team.Outlier)
	require.True(t, got.Team.Quarantined)
	require.Len(t, got.History.PayloadBytes, 10)
	require.Equal(t, 4e9, got.History.PayloadBytes[9].V)
	require.Len(t, got.History.Flags, 10)
	require.Len(t, got.Caches, 2)
	require.True(t, got.Caches[0].Stale)
	require.Equal(t, 96*3600.0, got.Caches[0].AgeSeconds)
	require.True(t, got.Caches[1].Missing && got.Caches[1].Stale)
	require.Len(t, got.Findings, 1, "only this team's findings")
	require.Equal(t, "outlier_team", got.Findings[0].Kind)
	require.Len(t, got.Rebuilds, 1)
	require.EqualValues(t, 96<<20, got.Rebuilds[0].MemoryBoundBytes)
	require.EqualValues(t, 211<<20, got.Rebuilds[0].PeakHeapBytes)
	require.NotNil(t, got.Quarantine)
	require.Equal(t, "4 GB payload", got.Quarantine.Reason)

	fresh := b.do(t, "GET", "/api/v1/teams/7", readToken, "").json(t)
	require.Nil(t, fresh["quarantine"])
	require.Len(t, fresh["caches"], 1)
	require.Equal(t, false, fresh["caches"].([]any)[0].(map[string]any)["stale"])
	require.Equal(t, []any{}, fresh["findings"])
	require.Len(t, b.do(t, "GET", "/api/v1/teams/2?window=72h", readToken, "").json(t)["history"].(map[string]any)["payload_bytes"], 3)
}

func TestWrites(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	r := b.do(t, "POST", "/api/v1/teams/7/rebuild", operateToken, `{"reason":"flag edited"}`)
	require.Equal(t, http.StatusAccepted, r.Code)
	first := r.json(t)
	require.Equal(t, false, first["joined"])
	require.NotZero(t, first["job_id"])
	r = b.do(t, "POST", "/api/v1/teams/7/rebuild", operateToken, "")
	require.Equal(t, http.StatusAccepted, r.Code, "an empty body is fine for a rebuild")
	second := r.json(t)
	require.Equal(t, true, second["joined"])
	require.Equal(t, first["job_id"], second["job_id"])
	require.Contains(t, second["message"], "joined")

	r = b.do(t, "POST", "/api/v1/teams/7/quarantine", operateToken, `{"reason":"too big"}`)
	require.Equal(t, 200, r.Code)
	require.JSONEq(t, `{"team_id":7,"quarantined":true,"reason":"too big"}`, string(r.Body))
	st := b.do(t, "GET", "/api/v1/rebuilds", readToken, "").json(t)
	require.Len(t, st["quarantined"], 1)
	r = b.do(t, "POST", "/api/v1/teams/7/release", operateToken, `{"reason":"fixed"}`)
	require.Equal(t, 200, r.Code)
	require.Nil(t, b.do(t, "GET", "/api/v1/teams/7", readToken, "").json(t)["quarantine"])
}

func TestFindingsOutliersPodsCollectorsRebuilds(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	f := b.do(t, "GET", "/api/v1/findings?limit=1", readToken, "").json(t)
	require.Len(t, f["active"], 2)
	require.Len(t, f["recent"], 1)
	ev := f["active"].([]any)[0].(map[string]any)["evidence"].(map[string]any)
	require.Equal(t, 412.5, ev["robust_z"])
	k := b.do(t, "GET", "/api/v1/findings?kind=backlog_growth", readToken, "").json(t)
	require.Len(t, k["active"], 1)

	o := b.do(t, "GET", "/api/v1/outliers", readToken, "").json(t)
	list := o["outliers"].([]any)
	require.Len(t, list, 1)
	require.Equal(t, 2.1e9, list[0].(map[string]any)["team"].(map[string]any)["payload_bytes"])

	p := b.do(t, "GET", "/api/v1/pods", readToken, "").json(t)
	ns := p["namespaces"].([]any)[0].(map[string]any)
	require.Equal(t, "posthog", ns["namespace"])
	require.Equal(t, 3.0, ns["total"])
	require.Equal(t, 1.0, ns["ready"])
	require.Equal(t, 2.0, ns["crashlooping"])
	require.Equal(t, 2.0, ns["last_terminated_oomkilled"])
	require.Equal(t, 0.75, ns["max_memory_ratio"])
	// 30 looks two minutes apart with 0,1,2 kills: the last hour holds 30 looks... of
	// which the window keeps those at or after now-1h.
	require.Equal(t, 30.0, ns["restarts_in_window"])
	require.Equal(t, 30.0, ns["oom_kills_in_window"])
	require.Len(t, p["pods"], 3)
	p30 := b.do(t, "GET", "/api/v1/pods?window=30m", readToken, "").json(t)
	require.Equal(t, 15.0, p30["namespaces"].([]any)[0].(map[string]any)["restarts_in_window"])

	c := b.do(t, "GET", "/api/v1/collectors", readToken, "").json(t)
	cs := c["collectors"].([]any)
	require.Equal(t, "celery", cs[0].(map[string]any)["name"])
	require.Equal(t, 600.0, cs[0].(map[string]any)["since_success_seconds"])

	st := b.do(t, "GET", "/api/v1/rebuilds", readToken, "").json(t)
	require.Len(t, st["lanes"], 3)
	require.Equal(t, float64(512<<20), st["budget_bytes"])
}

func TestHTTPMetrics(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	b.do(t, "GET", "/api/v1/teams/2", readToken, "")
	b.do(t, "GET", "/api/v1/teams/3", readToken, "")
	b.do(t, "GET", "/api/v1/teams/abc", readToken, "")
	b.do(t, "GET", "/api/v1/no/such/thing", readToken, "")
	b.do(t, "GET", "/teams/5", "", "")
	require.Equal(t, 2.0, testutil.ToFloat64(b.api.metrics.requests.WithLabelValues("/api/v1/teams/:id", "GET", "200")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.api.metrics.requests.WithLabelValues("/api/v1/teams/:id", "GET", "400")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.api.metrics.requests.WithLabelValues("unmatched", "GET", "404")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.api.metrics.requests.WithLabelValues("/teams/:id", "GET", "200")))
	n, err := testutil.GatherAndCount(b.reg, "flagwarden_http_request_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 3, n, "one histogram per route template and method, never per raw path")
	r := b.do(t, "GET", "/metrics", "", "")
	require.Contains(t, string(r.Body), `flagwarden_http_requests_total{code="200",method="GET",route="/api/v1/teams/:id"} 2`)
}

func TestNewAPIValidates(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	for _, tc := range []struct {
		name string
		opts APIOptions
		want string
	}{
		{"no snapshots", APIOptions{Series: b.series}, "Snapshots"},
		{"no series", APIOptions{Snapshots: b.snaps}, "Series"},
		{"negative timeout", APIOptions{Snapshots: b.snaps, Series: b.series, HandlerTimeout: -1}, "HandlerTimeout"},
		{"bad role", APIOptions{Snapshots: b.snaps, Series: b.series, Auth: Auth{Tokens: []Token{{Name: "x", Token: "0123456789abcdef", Role: "admin"}}}}, "Role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAPI(tc.opts)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// The options may end up in a log line or an error; a token printed with them would be
// a credential in the log.
func TestPrintedOptionsLeaveTokensOut(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-0123456789abcdef"
	opts := APIOptions{Auth: Auth{Tokens: []Token{{Name: "oncall", Token: secret, Role: RoleOperate}}}}
	for _, verb := range []string{"%v", "%+v", "%s"} {
		out := fmt.Sprintf(verb, opts)
		require.NotContains(t, out, secret, verb)
		require.Contains(t, out, "oncall", verb)
	}
}

func TestTrendIsRobust(t *testing.T) {
	t.Parallel()
	base := fixtureNow
	mk := func(n int, f func(i int) float64) []series.Point {
		pts := make([]series.Point, n)
		for i := range pts {
			pts[i] = series.Point{T: base.Add(time.Duration(i) * time.Minute), V: f(i)}
		}
		return pts
	}
	for _, tc := range []struct {
		name      string
		pts       []series.Point
		slope     float64
		toLimit   bool
		toEmpty   bool
		wantNil   bool
		tolerance float64
	}{
		{"steady growth", mk(120, func(i int) float64 { return float64(i) }), 60, true, false, false, 0.01},
		{"burst at the end", mk(360, func(i int) float64 {
			if i > 350 {
				return 100 + 400
			}
			return 100
		}), 0, false, false, false, 0.01},
		{"draining", mk(60, func(i int) float64 { return 1000 - 10*float64(i) }), -600, false, true, false, 0.01},
		{"thinned long series", mk(20000, func(i int) float64 { return 2 * float64(i) }), 120, true, false, false, 1},
		{"too short", mk(2, func(i int) float64 { return 1 }), 0, false, false, true, 0},
		{"NaN samples are skipped", mk(60, func(i int) float64 {
			if i%7 == 0 {
				return math.NaN()
			}
			return float64(i)
		}), 60, true, false, false, 0.01},
		{"only NaN", mk(5, func(i int) float64 { return math.Inf(1) }), 0, false, false, true, 0},
		{"no time span", []series.Point{{T: base, V: 1}, {T: base, V: 2}, {T: base, V: 3}}, 0, false, false, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := fitTrend(tc.pts, 100000)
			if tc.wantNil {
				require.Nil(t, tr)
				return
			}
			require.NotNil(t, tr)
			require.InDelta(t, tc.slope, tr.SlopePerHour, tc.tolerance)
			require.Equal(t, tc.toLimit, tr.ETAToLimitSeconds != nil)
			require.Equal(t, tc.toEmpty, tr.ETAToEmptySeconds != nil)
			require.LessOrEqual(t, tr.Points, maxTrendPoints)
		})
	}
}

func TestEtagMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{`"abc"`, true}, {`W/"abc"`, true}, {`"x", "abc"`, true}, {`*`, true},
		{``, false}, {`"abcd"`, false}, {`"ab"`, false},
	} {
		require.Equal(t, tc.want, etagMatches(tc.header, "abc"), tc.header)
	}
}

func TestResponseCache(t *testing.T) {
	t.Parallel()
	newFinding := detectors.Finding{ID: "cache_stale/fleet", Kind: "fleet_cache_stale", Severity: detectors.SeverityWarning,
		Subject: "fleet", State: detectors.StatePending, ActiveAt: fixtureNow}
	active := func(b *bundle) int {
		return len(b.do(t, "GET", "/api/v1/findings", readToken, "").json(t)["active"].([]any))
	}

	never := newBundle(t, func(o *APIOptions) { o.CacheTTL = -1 })
	require.Equal(t, 2, active(never))
	never.findings.mu.Lock()
	never.findings.active = append(never.findings.active, newFinding)
	never.findings.mu.Unlock()
	require.Equal(t, 3, active(never), "without a cache every answer is fresh")

	short := newBundle(t, func(o *APIOptions) { o.CacheTTL = 100 * time.Millisecond })
	require.Equal(t, 2, active(short))
	short.findings.mu.Lock()
	short.findings.active = append(short.findings.active, newFinding)
	short.findings.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for active(short) != 3 {
		require.True(t, time.Now().Before(deadline), "a cached answer outlived its TTL")
		time.Sleep(20 * time.Millisecond)
	}

	// A new team snapshot is never answered from the old one's cache.
	long := newBundle(t, func(o *APIOptions) { o.CacheTTL = time.Hour })
	require.EqualValues(t, 300, long.do(t, "GET", "/api/v1/teams", readToken, "").json(t)["total"])
	snap := long.snaps.Teams()
	snap.At = snap.At.Add(time.Minute)
	delete(snap.Teams, 5)
	long.snaps.SetTeams(snap)
	require.EqualValues(t, 299, long.do(t, "GET", "/api/v1/teams", readToken, "").json(t)["total"])
	// Errors are not cached.
	long.findings.err = errors.New("down")
	require.Equal(t, 500, long.do(t, "GET", "/api/v1/findings?limit=7", readToken, "").Code)
	long.findings.err = nil
	require.Equal(t, 200, long.do(t, "GET", "/api/v1/findings?limit=7", readToken, "").Code)
}

func TestResponseCacheServesStaleWhileASlowStoreRefreshes(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(o *APIOptions) { o.CacheTTL = 20 * time.Millisecond; o.HandlerTimeout = time.Minute })
	active := func() int {
		r := b.do(t, "GET", "/api/v1/findings", readToken, "")
		require.Equal(t, 200, r.Code, "body: %s", r.Body)
		return len(r.json(t)["active"].([]any))
	}
	require.Equal(t, 2, active())
	hang := make(chan struct{})
	b.findings.mu.Lock()
	b.findings.block = hang
	b.findings.active = b.findings.active[:1]
	b.findings.mu.Unlock()
	time.Sleep(30 * time.Millisecond) // past the TTL: the next answers are stale ones
	// The store hangs, yet requests are answered (from the expired answer) instead of
	// waiting a minute for the store.
	for range 5 {
		require.Equal(t, 2, active())
	}
	close(hang)
	deadline := time.Now().Add(10 * time.Second)
	for active() != 1 {
		require.True(t, time.Now().Before(deadline), "the background refresh never replaced the stale answer")
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFindingsShowInsufficientData uses the real in-memory findings store: a detector
// that lacked history says so in the findings answer instead of staying silent.
func TestFindingsShowInsufficientData(t *testing.T) {
	t.Parallel()
	store := detectors.NewMemStore()
	require.NoError(t, store.SaveStatus(context.Background(), []detectors.DetectorStatus{
		{Detector: "backlog_growth", At: fixtureNow, Evaluated: 3, Insufficient: 2, Note: "2 queues have under 2 h of history"},
	}))
	b := newBundle(t, func(o *APIOptions) { o.Findings = store })
	f := b.do(t, "GET", "/api/v1/findings", readToken, "").json(t)
	require.Empty(t, f["active"])
	st := f["detectors"].([]any)
	require.Len(t, st, 1)
	got := st[0].(map[string]any)
	require.Equal(t, "backlog_growth", got["detector"])
	require.Equal(t, 2.0, got["insufficient_data"])
	require.Equal(t, "2 queues have under 2 h of history", got["note"])
}

// TestClockHeader: every API answer says what time the server's clock reads, so the
// dashboard can show ages against it (the demo's clock is simulated).
func TestClockHeader(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	for _, path := range []string{"/api/v1/whoami", "/api/v1/findings", "/api/v1/teams/999999"} {
		r := b.do(t, "GET", path, readToken, "")
		require.Equal(t, fixtureNow.Format(time.RFC3339Nano), r.Header.Get("X-Flagwarden-Now"), path)
	}
}

// TestWriteBodyLimitsAndContentType sends writes over a real loopback connection, where a
// body of unknown length arrives chunked and only the reader can bound it.
func TestWriteBodyLimitsAndContentType(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	srv := httptest.NewServer(b.router)
	t.Cleanup(srv.Close)
	post := func(t *testing.T, path, contentType string, body io.Reader) (int, errorBody) {
		t.Helper()
		req, err := http.NewRequest("POST", srv.URL+path, body)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+operateToken)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
		var e errorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	// io.MultiReader hides the length, so the client sends the body chunked.
	whitespace := func(n int) io.Reader {
		return io.MultiReader(strings.NewReader(`{"reason":"x"}`), strings.NewReader(strings.Repeat(" \n", n/2)))
	}

	t.Run("an object followed by megabytes of whitespace is too large", func(t *testing.T) {
		code, e := post(t, "/api/v1/teams/7/quarantine", "application/json", whitespace(3<<20))
		require.Equal(t, http.StatusRequestEntityTooLarge, code)
		require.Equal(t, codeBodyTooLarge, e.Error.Code)
		require.Nil(t, b.do(t, "GET", "/api/v1/teams/7", readToken, "").json(t)["quarantine"], "nothing was done")
	})
	t.Run("a little trailing whitespace is fine", func(t *testing.T) {
		code, _ := post(t, "/api/v1/teams/7/release", "application/json", whitespace(100))
		require.Equal(t, http.StatusOK, code)
	})
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "application/jsonp"} {
		t.Run("content type "+strconv.Quote(ct), func(t *testing.T) {
			code, e := post(t, "/api/v1/teams/7/quarantine", ct, strings.NewReader(`{"reason":"x"}`))
			require.Equal(t, http.StatusUnsupportedMediaType, code)
			require.Equal(t, codeUnsupportedMediaType, e.Error.Code)
			require.Contains(t, e.Error.Message, "application/json")
		})
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"} {
		t.Run("accepts "+strconv.Quote(ct), func(t *testing.T) {
			code, _ := post(t, "/api/v1/teams/7/rebuild", ct, strings.NewReader(`{"reason":"x"}`))
			require.Equal(t, http.StatusAccepted, code)
		})
	}
	t.Run("an empty body needs no content type", func(t *testing.T) {
		code, _ := post(t, "/api/v1/teams/7/rebuild", "", nil)
		require.Equal(t, http.StatusAccepted, code)
	})
}

func TestHeadAnswersLikeGet(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	for _, path := range []string{"/api/v1/queues", "/api/v1/teams", "/api/v1/teams/2", "/api/v1/whoami", "/api/v1/openapi.json", "/api/v1/pods"} {
		get := b.do(t, "GET", path, readToken, "")
		head := b.do(t, "HEAD", path, readToken, "")
		require.Equal(t, http.StatusOK, get.Code, path)
		require.Equal(t, get.Code, head.Code, "HEAD %s", path)
		require.Equal(t, get.Header.Get("Content-Type"), head.Header.Get("Content-Type"), "HEAD %s", path)
		require.Empty(t, head.Body, "HEAD %s has no body", path)
	}
	for path, want := range map[string]int{
		"/api/v1/teams/4242": http.StatusNotFound, "/api/v1/teams/+5": http.StatusBadRequest,
		"/api/v1/nope": http.StatusNotFound, "/api/v1/teams/": http.StatusNotFound,
	} {
		head := b.do(t, "HEAD", path, readToken, "")
		require.Equal(t, want, head.Code, "HEAD %s", path)
		require.Equal(t, "application/json; charset=utf-8", head.Header.Get("Content-Type"), "HEAD %s", path)
		require.Empty(t, head.Body)
	}
	// Without a token, HEAD is refused as GET is.
	require.Equal(t, http.StatusUnauthorized, b.do(t, "HEAD", "/api/v1/queues", "", "").Code)
}

func TestTrailingSlash(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	r := b.do(t, "GET", "/api/v1/teams/", readToken, "")
	require.Equal(t, http.StatusNotFound, r.Code)
	require.Equal(t, codeNotFound, r.errorCode(t))
	require.Contains(t, string(r.Body), "/api/v1/teams)", "says the path without the slash")
	// Dashboard paths still lead a person to the page.
	r = b.do(t, "GET", "/teams/?x=1", "", "")
	require.Equal(t, http.StatusMovedPermanently, r.Code)
	require.Equal(t, "/teams?x=1", r.Header.Get("Location"))
}

func TestCacheFreshness(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	var got struct {
		Caches, Stale, Missing int
		MaxLag                 float64 `json:"max_lag_seconds"`
		History                map[string][]series.Point
	}
	r := b.do(t, "GET", "/api/v1/caches?window=2h", readToken, "")
	require.Equal(t, http.StatusOK, r.Code)
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.Equal(t, 3, got.Caches)
	require.Equal(t, 1, got.Stale, "team 2's flags cache is 96 h behind")
	require.Equal(t, 1, got.Missing, "team 2 has no definitions cache")
	require.Equal(t, (96*time.Hour - time.Minute).Seconds(), got.MaxLag)
	require.Len(t, got.History["lag_p99_seconds"], 30)
	require.Len(t, got.History["stale_teams"], 30)
	short := b.do(t, "GET", "/api/v1/caches?window=3m", readToken, "")
	require.NoError(t, json.Unmarshal(short.Body, &got))
	require.Len(t, got.History["lag_max_seconds"], 1, "the window bounds the history")
}

func TestDashboardFiles(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	for path, ct := range map[string]string{
		"/ui/app.js":                     "text/javascript; charset=utf-8",
		"/ui/js/charts.js":               "text/javascript; charset=utf-8",
		"/ui/js/pages/overview.js":       "text/javascript; charset=utf-8",
		"/ui/vendor/uplot/uPlot.esm.js":  "text/javascript; charset=utf-8",
		"/ui/vendor/uplot/uPlot.min.css": "text/css; charset=utf-8",
		"/ui/style.css":                  "text/css; charset=utf-8",
	} {
		r := b.do(t, "GET", path, "", "")
		require.Equal(t, http.StatusOK, r.Code, path)
		require.Equal(t, ct, r.Header.Get("Content-Type"), "%s: module scripts need a JavaScript MIME type", path)
		require.Equal(t, "no-cache", r.Header.Get("Cache-Control"), path)
		require.Equal(t, "nosniff", r.Header.Get("X-Content-Type-Options"), path)
		tag := r.Header.Get("ETag")
		require.NotEmpty(t, tag, path)
		again := b.do(t, "GET", path, "", "", "If-None-Match", tag)
		require.Equal(t, http.StatusNotModified, again.Code, "%s is revalidated by its hash", path)
	}
	page := b.do(t, "GET", "/", "", "")
	require.Contains(t, string(page.Body), `<script type="module" src="/ui/app.js">`)
}
