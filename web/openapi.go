package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
)

// The OpenAPI 3 document is built here in Go, next to the routes, and a test fails when
// a registered /api/v1 route is missing from it (or it names one that does not exist).

type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func arrayOf(s obj) obj { return obj{"type": "array", "items": s} }

func jsonContent(s obj) obj { return obj{"application/json": obj{"schema": s}} }

func resp(desc string, s obj) obj {
	r := obj{"description": desc}
	if s != nil {
		r["content"] = jsonContent(s)
	}
	return r
}

func errResp(desc string) obj { return resp(desc, ref("Error")) }

func param(name, in, typ, desc string, required bool) obj {
	return obj{"name": name, "in": in, "required": required, "description": desc, "schema": obj{"type": typ}}
}

var idParam = obj{"name": "id", "in": "path", "required": true,
	"description": "Team id: a positive decimal integer without sign or leading zeros (\"+5\" and \"00001\" are 400). A number above 2147483647 (the schema's int4) names no team: 404.",
	"schema":      obj{"type": "integer", "format": "int64", "minimum": 1}}

// backlogStatusProperties describe detectors.BacklogStatus: the backlog detector's
// evidence on one queue, in the findings' detector statuses and each queue's growth.
func backlogStatusProperties() obj {
	str, num, boolean := obj{"type": "string"}, obj{"type": "number"}, obj{"type": "boolean"}
	return obj{"queue": str, "depth": num, "tau": num, "slope_per_hour": num,
		"eta_seconds": obj{"type": "number", "description": "Time to backlog_limit at the detector's slope; -1 when not rising."},
		"growing":     boolean, "stalled": boolean, "insufficient_data": boolean, "note": str,
		"comparison": obj{"type": "string", "description": "What growth was judged against: comparable days, yesterday or none."}}
}

func op(summary string, params []obj, ok obj, okCode string, errs ...string) obj {
	responses := obj{okCode: ok}
	descs := map[string]string{
		"304": "Not modified: the If-None-Match ETag is current.",
		"400": "Bad team id, query parameter or body.",
		"401": "No token where one is required, or an unknown or malformed token.",
		"403": "The token's role may not do this.",
		"404": "Unknown team, queue or payload.",
		"413": "Request body too large (http.max_body_bytes), whitespace included.",
		"415": "A body sent with a Content-Type other than application/json.",
		"503": "Concurrency limit reached (http.max_concurrent), handler timeout, or the component is disabled.",
	}
	for _, e := range append([]string{"401", "503"}, errs...) {
		if e == "304" {
			responses[e] = obj{"description": descs[e]}
			continue
		}
		responses[e] = errResp(descs[e])
	}
	o := obj{"summary": summary, "responses": responses}
	if len(params) > 0 {
		o["parameters"] = params
	}
	return o
}

func buildOpenAPI() obj {
	window := param("window", "query", "string", "History window as a Go duration from 1s to 720h, e.g. 6h.", false)
	reasonBody := obj{"required": false, "content": jsonContent(ref("WriteBody"))}
	reasonRequired := obj{"required": true, "content": jsonContent(ref("WriteBody"))}
	payloadOp := func(what string) obj {
		o := op("Stream the team's published "+what+" payload from the cache Redis.",
			[]obj{idParam, param("If-None-Match", "header", "string", "ETag of a copy the client holds.", false)},
			obj{"description": "The payload JSON, streamed; ETag header set.",
				"headers": obj{"ETag": obj{"schema": obj{"type": "string"}}},
				"content": jsonContent(obj{"type": "object"})}, "200", "304", "400", "404")
		return o
	}
	paths := obj{
		"/api/v1/openapi.json": obj{"get": public(op("This document.", nil, resp("OpenAPI 3 document.", obj{"type": "object"}), "200"))},
		"/api/v1/whoami": obj{"get": public(op("Who the caller is and what it may do (a token is optional; a bad one is refused).", nil,
			resp("Identity.", ref("Whoami")), "200"))},
		"/api/v1/queues": obj{"get": op("Celery queues: depth by priority, unacked, overdue, composition, history, trend and ETA.",
			[]obj{window, param("queue", "query", "string", "Only this queue.", false)},
			resp("Queues.", ref("Queues")), "200", "400", "404")},
		"/api/v1/teams": obj{"get": op("Teams by size, paged, sortable and filterable.", []obj{
			param("limit", "query", "integer", "Page size, 1–500 (default 50).", false),
			param("offset", "query", "integer", "Teams to skip.", false),
			param("sort", "query", "string", "payload_bytes (default), flags, active_flags, cohorts, cohort_bytes, filters_bytes, bad_rows, updated_at, team_id.", false),
			param("order", "query", "string", "desc (default) or asc.", false),
			param("min_bytes", "query", "integer", "Only teams whose payload is at least this.", false),
			param("max_bytes", "query", "integer", "Only teams whose payload is at most this.", false),
			param("project_id", "query", "integer", "Only this project's teams.", false),
			param("outlier", "query", "boolean", "Only outliers (true) or non-outliers (false).", false),
			param("quarantined", "query", "boolean", "Only quarantined (true) or not (false).", false),
			param("bad", "query", "boolean", "Only teams with unreadable rows (true) or without (false).", false),
		}, resp("A page of teams.", ref("TeamPage")), "200", "400")},
		"/api/v1/teams/distribution": obj{"get": op("Team payload sizes in bins that each span a factor of 4 from 1 KiB (log scale), with outliers.", nil,
			resp("Distribution.", ref("Distribution")), "200")},
		"/api/v1/teams/{id}": obj{"get": op("One team: size, size history, cache state, findings, rebuild history, quarantine.",
			[]obj{idParam, window}, resp("The team.", ref("TeamDetail")), "200", "400", "404")},
		"/api/v1/teams/{id}/flags":             obj{"get": payloadOp("/flags evaluation")},
		"/api/v1/teams/{id}/flags/definitions": obj{"get": payloadOp("local-evaluation definitions")},
		"/api/v1/outliers": obj{"get": op("Active outlier_team findings with each team's size.", nil,
			resp("Outliers.", obj{"type": "object", "properties": obj{"enabled": obj{"type": "boolean"},
				"outliers": arrayOf(obj{"type": "object", "properties": obj{"finding": ref("Finding"), "team": ref("Team")}})}}), "200")},
		"/api/v1/findings": obj{"get": op("Active and recent findings with evidence.", []obj{
			param("limit", "query", "integer", "Recent findings to return, 1–500 (default 50).", false),
			param("kind", "query", "string", "Only findings of this kind.", false),
		}, resp("Findings.", obj{"type": "object", "properties": obj{"enabled": obj{"type": "boolean"},
			"active": arrayOf(ref("Finding")), "recent": arrayOf(ref("Finding")),
			"detectors": arrayOf(obj{"type": "object", "description": "Each detector's last pass: how many subjects it evaluated and for how many history was too short to judge (insufficient_data).",
				"properties": obj{"detector": obj{"type": "string"}, "at": obj{"type": "string", "format": "date-time"},
					"evaluated": obj{"type": "integer"}, "insufficient_data": obj{"type": "integer"}, "note": obj{"type": "string"},
					"queues": obj{"type": "array", "description": "The backlog detector's view of each queue (at most 200).",
						"items": obj{"type": "object", "properties": backlogStatusProperties()}}}})}}), "200", "400")},
		"/api/v1/pods": obj{"get": op("Worker pods and a summary per namespace.", []obj{window},
			resp("Pods.", ref("Pods")), "200", "400")},
		"/api/v1/caches": obj{"get": op("Fleet cache freshness: stale and missing caches now, and lag and stale teams over the window.", []obj{window},
			resp("Cache freshness.", ref("CacheFreshness")), "200", "400")},
		"/api/v1/rebuilds": obj{"get": op("Rebuild engine: lanes (running, waiting), memory budget, quarantined teams, recent results.", nil,
			resp("Engine status.", ref("EngineStatus")), "200")},
		"/api/v1/collectors": obj{"get": op("Health of every collector and detector loop.", nil,
			resp("Loops.", obj{"type": "object", "properties": obj{"collectors": arrayOf(ref("LoopHealth"))}}), "200")},
		"/api/v1/teams/{id}/rebuild": obj{"post": withBody(op("Request a rebuild of the team's caches (operate role).",
			[]obj{idParam}, resp("Accepted: the job created, or the waiting one joined.", ref("RebuildAccepted")), "202",
			"400", "403", "404", "413", "415"), reasonBody)},
		"/api/v1/teams/{id}/quarantine": obj{"post": withBody(op("Quarantine the team: its builds stop delaying others (operate role).",
			[]obj{idParam}, resp("Quarantined.", ref("WriteResult")), "200", "400", "403", "404", "413", "415"), reasonRequired)},
		"/api/v1/teams/{id}/release": obj{"post": withBody(op("Release the team from quarantine (operate role).",
			[]obj{idParam}, resp("Released.", ref("WriteResult")), "200", "400", "403", "404", "413", "415"), reasonRequired)},
	}
	for path, item := range paths {
		for method, o := range item.(obj) {
			o.(obj)["operationId"] = operationIDs[strings.ToUpper(method)+" "+path]
		}
	}
	str, integer, num, boolean, ts := obj{"type": "string"}, obj{"type": "integer", "format": "int64"},
		obj{"type": "number"}, obj{"type": "boolean"}, obj{"type": "string", "format": "date-time"}
	point := obj{"type": "object", "properties": obj{"t": ts, "v": num}}
	quarantine := obj{"type": "object", "properties": obj{"team_id": integer, "reason": str, "auto": boolean, "since": ts}}
	schemas := obj{
		"Error": obj{"type": "object", "required": []string{"error"}, "properties": obj{"error": obj{
			"type": "object", "required": []string{"code", "message"}, "properties": obj{
				"code": obj{"type": "string", "enum": []string{codeBadRequest, codeBodyTooLarge, codeUnsupportedMediaType, codeUnauthorized, codeForbidden,
					codeNotFound, codeOverloaded, codeTimeout, codeDisabled, codeInternal}},
				"message": str}}}},
		"Whoami": obj{"type": "object", "properties": obj{"authenticated": boolean, "name": str, "role": str,
			"open_reads": boolean, "can_read": boolean, "can_operate": boolean}},
		"Point": point,
		"Trend": obj{"type": "object", "nullable": true,
			"description": "A line fitted on the window's history, for drawing; the ETA the backlog alert pages on is the queue's detector_eta_seconds.",
			"properties": obj{"points": integer, "slope_per_hour": num,
				"intercept": num, "anchor": ts, "tau": num,
				"eta_to_limit_seconds": obj{"type": "number", "nullable": true}, "eta_to_empty_seconds": obj{"type": "number", "nullable": true}}},
		"Queue": obj{"type": "object", "properties": obj{"name": str, "depth": integer,
			"by_priority": obj{"type": "object", "additionalProperties": integer}, "unacked": integer, "overdue": integer,
			"oldest_age_seconds": num, "bound": boolean, "composition": obj{"type": "object"},
			"oldest_age": obj{"type": "integer", "format": "int64", "deprecated": true,
				"description": "The same age in nanoseconds; use oldest_age_seconds."},
			"history": arrayOf(ref("Point")),
			"trend":   ref("Trend"),
			"detector_eta_seconds": obj{"type": "number", "nullable": true,
				"description": "The backlog detector's time to backlog_limit from its last pass (flagwarden_backlog_eta_seconds); null while it sees no rise or has not judged the queue."},
			"growth": ref("QueueGrowth")}},
		"QueueGrowth": obj{"type": "object", "nullable": true,
			"description": "The backlog detector's last verdict on the queue and its evidence; null when the detectors are off, have not run yet or did not judge the queue.",
			"properties": func() obj {
				p := backlogStatusProperties()
				p["verdict"] = obj{"type": "string", "enum": []string{"growing", "stalled", "insufficient_data", "not_growing"},
					"description": "growing and stalled are what backlog_growth and backlog_stalled judge; growing wins when both hold."}
				p["judged_at"] = ts
				return p
			}()},
		"Queues": obj{"type": "object", "properties": obj{"at": ts, "collected": boolean, "unacked": integer,
			"overdue": integer, "backlog_limit": integer, "window_seconds": num,
			"judged_at": obj{"type": "string", "format": "date-time", "nullable": true,
				"description": "When the backlog detector last judged the queues; null when it has not."},
			"queues": arrayOf(ref("Queue"))}},
		"Team": obj{"type": "object", "properties": obj{"team_id": integer, "project_id": integer, "flags": integer,
			"active_flags": integer, "deleted_flags": integer, "cohorts": integer, "cohort_bytes": integer,
			"filters_bytes": integer, "largest_filter_bytes": integer, "group_types": integer,
			"flags_payload_bytes": integer, "definitions_payload_bytes": integer, "payload_bytes": integer,
			"naive_build_bytes": integer, "updated_at": ts, "bad_rows": integer, "bad_reasons": arrayOf(str),
			"measured_at": ts, "outlier": boolean, "quarantined": boolean}},
		"TeamPage": obj{"type": "object", "properties": obj{"at": ts, "collected": boolean, "full": boolean,
			"total": integer, "offset": integer, "limit": integer, "sort": str, "order": str, "teams": arrayOf(ref("Team"))}},
		"Distribution": obj{"type": "object", "properties": obj{"at": ts, "collected": boolean, "teams": integer, "empty_teams": integer,
			"buckets":   arrayOf(obj{"type": "object", "properties": obj{"lower_bytes": integer, "upper_bytes": integer, "count": integer}}),
			"p50_bytes": integer, "p99_bytes": integer, "max_bytes": integer, "worker_memory_limit_bytes": integer,
			"naive_build_factor": integer, "naive_limit_payload_bytes": integer,
			"outliers": arrayOf(ref("Team"))}},
		"TeamDetail": obj{"type": "object", "properties": obj{"team": ref("Team"),
			"history": obj{"type": "object", "properties": obj{"payload_bytes": arrayOf(ref("Point")), "flags": arrayOf(ref("Point"))}},
			"caches": arrayOf(obj{"type": "object", "properties": obj{"team_id": integer, "kind": str, "source": str, "bytes": integer,
				"built_at": ts, "etag": str, "source_updated_at": ts, "lag_seconds": num, "age_seconds": num, "stale": boolean, "missing": boolean,
				"lag": obj{"type": "integer", "format": "int64", "deprecated": true,
					"description": "The same lag in nanoseconds; use lag_seconds."}}}),
			"findings": arrayOf(ref("Finding")), "engine_enabled": boolean, "rebuilds": arrayOf(ref("BuildResult")),
			"quarantine": nullable(quarantine, "The team's quarantine, or null when it is not quarantined.")}},
		"Finding": obj{"type": "object", "properties": obj{"id": str, "kind": str, "severity": str, "subject": str,
			"labels": obj{"type": "object", "additionalProperties": str}, "summary": str, "description": str,
			"evidence": obj{"type": "object", "additionalProperties": num}, "state": str, "active_at": ts,
			"fired_at": ts, "resolved_at": ts, "runbook_url": str, "generator_url": str}},
		"Quarantine": quarantine,
		"BuildResult": obj{"type": "object", "properties": obj{"team_id": integer, "job_id": integer, "lane": str, "started_at": ts, "finished_at": ts, "ok": boolean, "error": str, "unchanged": boolean, "flags": integer, "cohorts": integer, "skipped_flags": integer, "flags_bytes": integer, "definitions_bytes": integer, "flags_stored_bytes": integer, "definitions_stored_bytes": integer,
			"peak_heap_bytes":         obj{"type": "integer", "format": "int64", "description": "The whole process's peak Go heap during the build (other builds and the server included), not the build's own figure: live objects and garbage not yet collected."},
			"peak_live_heap_bytes":    obj{"type": "integer", "format": "int64", "description": "The whole process's peak live heap during the build: what the garbage collector found reachable, without the garbage peak_heap_bytes includes."},
			"first_pass_seconds":      obj{"type": "number", "description": "How long the build's first pass took: the flag database extracting each flag's references, before the streaming pass."},
			"prediction_reused":       obj{"type": "boolean", "description": "The build predicted from the team's previous build (prediction_source says whose), so its first pass extracted the references of the flags changed since only."},
			"prediction_source":       obj{"type": "string", "enum": []string{"references", "previous_build", "shared"}, "description": "Where the first attempt's prediction came from: references (the full first pass), previous_build (this replica's last build of the team), shared (any replica's, from the shared store in Redis)."},
			"shared_prediction_load":  obj{"type": "string", "enum": []string{"loaded", "absent", "invalid", "error"}, "description": "What the build found in the shared prediction store, when it had no prediction of its own; absent from the result otherwise."},
			"shared_prediction_save":  obj{"type": "string", "enum": []string{"saved", "kept", "too_large", "error"}, "description": "What the build did with the shared store after it succeeded: stored its index, only extended the stored one's life (kept), or could not."},
			"shared_prediction_error": obj{"type": "string", "description": "Why a shared store operation failed or its entry was refused; the build went on without it."},
			"attempts":                obj{"type": "integer", "description": "Streaming passes the build took: 2 or more when its prediction was wrong (the payloads are the same either way)."},
			"memory_bound_bytes":      obj{"type": "integer", "format": "int64", "description": "What the build reserved of the memory budget before it started: its own bound. 0 for builds run outside the engine."},
			"skipped":                 arrayOf(obj{"type": "object", "properties": obj{"id": integer, "key": str, "reason": str, "detail": str}}),
			"skipped_by_reason":       obj{"type": "object", "additionalProperties": integer}}},
		"EngineStatus": obj{"type": "object", "properties": obj{
			"lanes": arrayOf(obj{"type": "object", "properties": obj{"lane": str,
				"running":      obj{"type": "integer", "description": "Jobs of the lane in the job table's running state, every replica together; includes builds whose end is not yet recorded and jobs of a dead process until rescued, so it can exceed workers."},
				"running_here": obj{"type": "integer", "description": "Builds this replica runs now, out of workers."},
				"waiting":      integer, "workers": obj{"type": "integer", "description": "Build workers of the lane in this replica."}}}),
			"budget_bytes": integer, "budget_in_use_bytes": integer,
			"quarantined": arrayOf(ref("Quarantine")), "recent": arrayOf(ref("BuildResult"))}},
		"LoopHealth": obj{"type": "object", "properties": obj{"name": str, "up": boolean, "passes": integer, "failures": integer,
			"missed_iterations": integer, "last_success": ts, "last_attempt": ts, "last_error": str,
			"last_pass_seconds": num, "since_success_seconds": obj{"type": "number", "nullable": true}}},
		"Pods": obj{"type": "object", "properties": obj{"at": ts, "collected": boolean,
			"source": obj{"type": "string", "description": "kubernetes or simulated."}, "window_seconds": num,
			"namespaces": arrayOf(ref("PodNamespace")), "pods": arrayOf(ref("Pod"))}},
		"PodNamespace": obj{"type": "object", "description": "One worker namespace; the counts are of the latest look, the *_in_window sums over window.",
			"properties": obj{"namespace": str, "total": integer, "ready": integer, "crashlooping": integer,
				"last_terminated_oomkilled": integer, "oom_kills_in_window": num, "restarts_in_window": num,
				"max_memory_ratio": obj{"type": "number", "description": "Highest working set / limit among the pods with both known; 0 when none is."},
				"ready_history":    arrayOf(ref("Point")), "oom_kill_history": arrayOf(ref("Point")),
				"crashloop_history": arrayOf(ref("Point")), "restart_history": arrayOf(ref("Point")), "total_history": arrayOf(ref("Point"))}},
		"CacheFreshness": obj{"type": "object", "properties": obj{"at": ts, "collected": boolean, "caches": integer,
			"stale":           obj{"type": "integer", "description": "Caches behind their data by more than stale_after_seconds."},
			"missing":         obj{"type": "integer", "description": "Teams with flag data and no cache."},
			"max_lag_seconds": num, "stale_after_seconds": num, "window_seconds": num,
			"history": obj{"type": "object", "properties": obj{"lag_p99_seconds": arrayOf(ref("Point")),
				"lag_max_seconds": arrayOf(ref("Point")), "stale_teams": arrayOf(ref("Point"))}}}},
		"Pod": obj{"type": "object", "properties": obj{"namespace": str, "name": str, "phase": str, "ready": boolean,
			"restarts": integer, "restart_delta": integer,
			"waiting":          obj{"type": "string", "description": "The waiting reason, e.g. CrashLoopBackOff; absent when running."},
			"last_termination": obj{"type": "string", "description": "The last termination reason, e.g. OOMKilled."},
			"last_exit_code":   integer, "last_terminated_at": ts, "new_oom_kill": boolean,
			"memory_limit_bytes": integer,
			"memory_usage_bytes": obj{"type": "integer", "format": "int64", "description": "Working set where a PromQL source reports it; 0 when unknown."}}},
		"WriteBody":       obj{"type": "object", "additionalProperties": false, "properties": obj{"reason": obj{"type": "string", "maxLength": maxReasonLen}}},
		"WriteResult":     obj{"type": "object", "properties": obj{"team_id": integer, "quarantined": boolean, "reason": str}},
		"RebuildAccepted": obj{"type": "object", "properties": obj{"team_id": integer, "job_id": integer, "joined": boolean, "lane": str, "message": str}},
	}
	return obj{
		"openapi": "3.0.3",
		// Relative: the API is served by whichever flagwarden replica answers the
		// document, at its own address (http.external_url for people).
		"servers": []obj{{"url": "/", "description": "The flagwarden replica serving this document."}},
		"info": obj{"title": "flagwarden API", "version": "1",
			"description": "Findings, queues, team sizes, caches and the rebuild engine. Errors are {\"error\":{\"code\",\"message\"}}, also for unknown paths. Every GET is also answered for HEAD, with the same status and headers and no body."},
		"paths":      paths,
		"security":   []obj{{"bearer": []string{}}},
		"components": obj{"schemas": schemas, "securitySchemes": obj{"bearer": obj{"type": "http", "scheme": "bearer"}}},
	}
}

func withBody(o, body obj) obj { o["requestBody"] = body; return o }

// nullable is schema s that may also be null. OpenAPI 3.0 allows nullable only beside
// a type, not beside a $ref or allOf, so the schema is repeated rather than referenced.
func nullable(s obj, desc string) obj {
	out := obj{"nullable": true, "description": desc}
	for k, v := range s {
		out[k] = v
	}
	return out
}

// operationIDs name every operation, for client generators and linters; a test fails
// for an operation without one.
var operationIDs = map[string]string{
	"GET /api/v1/openapi.json":                 "getOpenAPI",
	"GET /api/v1/whoami":                       "whoami",
	"GET /api/v1/queues":                       "listQueues",
	"GET /api/v1/teams":                        "listTeams",
	"GET /api/v1/teams/distribution":           "getTeamDistribution",
	"GET /api/v1/teams/{id}":                   "getTeam",
	"GET /api/v1/teams/{id}/flags":             "getTeamFlagsPayload",
	"GET /api/v1/teams/{id}/flags/definitions": "getTeamDefinitionsPayload",
	"GET /api/v1/outliers":                     "listOutliers",
	"GET /api/v1/findings":                     "listFindings",
	"GET /api/v1/pods":                         "listPods",
	"GET /api/v1/caches":                       "getCacheFreshness",
	"GET /api/v1/rebuilds":                     "getRebuildEngine",
	"GET /api/v1/collectors":                   "listCollectors",
	"POST /api/v1/teams/{id}/rebuild":          "requestRebuild",
	"POST /api/v1/teams/{id}/quarantine":       "quarantineTeam",
	"POST /api/v1/teams/{id}/release":          "releaseTeam",
}

// public marks an operation that needs no token.
func public(o obj) obj { o["security"] = []obj{{}}; return o }

var openAPIDoc = sync.OnceValue(func() []byte {
	b, err := json.MarshalIndent(buildOpenAPI(), "", "  ")
	if err != nil {
		panic("web: encode OpenAPI document: " + err.Error()) // a bug in buildOpenAPI
	}
	return b
})

func (a *API) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", openAPIDoc())
}
