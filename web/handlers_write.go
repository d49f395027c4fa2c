package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// maxReasonLen bounds the reason recorded with a write.
const maxReasonLen = 500

// writeBody is the body of the write endpoints.
type writeBody struct {
	Reason string `json:"reason"`
}

// readWrite parses the team id and body of a write, answering 400 (or 413, or 503 for a
// disabled engine) itself when they are not usable.
func (a *API) readWrite(c *gin.Context, reasonRequired bool) (int64, string, bool) {
	id, ok := teamID(c)
	if !ok {
		return 0, "", false
	}
	if a.opts.Engine == nil {
		abort(c, http.StatusServiceUnavailable, codeDisabled, "rebuild engine disabled")
		return 0, "", false
	}
	body, ok := a.readBody(c)
	if !ok {
		return 0, "", false
	}
	body.Reason = strings.TrimSpace(body.Reason)
	switch {
	case reasonRequired && body.Reason == "":
		abort(c, http.StatusBadRequest, codeBadRequest, "reason is required")
		return 0, "", false
	case utf8.RuneCountInString(body.Reason) > maxReasonLen:
		abort(c, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("reason must be at most %d characters", maxReasonLen))
		return 0, "", false
	}
	return id, body.Reason, true
}

// readBody reads a write's body whole (it is bounded by MaxBodyBytes, so a body that is
// one small object followed by megabytes of whitespace is refused too, not only a large
// object), checks its Content-Type, and decodes it. An empty body is no reason at all and
// needs no Content-Type.
func (a *API) readBody(c *gin.Context) (writeBody, bool) {
	var body writeBody
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		a.fail(c, "read body", err)
		return body, false
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return body, true
	}
	if !isJSON(c.GetHeader("Content-Type")) {
		abort(c, http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
			fmt.Sprintf("the body must be sent as Content-Type: application/json, got %q", c.GetHeader("Content-Type")))
		return body, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		abort(c, http.StatusBadRequest, codeBadRequest, "body must be a JSON object like {\"reason\": \"...\"}: "+err.Error())
		return body, false
	}
	if dec.More() {
		abort(c, http.StatusBadRequest, codeBadRequest, "body must hold one JSON object")
		return body, false
	}
	return body, true
}

// isJSON reports whether a Content-Type names JSON in UTF-8, the only encoding JSON has.
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

func (a *API) requestRebuild(c *gin.Context) {
	id, reason, ok := a.readWrite(c, false)
	if !ok {
		return
	}
	who := callerOf(c).Name
	if reason == "" {
		reason = "requested through the API by " + who
	}
	res, err := a.opts.Engine.Request(c.Request.Context(), id, reason)
	if err != nil {
		a.fail(c, "request rebuild", err)
		return
	}
	a.log.Info("rebuild requested", "team", id, "by", who, "reason", reason, "job", res.JobID, "joined", res.Joined)
	msg := fmt.Sprintf("rebuild of team %d queued as job %d", id, res.JobID)
	if res.Joined {
		msg = fmt.Sprintf("a rebuild of team %d was already waiting (job %d); this request joined it", id, res.JobID)
	}
	c.JSON(http.StatusAccepted, gin.H{"team_id": id, "job_id": res.JobID, "joined": res.Joined, "lane": res.Lane, "message": msg})
}

func (a *API) quarantine(c *gin.Context) {
	id, reason, ok := a.readWrite(c, true)
	if !ok {
		return
	}
	if err := a.opts.Engine.Quarantine(c.Request.Context(), id, reason); err != nil {
		a.fail(c, "quarantine team", err)
		return
	}
	a.decor.invalidate()
	a.resp.clear()
	a.log.Info("team quarantined", "team", id, "by", callerOf(c).Name, "reason", reason)
	c.JSON(http.StatusOK, gin.H{"team_id": id, "quarantined": true, "reason": reason})
}

func (a *API) release(c *gin.Context) {
	id, reason, ok := a.readWrite(c, true)
	if !ok {
		return
	}
	if err := a.opts.Engine.Release(c.Request.Context(), id, reason); err != nil {
		a.fail(c, "release team", err)
		return
	}
	a.decor.invalidate()
	a.resp.clear()
	a.log.Info("team released", "team", id, "by", callerOf(c).Name, "reason", reason)
	c.JSON(http.StatusOK, gin.H{"team_id": id, "quarantined": false, "reason": reason})
}
