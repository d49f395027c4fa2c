package config

import (
	"net/url"
	"time"
)

// Database is a Postgres connection.
type Database struct {
	// URL is a libpq-style URL (postgres://user:pass@host:5432/db).
	URL URL `yaml:"url"`
	// MaxConns bounds the connection pool.
	MaxConns int `yaml:"max_conns"`
	// StatementTimeout bounds every query flagwarden sends.
	StatementTimeout time.Duration `yaml:"statement_timeout"`
}

func (d Database) validate(p *problems, path string, required bool) {
	if required {
		p.required(path+".url", string(d.URL))
	}
	checkURL(p, path+".url", string(d.URL), "postgres", "postgresql")
	p.atLeast(path+".max_conns", int64(d.MaxConns), 1)
	p.positive(path+".statement_timeout", d.StatementTimeout)
}

// Broker is the Celery broker: a Redis and kombu's key layout on it.
type Broker struct {
	// URL is redis://[user:pass@]host:port/db.
	URL URL `yaml:"url"`
	// Queues are watched even when no binding names them (a queue with no consumer).
	Queues []string `yaml:"queues"`
	// Sep is kombu's priority separator (broker_transport_options.sep).
	Sep string `yaml:"sep"`
	// PrioritySteps are kombu's priority lists (broker_transport_options.priority_steps).
	PrioritySteps []int `yaml:"priority_steps"`
	// GlobalKeyPrefix is kombu's global_keyprefix, applied to every key.
	GlobalKeyPrefix string `yaml:"global_keyprefix"`
	// VisibilityTimeout is kombu's visibility_timeout: unacked messages older than this
	// are overdue (due for redelivery).
	VisibilityTimeout time.Duration `yaml:"visibility_timeout"`
	// SampleSize bounds how many messages are decoded from each end of each queue.
	SampleSize int `yaml:"sample_size"`
	// TeamArg says where the team id is in a task's arguments.
	TeamArg TeamArg `yaml:"team_arg"`
	// SampleQueues is how many of the deepest queues get a backlog sample each pass.
	SampleQueues int `yaml:"sample_queues"`
	// MaxLabelledQueues caps the queues that get their own Prometheus label value; the
	// rest are summed under queue="__other__" so a broker with 10,000 queues stays cheap.
	// Configured queues are labelled first, then the deepest.
	MaxLabelledQueues int `yaml:"max_labelled_queues"`
	// PipelineChunk bounds the commands sent in one Redis pipeline.
	PipelineChunk int `yaml:"pipeline_chunk"`
	// UnackedScanLimit bounds the unacked messages decoded per pass to split the unacked
	// count by queue.
	UnackedScanLimit int `yaml:"unacked_scan_limit"`
}

// TeamArg locates the team id in a Celery task's args or kwargs.
type TeamArg struct {
	// Position is the index in args (0 for update_team_flags_cache(team_id)).
	Position int `yaml:"position"`
	// Kwarg is the keyword argument name, tried first when set.
	Kwarg string `yaml:"kwarg"`
}

func defaultBroker() Broker {
	return Broker{
		Sep:               "\x06\x16",
		PrioritySteps:     []int{0, 3, 6, 9},
		VisibilityTimeout: time.Hour,
		SampleSize:        100,
		TeamArg:           TeamArg{Position: 0, Kwarg: "team_id"},
		SampleQueues:      20,
		MaxLabelledQueues: 50,
		PipelineChunk:     5000,
		UnackedScanLimit:  10000,
	}
}

func (b Broker) validate(p *problems) {
	p.required("broker.url", string(b.URL))
	checkURL(p, "broker.url", string(b.URL), "redis", "rediss", "unix")
	if b.Sep == "" {
		p.add("broker.sep", "must not be empty")
	}
	if len(b.PrioritySteps) == 0 {
		p.add("broker.priority_steps", "must list at least one step")
	}
	for i, s := range b.PrioritySteps {
		if s < 0 || s > 255 || (i > 0 && s <= b.PrioritySteps[i-1]) {
			p.add("broker.priority_steps", "must be ascending values in 0..255, got %v", b.PrioritySteps)
			break
		}
	}
	p.positive("broker.visibility_timeout", b.VisibilityTimeout)
	p.atLeast("broker.sample_size", int64(b.SampleSize), 0)
	p.atLeast("broker.team_arg.position", int64(b.TeamArg.Position), 0)
	p.atLeast("broker.sample_queues", int64(b.SampleQueues), 0)
	p.atLeast("broker.max_labelled_queues", int64(b.MaxLabelledQueues), 1)
	p.atLeast("broker.pipeline_chunk", int64(b.PipelineChunk), 1)
	p.atLeast("broker.unacked_scan_limit", int64(b.UnackedScanLimit), 0)
}

// Cache is the Redis holding flag caches.
type Cache struct {
	// URL is redis://[user:pass@]host:port/db.
	URL URL `yaml:"url"`
	// KeyPrefix is prepended to every key flagwarden writes.
	KeyPrefix string `yaml:"key_prefix"`
	// Layout is "flagwarden" (own keys) or "posthog" (PostHog-compatible HyperCache keys).
	Layout string `yaml:"layout"`
	// WatchPostHog also measures PostHog's own caches via its expiry sorted sets.
	WatchPostHog bool `yaml:"watch_posthog"`
	// TTL is the cache entry lifetime PostHog uses; build time = expiry - TTL.
	TTL time.Duration `yaml:"ttl"`
	// Compress zstd-compresses PostHog-layout values over 512 bytes, as PostHog does
	// with USE_REDIS_COMPRESSION; its readers accept compressed and plain values.
	Compress bool `yaml:"compress"`
	// S3 is PostHog's second cache tier, written with the PostHog layout.
	S3 S3 `yaml:"s3"`
	// PostHogContract is the version of PostHog's cache contract the payloads follow:
	// which flags each holds, the fields of a flag, the top-level shape. One of
	// PostHogContracts; default the newest.
	PostHogContract string `yaml:"posthog_contract"`
}

// PostHogContracts are the contract versions the rebuild engine writes, oldest first
// (rebuild.Contracts; a test keeps the two lists equal).
var PostHogContracts = []string{"2026-02", "2026-09"}

func defaultCache() Cache {
	return Cache{Layout: "flagwarden", TTL: 30 * 24 * time.Hour, Compress: true, S3: defaultS3(), PostHogContract: PostHogContracts[len(PostHogContracts)-1]}
}

func (c Cache) validate(p *problems) {
	p.required("cache.url", string(c.URL))
	checkURL(p, "cache.url", string(c.URL), "redis", "rediss", "unix")
	p.oneOf("cache.layout", c.Layout, "flagwarden", "posthog")
	p.positive("cache.ttl", c.TTL)
	c.S3.validate(p, c.Layout)
	p.oneOf("cache.posthog_contract", c.PostHogContract, PostHogContracts...)
}

// Kubernetes locates the worker pods.
type Kubernetes struct {
	// Enabled turns the pod collector on.
	Enabled bool `yaml:"enabled"`
	// Namespace of the worker pods.
	Namespace string `yaml:"namespace"`
	// LabelSelector picks the worker pods.
	LabelSelector string `yaml:"label_selector"`
	// Kubeconfig is a kubeconfig path; empty with in_cluster false means $KUBECONFIG.
	Kubeconfig string `yaml:"kubeconfig"`
	// InCluster uses the pod's service account.
	InCluster bool `yaml:"in_cluster"`
}

func (k Kubernetes) validate(p *problems) {
	if !k.Enabled {
		return
	}
	p.required("kubernetes.namespace", k.Namespace)
	if k.InCluster && k.Kubeconfig != "" {
		p.add("kubernetes.kubeconfig", "must be empty when kubernetes.in_cluster is true")
	}
}

// Prometheus is an optional PromQL source.
type Prometheus struct {
	// URL of the Prometheus HTTP API; empty disables the source.
	URL URL `yaml:"url"`
	// Timeout bounds each query.
	Timeout time.Duration `yaml:"timeout"`
	// Queries are evaluated every pods interval and kept as series.
	Queries []PromQuery `yaml:"queries"`
	// PodMemoryQuery returns each worker pod's memory working set in bytes, one sample per
	// pod with a "pod" label; the pod collector sets usage against limit from it. Empty:
	// usage unknown.
	PodMemoryQuery string `yaml:"pod_memory_query"`
}

// PromQuery is one named PromQL expression.
type PromQuery struct {
	// Name is the series name the result is stored under.
	Name string `yaml:"name"`
	// Query is the PromQL expression.
	Query string `yaml:"query"`
}

func (pr Prometheus) validate(p *problems) {
	if pr.URL == "" {
		if len(pr.Queries) > 0 || pr.PodMemoryQuery != "" {
			p.add("prometheus.url", "is required when prometheus.queries or prometheus.pod_memory_query are set")
		}
		return
	}
	checkURL(p, "prometheus.url", string(pr.URL), "http", "https")
	p.positive("prometheus.timeout", pr.Timeout)
	seen := map[string]bool{}
	for i, q := range pr.Queries {
		if q.Name == "" || q.Query == "" {
			p.add(fieldIndex("prometheus.queries", i), "needs both name and query")
		}
		if seen[q.Name] {
			p.add(fieldIndex("prometheus.queries", i)+".name", "duplicates another query's name %q", q.Name)
		}
		seen[q.Name] = true
	}
}

// checkURL reports a URL that does not parse or has an unexpected scheme. An empty URL
// is left to the required check.
func checkURL(p *problems, field, raw string, schemes ...string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		p.add(field, "is not a valid URL: %s", RedactURL(raw))
		return
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return
		}
	}
	p.add(field, "must use scheme %v, got %q", schemes, u.Scheme)
}
