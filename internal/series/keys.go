package series

// Series kinds. A key is Key(kind, subject); the subject is a queue name, a team id in
// decimal, a namespace, or "fleet" for fleet-wide values. The collectors write these and
// the detectors and the API read them, so the names live here, once.
const (
	// QueueDepth is a queue's total depth over every priority list (subject: queue).
	QueueDepth = "queue_depth"
	// QueueUnacked and QueueOverdue are a queue's unacked and overdue messages.
	QueueUnacked = "queue_unacked"
	QueueOverdue = "queue_overdue"
	// QueueOldestAge is the age in seconds of the oldest waiting message.
	QueueOldestAge = "queue_oldest_age_seconds"
	// BrokerUnacked and BrokerOverdue are broker-wide (subject: "fleet").
	BrokerUnacked = "broker_unacked"
	BrokerOverdue = "broker_overdue"

	// TeamPayloadBytes is a team's estimated payload size (subject: team id). Appended
	// only when the value changes, so 250k mostly-idle teams stay cheap.
	TeamPayloadBytes = "team_payload_bytes"
	// TeamFlags is a team's active flag count, appended on change.
	TeamFlags = "team_flags"

	// PodsReady, PodsCrashLooping, PodsTotal are counts per look (subject: namespace).
	PodsReady        = "pods_ready"
	PodsCrashLooping = "pods_crashlooping"
	PodsTotal        = "pods_total"
	// OOMKills and Restarts are new events seen since the previous look.
	OOMKills = "pod_oom_kills"
	Restarts = "pod_restarts"
	// MemoryRatioMax is the highest memory usage / limit among the pods, where known.
	MemoryRatioMax = "pod_memory_ratio_max"

	// CacheLagP99 and CacheLagMax are fleet-wide cache lag in seconds (subject: "fleet");
	// CacheStaleTeams counts teams whose lag exceeds detectors.stale_after.
	CacheLagP99     = "cache_lag_p99_seconds"
	CacheLagMax     = "cache_lag_max_seconds"
	CacheStaleTeams = "cache_stale_teams"

	// PromQL is a configured PromQL query's scalar result (subject: the query's name).
	PromQL = "promql"
)

// Fleet is the subject of fleet-wide series.
const Fleet = "fleet"
