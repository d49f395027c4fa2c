package detectors

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flagwarden/flagwarden/internal/robust"
	"github.com/flagwarden/flagwarden/internal/units"

	"github.com/flagwarden/flagwarden/detectors/defaults"
	"github.com/flagwarden/flagwarden/internal/loop"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// WorkerOptions tunes the worker-health detectors.
type WorkerOptions struct {
	// OOMWindow is the interval OOM kills are counted over (default 15m).
	OOMWindow time.Duration
	// OOMCritical is the number of kills in OOMWindow that makes it critical (default 3).
	OOMCritical int
	// MemoryNearLimit is the usage/limit ratio that is a warning (default 0.9).
	MemoryNearLimit float64
	// CalmLookback is how far back an OOM problem counts for false calm (default 2h).
	CalmLookback time.Duration
	// For is how long crash-looping and memory pressure must hold.
	For time.Duration
	// OOMKeepFiring is how long worker_oom_kills stays firing after the last kill
	// (default 1h): kills every 30 minutes against a 15-minute window are one episode,
	// one page, firing throughout — not a page per kill.
	OOMKeepFiring time.Duration
	// CrashLoopWindow: pods count as crash-looping if any look in this window saw them in
	// CrashLoopBackOff (default 10m, twice Kubernetes' longest back-off of 5 minutes): a
	// crash-looping pod is Running for a moment between back-offs, and that moment is
	// not recovery.
	CrashLoopWindow time.Duration
	// KeepFiring is how long the other worker findings stay firing after their
	// condition last held (default 15m).
	KeepFiring time.Duration
}

func (o WorkerOptions) withDefaults() WorkerOptions {
	o.OOMWindow = cmp.Or(o.OOMWindow, defaults.OOMWindow)
	o.OOMCritical = cmp.Or(o.OOMCritical, 3)
	o.MemoryNearLimit = cmp.Or(o.MemoryNearLimit, defaults.MemoryNearLimit)
	o.CalmLookback = cmp.Or(o.CalmLookback, 2*time.Hour)
	o.OOMKeepFiring = cmp.Or(o.OOMKeepFiring, defaults.OOMKeepFiring)
	o.CrashLoopWindow = cmp.Or(o.CrashLoopWindow, 10*time.Minute)
	o.KeepFiring = cmp.Or(o.KeepFiring, 15*time.Minute)
	return o
}

// WorkerInput is one namespace's worker fleet.
type WorkerInput struct {
	Namespace string
	// Pods is the latest look at the namespace's pods.
	Pods []snapshot.Pod
	// OOMKills is the pod_oom_kills series: new kills per look.
	OOMKills []series.Point
	// CrashLooping is the pods_crashlooping series (pods in CrashLoopBackOff per look),
	// where measured; Restarts the pod_restarts series (restarts per look).
	CrashLooping []series.Point
	Restarts     []series.Point
	// MemoryRatio is the pod_memory_ratio_max series' latest value, if any (a PromQL
	// source); pods with both usage and limit are used as well.
	MemoryRatio    float64
	HasMemoryRatio bool
	// NotDraining names the queues that are stalled or growing right now.
	NotDraining []string
	// Firing reports whether a finding of the given kind is firing for this namespace
	// (for hysteresis); nil means none is.
	Firing func(kind string) bool
}

func sumSince(points []series.Point, from, to time.Time) float64 {
	var s float64
	for _, p := range points {
		if p.T.After(from) && !p.T.After(to) {
			s += p.V
		}
	}
	return s
}

// lastKill is the time of the latest OOM kill at or before now (zero without one).
func lastKill(points []series.Point, now time.Time) time.Time {
	for i := len(points) - 1; i >= 0; i-- {
		if points[i].V > 0 && !points[i].T.After(now) {
			return points[i].T
		}
	}
	return time.Time{}
}

// killGap is the median time between consecutive OOM kills in (from, to]; 0 with
// fewer than three kills.
func killGap(points []series.Point, from, to time.Time) time.Duration {
	var at []time.Time
	for _, p := range points {
		if p.V > 0 && p.T.After(from) && !p.T.After(to) {
			at = append(at, p.T)
		}
	}
	if len(at) < 3 {
		return 0
	}
	gaps := make([]float64, 0, len(at)-1)
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, float64(at[i].Sub(at[i-1])))
	}
	return time.Duration(robust.Median(gaps))
}

// WorkerHealth judges one namespace's pods: crash-looping, OOM kills, memory near the
// limit, and false calm — OOM kills falling off while pods sit in CrashLoopBackOff or a
// queue stops draining, which looks like recovery and is not (a pod in back-off cannot
// be OOM-killed; it is not running at all).
func WorkerHealth(in WorkerInput, now time.Time, opts WorkerOptions) []Observation {
	opts = opts.withDefaults()
	ns := in.Namespace
	labels := func() map[string]string { return map[string]string{"namespace": ns} }
	var out []Observation
	looping := 0
	var loopingNames []string
	ratio, hasRatio := in.MemoryRatio, in.HasMemoryRatio
	for _, p := range in.Pods {
		if p.Waiting == snapshot.ReasonCrashLoop {
			looping++
			if len(loopingNames) < 5 {
				loopingNames = append(loopingNames, p.Name)
			}
		}
		if p.MemoryLimit > 0 && p.MemoryUsage > 0 {
			ratio, hasRatio = max(ratio, float64(p.MemoryUsage)/float64(p.MemoryLimit)), true
		}
	}
	total := len(in.Pods)
	// Any look in the crash-loop window that saw pods in back-off counts.
	for _, p := range in.CrashLooping {
		if p.T.After(now.Add(-opts.CrashLoopWindow)) && !p.T.After(now) {
			looping = max(looping, int(p.V))
		}
	}
	restarts := sumSince(in.Restarts, now.Add(-opts.OOMWindow), now)
	if looping > 0 {
		sev := SeverityWarning
		if looping*2 >= max(total, 1) {
			sev = SeverityCritical
		}
		which := ""
		if len(loopingNames) > 0 {
			which = " (" + strings.Join(loopingNames, ", ") + ")"
		}
		out = append(out, Observation{
			Kind: "workers_crashlooping", Severity: sev, Subject: ns, Labels: labels(),
			Summary: fmt.Sprintf("%d of %d worker pods in %s are in CrashLoopBackOff", looping, total, ns),
			Description: fmt.Sprintf("%d of %d worker pods in namespace %s were waiting in CrashLoopBackOff in the last %s%s: they are not "+
				"running, so they take no tasks and cannot be OOM-killed either (%.0f restarts in the last %s). Look at their last "+
				"termination reason; OOMKilled points at a team whose rebuild exceeds the memory limit.",
				looping, total, ns, opts.CrashLoopWindow, which, restarts, opts.OOMWindow),
			Evidence: map[string]float64{"crashlooping": float64(looping), "pods": float64(total), "restarts": restarts},
			For:      opts.For, KeepFiringFor: opts.KeepFiring, Link: "/",
		})
	}
	firing := func(kind string) bool { return in.Firing != nil && in.Firing(kind) }
	recent := sumSince(in.OOMKills, now.Add(-opts.OOMWindow), now)
	before := sumSince(in.OOMKills, now.Add(-opts.CalmLookback), now.Add(-opts.OOMWindow))
	last := lastKill(in.OOMKills, now)
	// Once firing, the episode is not over while pods crash-loop after a kill within
	// the lookback: they crash because of the kills, and are too rarely running to be
	// killed often.
	oomEpisode := recent > 0 || firing("worker_oom_kills") && looping > 0 && before > 0
	if oomEpisode {
		sev := SeverityWarning
		if recent >= float64(opts.OOMCritical) {
			sev = SeverityCritical
		}
		out = append(out, Observation{
			Kind: "worker_oom_kills", Severity: sev, Subject: ns, Labels: labels(),
			Summary: fmt.Sprintf("%.0f worker OOM kills in %s in the last %s", recent, ns, opts.OOMWindow),
			Description: fmt.Sprintf("Worker pods in namespace %s were OOM-killed %.0f times in the last %s (%.0f in the %s before). "+
				"Each kill loses the task in flight and its retry will likely be killed again: find the team being rebuilt "+
				"(outlier_team findings) and quarantine it. The finding stays firing until %s without a kill.",
				ns, recent, opts.OOMWindow, before, opts.CalmLookback-opts.OOMWindow, opts.OOMKeepFiring),
			Evidence: map[string]float64{"oom_kills": recent, "window_seconds": opts.OOMWindow.Seconds(), "oom_kills_before": before,
				"last_kill_seconds_ago": math.Round(now.Sub(last).Seconds())},
			KeepFiringFor: opts.OOMKeepFiring, Link: "/",
		})
	}
	if hasRatio && ratio >= opts.MemoryNearLimit {
		out = append(out, Observation{
			Kind: "worker_memory_near_limit", Severity: SeverityWarning, Subject: ns, Labels: labels(),
			Summary: fmt.Sprintf("A worker pod in %s uses %.0f%% of its memory limit", ns, ratio*100),
			Description: fmt.Sprintf("The busiest worker pod in namespace %s uses %.0f%% of its memory limit (warning at %.0f%%). "+
				"The next large rebuild will be OOM-killed.", ns, ratio*100, opts.MemoryNearLimit*100),
			Evidence: map[string]float64{"memory_ratio": round3(ratio), "threshold": opts.MemoryNearLimit},
			For:      opts.For, KeepFiringFor: opts.KeepFiring, Link: "/",
		})
	}
	// Rates, so that a short recent window is compared fairly with a long earlier one.
	// The recent window is at least twice the usual gap between kills: a kill every 30
	// minutes has a quiet quarter of an hour between kills, and that is not calm.
	calmWindow := max(opts.OOMWindow, min(2*killGap(in.OOMKills, now.Add(-opts.CalmLookback), now), opts.CalmLookback/2))
	recentCalm := sumSince(in.OOMKills, now.Add(-calmWindow), now)
	beforeCalm := sumSince(in.OOMKills, now.Add(-opts.CalmLookback), now.Add(-calmWindow))
	beforeRate := beforeCalm / (opts.CalmLookback - calmWindow).Hours()
	recentRate := recentCalm / calmWindow.Hours()
	unwell := looping > 0 || len(in.NotDraining) > 0
	calm := beforeCalm > 0 && recentRate < beforeRate/2 && unwell
	if firing("workers_false_calm") {
		// It clears when the workers recover or the kills are out of the lookback.
		calm = unwell && recentCalm+beforeCalm > 0
	}
	if calm {
		why := []string{}
		if looping > 0 {
			why = append(why, fmt.Sprintf("%d pods are in CrashLoopBackOff", looping))
		}
		if len(in.NotDraining) > 0 {
			why = append(why, "queue "+strings.Join(in.NotDraining, ", ")+" is not draining")
		}
		out = append(out, Observation{
			Kind: "workers_false_calm", Severity: SeverityCritical, Subject: ns, Labels: labels(),
			Summary: fmt.Sprintf("OOM kills in %s are falling but the workers have not recovered: %s", ns, strings.Join(why, "; ")),
			Description: fmt.Sprintf("OOM kills in namespace %s fell from %.1f/h to %.1f/h over the last %s, which looks like recovery, but %s. "+
				"Pods in back-off are not running, so they are not being killed either; the backlog is still not being worked. "+
				"Do not stand down: find and quarantine the team whose rebuild kills the workers.",
				ns, beforeRate, recentRate, calmWindow, strings.Join(why, " and ")),
			Evidence: map[string]float64{"oom_kills_recent": recentCalm, "oom_kills_before": beforeCalm, "oom_rate_recent_per_hour": round3(recentRate),
				"oom_rate_before_per_hour": round3(beforeRate), "crashlooping": float64(looping), "queues_not_draining": float64(len(in.NotDraining)),
				"window_seconds": calmWindow.Seconds()},
			For: opts.For, KeepFiringFor: opts.KeepFiring, Link: "/",
		})
	}
	return out
}

// CacheOptions tunes the stale-cache detectors.
type CacheOptions struct {
	// StaleAfter is the lag above which a team's cache is stale.
	StaleAfter time.Duration
	// MaxTeamFindings bounds per-team findings (the most stale first); the fleet
	// finding counts the rest (default 50).
	MaxTeamFindings int
}

// CacheLag is how far a cache is behind its data at now: the recorded lag, or, while
// a change is still waiting, how long it has waited.
func CacheLag(c snapshot.CacheState, now time.Time) time.Duration {
	lag := c.Lag
	if !c.SourceUpdatedAt.IsZero() && c.BuiltAt.Before(c.SourceUpdatedAt) {
		lag = max(lag, now.Sub(c.SourceUpdatedAt))
	}
	return lag
}

// StaleCaches judges cache freshness per team and over the fleet (p99 lag).
func StaleCaches(c snapshot.Caches, now time.Time, opts CacheOptions) []Observation {
	opts.MaxTeamFindings = cmp.Or(opts.MaxTeamFindings, 50)
	if len(c.Teams) == 0 || opts.StaleAfter <= 0 {
		return nil
	}
	type teamLag struct {
		team int64
		kind string
		lag  time.Duration
	}
	worst := map[int64]teamLag{}
	lags := make([]float64, 0, len(c.Teams))
	for _, cs := range c.Teams {
		l := CacheLag(cs, now)
		lags = append(lags, l.Seconds())
		if w, ok := worst[cs.TeamID]; !ok || l > w.lag {
			worst[cs.TeamID] = teamLag{cs.TeamID, cs.Kind, l}
		}
	}
	var stale []teamLag
	for _, w := range worst {
		if w.lag > opts.StaleAfter {
			stale = append(stale, w)
		}
	}
	slices.SortFunc(stale, func(a, b teamLag) int { return cmp.Or(cmp.Compare(b.lag, a.lag), cmp.Compare(a.team, b.team)) })
	var out []Observation
	for i, s := range stale {
		if i >= opts.MaxTeamFindings {
			break
		}
		team := strconv.FormatInt(s.team, 10)
		sev := SeverityWarning
		if s.lag > 4*opts.StaleAfter {
			sev = SeverityCritical
		}
		o := Observation{
			Kind: "cache_stale", Severity: sev, Subject: team, Labels: map[string]string{"team": team},
			Summary: fmt.Sprintf("Team %s's %s cache is %s behind its flag data", team, s.kind, s.lag.Round(time.Second)),
			Description: fmt.Sprintf("Team %s changed its flags %s ago and its %s cache has not been rebuilt since (threshold %s): "+
				"its users still get the old flag values. Check the rebuild queue for this team and whether it is quarantined.",
				team, s.lag.Round(time.Second), s.kind, opts.StaleAfter),
			Evidence: map[string]float64{"lag_seconds": math.Round(s.lag.Seconds()), "stale_after_seconds": opts.StaleAfter.Seconds()},
			For:      0, Link: teamLink(s.team),
		}
		if s.lag == snapshot.MissingLag {
			o.Summary = fmt.Sprintf("Team %s's %s cache is missing", team, s.kind)
			o.Description = fmt.Sprintf("Team %s has flag data but no %s cache: its users get no flags from the cache. "+
				"Check the rebuild queue for this team, whether it is quarantined, and whether the cache Redis lost its keys.", team, s.kind)
			o.Evidence = map[string]float64{"missing": 1, "stale_after_seconds": opts.StaleAfter.Seconds()}
		}
		out = append(out, o)
	}
	slices.Sort(lags)
	p99 := robust.QuantileSorted(lags, 0.99)
	if p99 > opts.StaleAfter.Seconds() {
		sev := SeverityWarning
		if p99 > 4*opts.StaleAfter.Seconds() {
			sev = SeverityCritical
		}
		if p99 >= snapshot.MissingLag.Seconds() {
			// Only missing caches fill the top percentile: say so rather than print
			// an infinite lag.
			missing := 0
			for _, l := range lags {
				if l >= snapshot.MissingLag.Seconds() {
					missing++
				}
			}
			out = append(out, Observation{
				Kind: "fleet_cache_stale", Severity: SeverityCritical, Subject: "fleet", Labels: map[string]string{},
				Summary: "More than 1% of flag caches are missing",
				Description: fmt.Sprintf("%d of %d caches are missing for teams that have flag data; %d teams are stale (threshold %s). "+
					"The cache Redis may have lost its keys, or rebuilds are failing: look at the rebuild and worker findings.",
					missing, len(lags), len(stale), opts.StaleAfter),
				Evidence: map[string]float64{"missing_caches": float64(missing), "caches": float64(len(lags)),
					"stale_teams": float64(len(stale)), "stale_after_seconds": opts.StaleAfter.Seconds()},
				For: 0, Link: "/",
			})
			return out
		}
		out = append(out, Observation{
			Kind: "fleet_cache_stale", Severity: sev, Subject: "fleet", Labels: map[string]string{},
			Summary: fmt.Sprintf("1%% of flag caches are more than %s behind their data", time.Duration(p99*float64(time.Second)).Round(time.Second)),
			Description: fmt.Sprintf("Across %d caches the p99 lag is %s and the worst %s (threshold %s); %d teams are stale. "+
				"Rebuilds are not keeping up with flag changes fleet-wide: look at the backlog and worker findings.",
				len(lags), time.Duration(p99*float64(time.Second)).Round(time.Second),
				time.Duration(lags[len(lags)-1]*float64(time.Second)).Round(time.Second), opts.StaleAfter, len(stale)),
			Evidence: map[string]float64{"p99_lag_seconds": math.Round(p99), "max_lag_seconds": math.Round(lags[len(lags)-1]),
				"caches": float64(len(lags)), "stale_teams": float64(len(stale)), "stale_after_seconds": opts.StaleAfter.Seconds()},
			For: 0, Link: "/",
		})
	}
	return out
}

// CollectorsDown reports every loop without a successful pass for longer than after.
// since is when the loop was first seen, for a loop that never succeeded.
func CollectorsDown(health []loop.Health, since map[string]time.Time, now time.Time, after time.Duration) []Observation {
	var out []Observation
	for _, h := range health {
		ref := h.LastSuccess
		if ref.IsZero() {
			ref = since[h.Name]
		}
		if ref.IsZero() || now.Sub(ref) <= after {
			continue
		}
		silent := now.Sub(ref).Round(time.Second)
		last := "it has never succeeded"
		if !h.LastSuccess.IsZero() {
			last = "its last successful pass was at " + h.LastSuccess.UTC().Format(time.RFC3339)
		}
		errText := h.LastError
		if errText == "" {
			errText = "no error recorded (the loop may be stuck)"
		}
		out = append(out, Observation{
			Kind: "collector_down", Severity: SeverityCritical, Subject: h.Name, Labels: map[string]string{"collector": h.Name},
			Summary: fmt.Sprintf("Collector %s has not reported for %s", h.Name, silent),
			Description: fmt.Sprintf("The %s collector has had no successful pass for %s (threshold %s); %s. Last error: %s. "+
				"Until it recovers the detectors that read it see old data, so silence from them is not all clear.",
				h.Name, silent, after, last, errText),
			Evidence: map[string]float64{"silent_seconds": math.Round(now.Sub(ref).Seconds()), "failures": float64(h.Failures),
				"missed_iterations": float64(h.Missed), "threshold_seconds": after.Seconds()},
			Link: "/",
		})
	}
	return out
}

// Quarantined reports every quarantined team with its reason: a quarantined team's
// caches are not rebuilt normally, so someone must decide about it.
func Quarantined(qs []snapshot.Quarantine, now time.Time) []Observation {
	out := make([]Observation, 0, len(qs))
	for _, q := range qs {
		team := strconv.FormatInt(q.TeamID, 10)
		who := "an operator"
		if q.Auto {
			who = "the rebuild engine"
		}
		auto := 0.0
		if q.Auto {
			auto = 1
		}
		out = append(out, Observation{
			Kind: "team_quarantined", Severity: SeverityWarning, Subject: team, Labels: map[string]string{"team": team},
			Summary: fmt.Sprintf("Team %s is quarantined: %s", team, q.Reason),
			Description: fmt.Sprintf("Team %s was quarantined by %s %s ago because: %s. Its flag caches are not rebuilt with the "+
				"other teams' (they wait or run alone), so its users may see old flags. Release it once the cause is fixed.",
				team, who, now.Sub(q.Since).Round(time.Second), q.Reason),
			Evidence: map[string]float64{"auto": auto, "quarantined_seconds": math.Round(max(0, now.Sub(q.Since).Seconds()))},
			Link:     teamLink(q.TeamID),
		})
	}
	return out
}

// GrowthOptions tunes the slow-burn team growth detector.
type GrowthOptions struct {
	// Window is how far back growth is judged (default 14 days).
	Window time.Duration
	// MinDays of history are needed before judging (default 3).
	MinDays int
	// MinTau is the Mann–Kendall τ over daily sizes that counts as steady (default 0.7).
	MinTau float64
	// MinRelative is the least growth over the history, relative to its start (default 1:
	// the team at least doubled).
	MinRelative float64
	// MinBytes: teams smaller than this now are left alone.
	MinBytes int64
}

func (o GrowthOptions) withDefaults() GrowthOptions {
	o.Window = cmp.Or(o.Window, 14*24*time.Hour)
	o.MinDays = cmp.Or(o.MinDays, defaults.GrowthMinDays)
	o.MinTau = cmp.Or(o.MinTau, 0.7)
	o.MinRelative = cmp.Or(o.MinRelative, 1)
	return o
}

// TeamGrowth judges one team's size history (team_payload_bytes, appended on change)
// at daily resolution. insufficient is true when the history is shorter than MinDays.
func TeamGrowth(teamID int64, points []series.Point, now time.Time, opts GrowthOptions) (o Observation, found, insufficient bool) {
	opts = opts.withDefaults()
	if len(points) == 0 {
		return o, false, true
	}
	last := points[len(points)-1].V
	if last < float64(opts.MinBytes) {
		return o, false, false
	}
	start := points[0].T
	if w := now.Add(-opts.Window); w.After(start) {
		start = w
	}
	days := int(now.Sub(start) / (24 * time.Hour))
	if days < opts.MinDays {
		return o, false, true
	}
	// The size at the end of each day, carried forward from the last change.
	daily := make([]float64, 0, days+1)
	x := make([]float64, 0, days+1)
	j, cur := 0, points[0].V
	for d := 0; d <= days; d++ {
		end := start.Add(time.Duration(d) * 24 * time.Hour)
		for j < len(points) && !points[j].T.After(end) {
			cur = points[j].V
			j++
		}
		daily = append(daily, cur)
		x = append(x, float64(d))
	}
	daily[len(daily)-1] = last
	tau := robust.MannKendallTau(daily)
	slope, _ := robust.TheilSen(x, daily)
	first := daily[0]
	rel := math.Inf(1)
	if first > 0 {
		rel = (last - first) / first
	}
	if tau < opts.MinTau || slope <= 0 || rel < opts.MinRelative {
		return o, false, false
	}
	team := strconv.FormatInt(teamID, 10)
	return Observation{
		Kind: "team_growth", Severity: SeverityWarning, Subject: team, Labels: map[string]string{"team": team},
		Summary: fmt.Sprintf("Team %s's flag data has grown steadily for %d days, from %s to %s", team, days, units.Bytes(int64(first)), units.Bytes(int64(last))),
		Description: fmt.Sprintf("Team %s's estimated flag payload rose from %s to %s over %d days (%+.0f%%), by about %s a day, "+
			"and rose on almost every day (Mann–Kendall τ %.2f over daily sizes). Steady growth like this is usually test data "+
			"piling up; left alone it ends as an oversized team whose rebuilds exhaust worker memory.",
			team, units.Bytes(int64(first)), units.Bytes(int64(last)), days, rel*100, units.Bytes(int64(slope)), tau),
		Evidence: map[string]float64{"first_bytes": first, "value_bytes": last, "days": float64(days), "tau": round3(tau),
			"slope_bytes_per_day": math.Round(slope), "growth_ratio": round3(rel)},
		Link: teamLink(teamID),
	}, true, false
}
