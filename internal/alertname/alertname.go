// Package alertname maps flagwarden's finding kinds (snake_case, as the API, the
// runbook anchors and the detectors know them) to the alertnames Alertmanager sees:
// prefixed CamelCase, as monitoring mixins name theirs (KubePodCrashLooping), so that
// they are unambiguous in a shared Alertmanager. flagwarden's own notifier and the
// generated Prometheus rules use the same names, so a page looks the same whichever
// side sent it.
package alertname

// names lists every kind that pages. Written out rather than derived, so that a name
// can be grepped for and acronyms read naturally (OOM).
var names = map[string]string{
	"outlier_team":             "FlagwardenOutlierTeam",
	"team_growth":              "FlagwardenTeamGrowth",
	"backlog_growth":           "FlagwardenBacklogGrowth",
	"backlog_stalled":          "FlagwardenBacklogStalled",
	"workers_crashlooping":     "FlagwardenWorkersCrashLooping",
	"worker_oom_kills":         "FlagwardenWorkerOOMKills",
	"worker_memory_near_limit": "FlagwardenWorkerMemoryNearLimit",
	"workers_false_calm":       "FlagwardenWorkersFalseCalm",
	"cache_stale":              "FlagwardenCacheStale",
	"fleet_cache_stale":        "FlagwardenFleetCacheStale",
	"collector_down":           "FlagwardenCollectorDown",
	"team_quarantined":         "FlagwardenTeamQuarantined",
	"cache_mismatch":           "FlagwardenCacheMismatch",
	// Only the Prometheus rules raise these two: flagwarden cannot page about its own
	// death, nor reliably about its own notifier dropping pages.
	"notifier_dropping_alerts": "FlagwardenNotifierDroppingAlerts",
	"flagwarden_down":          "FlagwardenDown",
}

// For returns the alertname of a finding kind. A kind without a name (one added to the
// detectors but not here) still pages, under its own snake_case name; a test keeps the
// table complete.
func For(kind string) string {
	if n, ok := names[kind]; ok {
		return n
	}
	return kind
}

// Kinds returns every kind with a name.
func Kinds() []string {
	out := make([]string, 0, len(names))
	for k := range names {
		out = append(out, k)
	}
	return out
}
