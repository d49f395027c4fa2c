package web

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flagwarden/flagwarden/detectors"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
	"github.com/flagwarden/flagwarden/rebuild"
)

// maxHistoryPoints bounds the points a chart series carries over the wire.
const maxHistoryPoints = 240

// minWindow is the shortest history a client may ask for: the collectors measure every
// few seconds, so a shorter window holds no point and is a typo (1ns for 1h).
const minWindow = time.Second

// maxWindow is the longest history a client may ask for (the store's longest retention).
const maxWindow = 30 * 24 * time.Hour

func (a *API) whoami(c *gin.Context) {
	id := callerOf(c)
	c.JSON(http.StatusOK, gin.H{
		"authenticated": id.Role != "",
		"name":          id.Name,
		"role":          id.Role,
		"open_reads":    a.auth.openReads,
		"can_read":      id.Role != "" || a.auth.openReads,
		"can_operate":   id.Role == RoleOperate,
	})
}

// queueView is one queue with its history and fitted trend.
type queueView struct {
	snapshot.Queue
	OldestAgeSeconds float64        `json:"oldest_age_seconds"`
	History          []series.Point `json:"history"`
	// Trend is a line fitted on the chart's window, to draw; the ETA the dashboard
	// shows and the alert pages on is DetectorETASeconds.
	Trend *Trend `json:"trend"`
	// DetectorETASeconds is the backlog detector's time to the backlog limit from its
	// last pass (flagwarden_backlog_eta_seconds); null while it sees no rise or has not
	// judged the queue.
	DetectorETASeconds *float64 `json:"detector_eta_seconds"`
	// Growth is the backlog detector's last verdict on the queue with its evidence;
	// null when the detectors are off, have not run yet or did not judge this queue.
	Growth *queueGrowth `json:"growth"`
}

// queueGrowth is the backlog detector's verdict on one queue as it stored it with its
// pass, so that the dashboard shows the judgment that pages instead of making its own.
type queueGrowth struct {
	// Verdict is growing, stalled, insufficient_data or not_growing.
	Verdict  string    `json:"verdict"`
	JudgedAt time.Time `json:"judged_at"`
	detectors.BacklogStatus
}

func growthVerdict(s detectors.BacklogStatus) string {
	switch {
	case s.Growing:
		return "growing"
	case s.Stalled:
		return "stalled"
	case s.Insufficient:
		return "insufficient_data"
	default:
		return "not_growing"
	}
}

// backlogJudgments returns the backlog detector's last per-queue statuses by queue and
// when it judged them; none when the findings store keeps no statuses. A store that
// fails leaves the queues without a verdict rather than the page without queues.
func (a *API) backlogJudgments(ctx context.Context) (map[string]detectors.BacklogStatus, time.Time) {
	st, ok := a.opts.Findings.(detectorStatuses)
	if !ok {
		return nil, time.Time{}
	}
	statuses, err := st.Statuses(ctx)
	if err != nil {
		a.log.Warn("read the backlog detector's status", "err", err)
		return nil, time.Time{}
	}
	for _, s := range statuses {
		if s.Detector != detectors.BacklogDetector {
			continue
		}
		out := make(map[string]detectors.BacklogStatus, len(s.Queues))
		for _, q := range s.Queues {
			out[q.Queue] = q
		}
		return out, s.At
	}
	return nil, time.Time{}
}

func (a *API) queues(c *gin.Context) {
	window, ok := durationParam(c, "window", a.opts.TrendWindow)
	if !ok {
		return
	}
	only := c.Query("queue")
	snap := a.opts.Snapshots.Queues()
	now := a.now()
	judged, judgedAt := a.backlogJudgments(c.Request.Context())
	views := make([]queueView, 0, len(snap.Queues))
	for _, q := range snap.Queues {
		if only != "" && q.Name != only {
			continue
		}
		pts := a.opts.Series.Range(series.Key(series.QueueDepth, q.Name), now.Add(-window), time.Time{})
		v := queueView{
			Queue:            q,
			OldestAgeSeconds: q.OldestAge.Seconds(),
			History:          nonNil(thin(pts, maxHistoryPoints)),
			Trend:            fitTrend(pts, float64(a.opts.BacklogLimit)),
		}
		if s, ok := judged[q.Name]; ok {
			v.Growth = &queueGrowth{Verdict: growthVerdict(s), JudgedAt: judgedAt, BacklogStatus: s}
			if s.ETASeconds >= 0 {
				eta := s.ETASeconds
				v.DetectorETASeconds = &eta
			}
		}
		views = append(views, v)
	}
	if only != "" && len(views) == 0 {
		abort(c, http.StatusNotFound, codeNotFound, fmt.Sprintf("unknown queue %q", only))
		return
	}
	slices.SortFunc(views, func(x, y queueView) int { return cmp.Or(cmp.Compare(y.Depth, x.Depth), cmp.Compare(x.Name, y.Name)) })
	c.JSON(http.StatusOK, gin.H{
		"at":             snap.At,
		"collected":      !snap.At.IsZero(),
		"unacked":        snap.Unacked,
		"overdue":        snap.Overdue,
		"backlog_limit":  a.opts.BacklogLimit,
		"window_seconds": window.Seconds(),
		"judged_at":      nullTime(judgedAt),
		"queues":         views,
	})
}

// teamView is one team's size with the marks the list shows.
type teamView struct {
	snapshot.TeamSize
	PayloadBytes    int64 `json:"payload_bytes"`
	NaiveBuildBytes int64 `json:"naive_build_bytes"`
	Outlier         bool  `json:"outlier"`
	Quarantined     bool  `json:"quarantined"`
}

func (a *API) view(t snapshot.TeamSize, d *decorations) teamView {
	_, outlier := d.outliers[t.TeamID]
	_, quarantined := d.quarantined[t.TeamID]
	return teamView{TeamSize: t, PayloadBytes: t.PayloadBytes(), NaiveBuildBytes: t.EstimatedNaiveBuildBytes(),
		Outlier: outlier, Quarantined: quarantined}
}

func (a *API) listTeams(c *gin.Context) {
	limit, ok := intParam(c, "limit", 50, 1, 500)
	if !ok {
		return
	}
	offset, ok := intParam(c, "offset", 0, 0, math.MaxInt32)
	if !ok {
		return
	}
	sortKey := c.DefaultQuery("sort", "payload_bytes")
	if _, known := teamSortKeys[sortKey]; !known {
		abort(c, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("sort must be one of %s, got %q", sortKeyList(), sortKey))
		return
	}
	order := c.DefaultQuery("order", "desc")
	if order != "asc" && order != "desc" {
		abort(c, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("order must be asc or desc, got %q", order))
		return
	}
	minBytes, ok := intParam(c, "min_bytes", 0, 0, math.MaxInt64)
	if !ok {
		return
	}
	maxBytes, ok := intParam(c, "max_bytes", math.MaxInt64, 0, math.MaxInt64)
	if !ok {
		return
	}
	project, ok := intParam(c, "project_id", 0, 1, math.MaxInt64)
	if !ok {
		return
	}
	var flagFilters [3]*bool // outlier, quarantined, bad
	for i, name := range []string{"outlier", "quarantined", "bad"} {
		if flagFilters[i], ok = boolParam(c, name); !ok {
			return
		}
	}
	snap := a.opts.Snapshots.Teams()
	a.resp.serve(c, cacheKey(c, snap.At), func(ctx context.Context) (any, error) {
		d, err := a.decorations(ctx)
		if err != nil {
			return nil, err
		}
		sorted := a.teams.get(snap).sortedBy(sortKey)

		page := make([]teamView, 0, limit)
		total := int64(0)
		visit := func(t snapshot.TeamSize) {
			b := t.PayloadBytes()
			if b < minBytes || b > maxBytes || (project != 0 && t.ProjectID != project) {
				return
			}
			v := a.view(t, d)
			if (flagFilters[0] != nil && v.Outlier != *flagFilters[0]) ||
				(flagFilters[1] != nil && v.Quarantined != *flagFilters[1]) ||
				(flagFilters[2] != nil && (t.BadRows > 0) != *flagFilters[2]) {
				return
			}
			if total >= offset && int64(len(page)) < limit {
				page = append(page, v)
			}
			total++
		}
		if order == "asc" {
			for _, t := range sorted {
				visit(t)
			}
		} else {
			for i := len(sorted) - 1; i >= 0; i-- {
				visit(sorted[i])
			}
		}
		return gin.H{
			"at": snap.At, "collected": !snap.At.IsZero(), "full": snap.Full,
			"total": total, "offset": offset, "limit": limit, "sort": sortKey, "order": order,
			"teams": page,
		}, nil
	}, a.failWith("read findings and quarantines"))
}

// binFactor is the ratio of a size bin's upper and lower edges.
const binFactor = 4

// bucket is one bin of the size distribution: lower <= payload bytes < upper.
type bucket struct {
	LowerBytes int64 `json:"lower_bytes"`
	UpperBytes int64 `json:"upper_bytes"`
	Count      int   `json:"count"`
}

func (a *API) distribution(c *gin.Context) {
	snap := a.opts.Snapshots.Teams()
	a.resp.serve(c, cacheKey(c, snap.At), func(ctx context.Context) (any, error) {
		d, err := a.decorations(ctx)
		if err != nil {
			return nil, err
		}
		sorted := a.teams.get(snap).sortedBy("payload_bytes")
		// Bins that each span a factor of 4 from 1 KiB: a log scale, where the one team
		// that is 1,000 times bigger than the rest stands apart instead of squashing
		// everyone else into one bar. Edges are exact powers of two, so no value sits on a
		// rounding boundary.
		var bins []bucket
		largest := int64(0)
		if len(sorted) > 0 {
			largest = sorted[len(sorted)-1].PayloadBytes()
		}
		for lower := int64(1024); ; lower *= binFactor {
			bins = append(bins, bucket{LowerBytes: lower, UpperBytes: lower * binFactor})
			if lower*binFactor > largest || lower >= math.MaxInt64/binFactor/binFactor {
				break
			}
		}
		bins[0].LowerBytes = 0
		zero := 0
		for _, t := range sorted {
			b := t.PayloadBytes()
			if b == 0 {
				zero++
				continue
			}
			i := 0
			for i < len(bins)-1 && b >= bins[i].UpperBytes {
				i++
			}
			bins[i].Count++
		}
		outliers := make([]teamView, 0, len(d.outliers))
		for id := range d.outliers {
			if t, ok := a.opts.Snapshots.Team(id); ok {
				t.TeamID = id
				outliers = append(outliers, a.view(t, d))
			}
		}
		slices.SortFunc(outliers, func(x, y teamView) int { return cmp.Compare(y.PayloadBytes, x.PayloadBytes) })
		quantile := func(q float64) int64 {
			if len(sorted) == 0 {
				return 0
			}
			return sorted[min(int(q*float64(len(sorted))), len(sorted)-1)].PayloadBytes()
		}
		return gin.H{
			"at": snap.At, "collected": !snap.At.IsZero(), "teams": len(sorted), "empty_teams": zero,
			"buckets": bins, "p50_bytes": quantile(0.5), "p99_bytes": quantile(0.99), "max_bytes": quantile(1),
			"worker_memory_limit_bytes": a.opts.WorkerMemoryLimit,
			// A load-everything build holds NaiveBuildFactor × both payloads; with two
			// payloads of about the same size, this is the payload at which it no longer fits.
			"naive_build_factor":        snapshot.NaiveBuildFactor,
			"naive_limit_payload_bytes": a.opts.WorkerMemoryLimit / (2 * snapshot.NaiveBuildFactor),
			"outliers":                  outliers,
		}, nil
	}, a.failWith("read findings and quarantines"))
}

// cacheView is one cache of the team with its freshness judged.
type cacheView struct {
	snapshot.CacheState
	LagSeconds float64 `json:"lag_seconds"`
	AgeSeconds float64 `json:"age_seconds"`
	Stale      bool    `json:"stale"`
}

func (a *API) team(c *gin.Context) {
	id, ok := teamID(c)
	if !ok {
		return
	}
	t, found := a.opts.Snapshots.Team(id)
	if !found {
		abort(c, http.StatusNotFound, codeNotFound, fmt.Sprintf("unknown team %d", id))
		return
	}
	t.TeamID = id
	ctx := c.Request.Context()
	window, ok := durationParam(c, "window", 14*24*time.Hour)
	if !ok {
		return
	}
	now := a.now()
	subject := strconv.FormatInt(id, 10)
	history := gin.H{
		"payload_bytes": nonNil(thin(a.opts.Series.Range(series.Key(series.TeamPayloadBytes, subject), now.Add(-window), time.Time{}), maxHistoryPoints)),
		"flags":         nonNil(thin(a.opts.Series.Range(series.Key(series.TeamFlags, subject), now.Add(-window), time.Time{}), maxHistoryPoints)),
	}

	caches := []cacheView{}
	for _, cs := range a.caches.forTeam(a.opts.Snapshots.Caches(), id) {
		v := cacheView{CacheState: cs, LagSeconds: cs.Lag.Seconds(), Stale: cs.Missing || cs.Lag > a.opts.StaleAfter}
		if cs.Missing {
			v.LagSeconds = 0 // infinitely stale (snapshot.MissingLag): the state says missing
		}
		if !cs.BuiltAt.IsZero() {
			v.AgeSeconds = now.Sub(cs.BuiltAt).Seconds()
		}
		caches = append(caches, v)
	}

	findings := []detectors.Finding{}
	if a.opts.Findings != nil {
		active, err := a.opts.Findings.Active(ctx)
		if err != nil {
			a.fail(c, "read findings", err)
			return
		}
		for _, f := range active {
			if tid, ok := findingTeam(f); ok && tid == id {
				findings = append(findings, f)
			}
		}
	}

	out := gin.H{"history": history, "caches": caches, "findings": findings,
		"engine_enabled": a.opts.Engine != nil, "rebuilds": []rebuild.BuildResult{}, "quarantine": nil}
	if a.opts.Engine != nil {
		hist, err := a.opts.Engine.History(ctx, id, 20)
		if err != nil {
			a.fail(c, "read rebuild history", err)
			return
		}
		out["rebuilds"] = nonNil(hist)
		qs, err := a.opts.Engine.Quarantined(ctx)
		if err != nil {
			a.fail(c, "read quarantined teams", err)
			return
		}
		for _, q := range qs {
			if q.TeamID == id {
				out["quarantine"] = q
			}
		}
	}
	d, err := a.decorations(ctx)
	if err != nil {
		a.fail(c, "read findings and quarantines", err)
		return
	}
	v := a.view(t, d)
	v.Quarantined = out["quarantine"] != nil
	out["team"] = v
	c.JSON(http.StatusOK, out)
}

func (a *API) outliers(c *gin.Context) {
	type outlier struct {
		Finding detectors.Finding `json:"finding"`
		Team    *teamView         `json:"team"`
	}
	list := []outlier{}
	if a.opts.Findings == nil {
		c.JSON(http.StatusOK, gin.H{"enabled": false, "outliers": list})
		return
	}
	d, err := a.decorations(c.Request.Context())
	if err != nil {
		a.fail(c, "read findings", err)
		return
	}
	for id, f := range d.outliers {
		o := outlier{Finding: f}
		if t, ok := a.opts.Snapshots.Team(id); ok {
			t.TeamID = id
			v := a.view(t, d)
			o.Team = &v
		}
		list = append(list, o)
	}
	slices.SortFunc(list, func(x, y outlier) int {
		xb, yb := int64(0), int64(0)
		if x.Team != nil {
			xb = x.Team.PayloadBytes
		}
		if y.Team != nil {
			yb = y.Team.PayloadBytes
		}
		return cmp.Or(cmp.Compare(yb, xb), cmp.Compare(x.Finding.ID, y.Finding.ID))
	})
	c.JSON(http.StatusOK, gin.H{"enabled": true, "outliers": list})
}

// detectorStatuses is implemented by the findings stores that also keep each detector's
// last evaluation status.
type detectorStatuses interface {
	Statuses(ctx context.Context) ([]detectors.DetectorStatus, error)
}

func (a *API) findings(c *gin.Context) {
	limit, ok := intParam(c, "limit", 50, 1, 500)
	if !ok {
		return
	}
	kind := c.Query("kind")
	if a.opts.Findings == nil {
		c.JSON(http.StatusOK, gin.H{"enabled": false, "active": []detectors.Finding{}, "recent": []detectors.Finding{}})
		return
	}
	a.resp.serve(c, cacheKey(c, time.Time{}), func(ctx context.Context) (any, error) {
		active, err := a.opts.Findings.Active(ctx)
		if err != nil {
			return nil, err
		}
		recent, err := a.opts.Findings.Recent(ctx, int(limit))
		if err != nil {
			return nil, err
		}
		if kind != "" {
			keep := func(f detectors.Finding) bool { return f.Kind != kind }
			active = slices.DeleteFunc(slices.Clone(active), keep)
			recent = slices.DeleteFunc(slices.Clone(recent), keep)
		}
		out := gin.H{"enabled": true, "active": nonNil(active), "recent": nonNil(recent)}
		// Detectors say "insufficient data" rather than guess; show where they did.
		if st, ok := a.opts.Findings.(detectorStatuses); ok {
			statuses, err := st.Statuses(ctx)
			if err != nil {
				return nil, err
			}
			out["detectors"] = nonNil(statuses)
		}
		return out, nil
	}, a.failWith("read findings"))
}

func (a *API) pods(c *gin.Context) {
	window, ok := durationParam(c, "window", time.Hour)
	if !ok {
		return
	}
	snap := a.opts.Snapshots.Pods()
	now := a.now()
	type nsSummary struct {
		Namespace    string `json:"namespace"`
		Total        int    `json:"total"`
		Ready        int    `json:"ready"`
		CrashLooping int    `json:"crashlooping"`
		OOMKilled    int    `json:"last_terminated_oomkilled"`
		// OOMKills and Restarts are the events counted over the window.
		OOMKills       float64        `json:"oom_kills_in_window"`
		Restarts       float64        `json:"restarts_in_window"`
		MaxMemoryRatio float64        `json:"max_memory_ratio"`
		ReadyHistory   []series.Point `json:"ready_history"`
		OOMHistory     []series.Point `json:"oom_kill_history"`
		// The worker-health chart's other lines: pods crash-looping at each look and
		// container restarts counted between looks.
		CrashLoopHistory []series.Point `json:"crashloop_history"`
		RestartHistory   []series.Point `json:"restart_history"`
		TotalHistory     []series.Point `json:"total_history"`
	}
	byNS := map[string]*nsSummary{}
	get := func(ns string) *nsSummary {
		if s, ok := byNS[ns]; ok {
			return s
		}
		s := &nsSummary{Namespace: ns}
		byNS[ns] = s
		return s
	}
	byNSPods := map[string][]snapshot.Pod{}
	for _, p := range snap.Pods {
		byNSPods[p.Namespace] = append(byNSPods[p.Namespace], p)
	}
	for ns, pods := range byNSPods {
		f := snapshot.SummarizePods(pods)
		s := get(ns)
		s.Total, s.Ready, s.CrashLooping, s.OOMKilled, s.MaxMemoryRatio = f.Total, f.Ready, f.CrashLooping, f.LastTerminatedOOM, f.MemoryRatioMax
	}
	// Namespaces seen only in history (every pod gone) still show.
	for _, k := range a.opts.Series.Keys(series.PodsTotal + "/") {
		get(k[len(series.PodsTotal)+1:])
	}
	from := now.Add(-window)
	sum := func(pts []series.Point) (s float64) {
		for _, p := range pts {
			s += p.V
		}
		return s
	}
	out := make([]nsSummary, 0, len(byNS))
	for ns, s := range byNS {
		oom := a.opts.Series.Range(series.Key(series.OOMKills, ns), from, time.Time{})
		s.OOMKills = sum(oom)
		restarts := a.opts.Series.Range(series.Key(series.Restarts, ns), from, time.Time{})
		s.Restarts = sum(restarts)
		s.RestartHistory = nonNil(thin(restarts, maxHistoryPoints))
		s.CrashLoopHistory = nonNil(thin(a.opts.Series.Range(series.Key(series.PodsCrashLooping, ns), from, time.Time{}), maxHistoryPoints))
		s.TotalHistory = nonNil(thin(a.opts.Series.Range(series.Key(series.PodsTotal, ns), from, time.Time{}), maxHistoryPoints))
		s.OOMHistory = nonNil(thin(oom, maxHistoryPoints))
		s.ReadyHistory = nonNil(thin(a.opts.Series.Range(series.Key(series.PodsReady, ns), from, time.Time{}), maxHistoryPoints))
		out = append(out, *s)
	}
	slices.SortFunc(out, func(x, y nsSummary) int { return cmp.Compare(x.Namespace, y.Namespace) })
	pods := nonNil(slices.Clone(snap.Pods))
	slices.SortFunc(pods, func(x, y snapshot.Pod) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	c.JSON(http.StatusOK, gin.H{
		"at": snap.At, "collected": !snap.At.IsZero(), "source": snap.Source, "window_seconds": window.Seconds(),
		"namespaces": out, "pods": pods,
	})
}

// caches answers the fleet's cache freshness now and over the window: how many caches
// are stale or missing, and the p99 and largest lag the cache collector measured.
func (a *API) cacheFreshness(c *gin.Context) {
	window, ok := durationParam(c, "window", a.opts.TrendWindow)
	if !ok {
		return
	}
	snap := a.opts.Snapshots.Caches()
	stale, missing := 0, 0
	var worst time.Duration
	for _, cs := range snap.Teams {
		switch {
		case cs.Missing:
			missing++
		case cs.Lag > a.opts.StaleAfter:
			stale++
		}
		worst = max(worst, cs.Lag)
	}
	from := a.now().Add(-window)
	hist := func(key string) []series.Point {
		return nonNil(thin(a.opts.Series.Range(series.Key(key, series.Fleet), from, time.Time{}), maxHistoryPoints))
	}
	c.JSON(http.StatusOK, gin.H{
		"at": snap.At, "collected": !snap.At.IsZero(), "caches": len(snap.Teams),
		"stale": stale, "missing": missing, "max_lag_seconds": worst.Seconds(),
		"stale_after_seconds": a.opts.StaleAfter.Seconds(), "window_seconds": window.Seconds(),
		"history": gin.H{
			"lag_p99_seconds": hist(series.CacheLagP99),
			"lag_max_seconds": hist(series.CacheLagMax),
			"stale_teams":     hist(series.CacheStaleTeams),
		},
	})
}

func (a *API) rebuildStatus(c *gin.Context) {
	if a.opts.Engine == nil {
		abort(c, http.StatusServiceUnavailable, codeDisabled, "rebuild engine disabled")
		return
	}
	st, err := a.opts.Engine.Status(c.Request.Context())
	if err != nil {
		a.fail(c, "read rebuild engine status", err)
		return
	}
	st.Lanes = nonNil(st.Lanes)
	st.Quarantined = nonNil(st.Quarantined)
	st.Recent = nonNil(st.Recent)
	c.JSON(http.StatusOK, st)
}

func (a *API) collectors(c *gin.Context) {
	type collectorView struct {
		loop.Health
		// SinceSuccessSeconds is how long ago the last pass succeeded; null if never.
		SinceSuccessSeconds *float64 `json:"since_success_seconds"`
	}
	var hs []loop.Health
	if a.opts.Loops != nil {
		hs = a.opts.Loops()
	}
	now := a.now()
	out := make([]collectorView, 0, len(hs))
	for _, h := range hs {
		v := collectorView{Health: h}
		if !h.LastSuccess.IsZero() {
			s := now.Sub(h.LastSuccess).Seconds()
			v.SinceSuccessSeconds = &s
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(x, y collectorView) int { return cmp.Compare(x.Name, y.Name) })
	c.JSON(http.StatusOK, gin.H{"collectors": out})
}

// teamID parses the :id path parameter with posthog.ParseTeamID, so the API accepts one
// spelling per team. A canonical number too large for the schema's int4 column names no
// team: that is 404 unknown team, like any other id without a team; anything else
// ("+5", "00001", "abc", "0") is a 400 naming the parameter.
func teamID(c *gin.Context) (int64, bool) {
	raw := c.Param("id")
	id, err := posthog.ParseTeamID(raw)
	if err == nil {
		return id, true
	}
	if canonicalDigits(raw) {
		abort(c, http.StatusNotFound, codeNotFound, fmt.Sprintf("unknown team %s (team ids go up to %d)", raw, posthog.MaxTeamID))
		return 0, false
	}
	abort(c, http.StatusBadRequest, codeBadRequest,
		fmt.Sprintf("team id must be a positive integer without sign or leading zeros, got %q", raw))
	return 0, false
}

// canonicalDigits reports whether s is a positive decimal number as a person writes it:
// digits only, no leading zero.
func canonicalDigits(s string) bool {
	if s == "" || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func intParam(c *gin.Context, name string, def, lo, hi int64) (int64, bool) {
	raw, present := c.GetQuery(name)
	if !present {
		return def, true
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < lo || v > hi {
		abort(c, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("%s must be an integer from %d to %d, got %q", name, lo, hi, raw))
		return 0, false
	}
	return v, true
}

func boolParam(c *gin.Context, name string) (*bool, bool) {
	raw, present := c.GetQuery(name)
	if !present {
		return nil, true
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		abort(c, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("%s must be true or false, got %q", name, raw))
		return nil, false
	}
	return &v, true
}

func durationParam(c *gin.Context, name string, def time.Duration) (time.Duration, bool) {
	raw, present := c.GetQuery(name)
	if !present {
		return def, true
	}
	v, err := time.ParseDuration(raw)
	if err != nil || v < minWindow || v > maxWindow {
		abort(c, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("%s must be a duration from %s to %s (e.g. 6h), got %q", name, minWindow, maxWindow, raw))
		return 0, false
	}
	return v, true
}

func sortKeyList() string {
	keys := make([]string, 0, len(teamSortKeys))
	for k := range teamSortKeys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return fmt.Sprint(keys)
}

// nonNil makes an empty list encode as [] rather than null.
// nullTime is t, or nil (JSON null) for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// cacheKey names a cached answer: the path and query as sent, and the time of the
// snapshot it was computed from, so a new snapshot is never answered from an old one.
func cacheKey(c *gin.Context, at time.Time) string {
	return c.Request.URL.RequestURI() + "#" + at.Format(time.RFC3339Nano)
}
