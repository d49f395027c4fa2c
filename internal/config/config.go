// Package config loads flagwarden's single YAML configuration file: defaults first,
// then the file (strict: an unknown key is an error naming the key and its line),
// then FLAGWARDEN_* environment variables, then cross-field validation whose errors
// name the field. Secrets print as <secret> everywhere.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration of one flagwarden process.
type Config struct {
	// FlagDatabase is the feature-flag platform's Postgres (PostHog schema). Read only.
	FlagDatabase Database `yaml:"flag_database"`
	// StateDatabase is flagwarden's own Postgres: its tables and River's jobs. Empty URL
	// means the flag database's server is used.
	StateDatabase Database `yaml:"state_database"`
	// Broker is the Celery broker Redis whose queues are watched.
	Broker Broker `yaml:"broker"`
	// Cache is the Redis that holds the flag caches flagwarden publishes and watches.
	Cache Cache `yaml:"cache"`
	// Kubernetes locates the Celery worker pods.
	Kubernetes Kubernetes `yaml:"kubernetes"`
	// Prometheus is an optional PromQL source for worker memory and WorkerLostError counts.
	Prometheus Prometheus `yaml:"prometheus"`
	// Alertmanager is where findings page.
	Alertmanager Alertmanager `yaml:"alertmanager"`
	// HTTP is the API, dashboard and metrics server.
	HTTP HTTP `yaml:"http"`
	// Auth holds the API tokens.
	Auth Auth `yaml:"auth"`
	// Collectors sets how often each source is measured and how long history is kept.
	Collectors Collectors `yaml:"collectors"`
	// Detectors sets thresholds and evaluation timing.
	Detectors Detectors `yaml:"detectors"`
	// Rebuild configures the cache rebuild engine.
	Rebuild Rebuild `yaml:"rebuild"`
	// Verify compares the published caches with fresh builds on a schedule.
	Verify Verify `yaml:"verify"`
	// Leader configures leader election among replicas sharing one state database.
	Leader Leader `yaml:"leader"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Shutdown bounds how long a stop may take.
	Shutdown Shutdown `yaml:"shutdown"`
}

// Leader configures the Postgres advisory lock that elects one replica to run the
// leader-only services (detectors, paging, sweeps).
type Leader struct {
	// LockID is the advisory lock key; replicas of one deployment must share it.
	LockID int64 `yaml:"lock_id"`
	// RetryInterval is how often a follower tries to take the lock, and how often the
	// leader checks that its lock connection is alive.
	RetryInterval time.Duration `yaml:"retry_interval"`
}

// Log configures the slog handler.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Shutdown bounds the drain on SIGINT/SIGTERM.
type Shutdown struct {
	// DrainTimeout is the most a stop may take before remaining work is abandoned.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// Default returns a configuration with every default applied and no URLs set.
func Default() Config {
	return Config{
		FlagDatabase:  Database{MaxConns: 4, StatementTimeout: 30 * time.Second},
		StateDatabase: Database{MaxConns: 8, StatementTimeout: 30 * time.Second},
		Broker:        defaultBroker(),
		Cache:         defaultCache(),
		Kubernetes:    Kubernetes{LabelSelector: "app=celery-worker"},
		Prometheus:    Prometheus{Timeout: 10 * time.Second},
		Alertmanager:  defaultAlertmanager(),
		HTTP:          defaultHTTP(),
		Collectors:    defaultCollectors(),
		Detectors:     defaultDetectors(),
		Rebuild:       defaultRebuild(),
		Verify:        defaultVerify(),
		Leader:        Leader{LockID: 0x666c6167776172, RetryInterval: 2 * time.Second},
		Log:           Log{Level: "info", Format: "text"},
		Shutdown:      Shutdown{DrainTimeout: 20 * time.Second},
	}
}

// Load reads the file at path (strictly), applies env overrides from environ (as
// os.Environ returns them) and validates the result. Every problem found is returned
// together, joined.
func Load(path string, environ []string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	return Parse(f, environ)
}

// Parse is Load for a reader.
func Parse(r io.Reader, environ []string) (Config, error) {
	cfg, err := decode(r, environ)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// decode applies the defaults, the file and the environment, without validation.
func decode(r io.Reader, environ []string) (Config, error) {
	cfg := Default()
	data, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, yamlProblems(err, data)
		}
	}
	if err := ApplyEnv(&cfg, environ); err != nil {
		return Config{}, err
	}
	cfg.applyDerived()
	return cfg, nil
}

// applyDerived fills values that default from other values.
func (c *Config) applyDerived() {
	if c.StateDatabase.URL == "" {
		c.StateDatabase.URL = c.FlagDatabase.URL
	}
}

// yamlProblems turns the YAML decoder's error into one problem per line, rewording the
// unknown-field message so that it names the key plainly.
func yamlProblems(err error, data []byte) error {
	lines := strings.Split(string(data), "\n")
	if ve, ok := errors.AsType[*valueError](err); ok {
		return &Problems{Errs: []error{fmt.Errorf("line %d: %s%w", ve.line, keyAt(lines, ve.line), ve.err)}}
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("config: %w", err)
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		// "line 3: field foo not found in type config.Broker"
		if i := strings.Index(msg, ": field "); i >= 0 && strings.Contains(msg, " not found in type ") {
			rest := msg[i+len(": field "):]
			key := rest[:strings.Index(rest, " not found in type ")]
			errs = append(errs, fmt.Errorf("%s: unknown key %q", msg[:i], key))
			continue
		}
		if e := durationProblem(msg, lines); e != nil {
			errs = append(errs, e)
			continue
		}
		errs = append(errs, errors.New(msg))
	}
	return &Problems{Errs: errs}
}

// Problems is every problem found in one configuration.
type Problems struct {
	Errs []error
}

func (p *Problems) Error() string {
	lines := make([]string, len(p.Errs))
	for i, e := range p.Errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is/As look at each problem.
func (p *Problems) Unwrap() []error { return p.Errs }

// problems collects validation errors, each prefixed by the field's YAML path.
type problems struct{ errs []error }

func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (p *problems) positive(field string, d time.Duration) {
	if d <= 0 {
		p.add(field, "must be a positive duration, got %s", d)
	}
}

func (p *problems) atLeast(field string, v, min int64) {
	if v < min {
		p.add(field, "must be at least %d, got %d", min, v)
	}
}

func (p *problems) required(field, v string) {
	if strings.TrimSpace(v) == "" {
		p.errs = append(p.errs, &MissingError{Field: field})
	}
}

// MissingError is a required key that is not set.
type MissingError struct {
	// Field is the key's YAML path.
	Field string
}

func (e *MissingError) Error() string { return e.Field + ": is required" }

func (p *problems) oneOf(field, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	p.add(field, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
}

// Validate checks every field and cross-field rule and returns all problems at once.
func (c *Config) Validate() error {
	var p problems
	p.required("flag_database.url", string(c.FlagDatabase.URL))
	c.FlagDatabase.validate(&p, "flag_database", false)
	// An empty state database URL falls back to the flag database's, so its absence is
	// only worth a separate problem when the flag database has a URL.
	c.StateDatabase.validate(&p, "state_database", c.FlagDatabase.URL != "")
	c.Broker.validate(&p)
	c.Cache.validate(&p)
	c.Kubernetes.validate(&p)
	c.Prometheus.validate(&p)
	c.Alertmanager.validate(&p)
	c.HTTP.validate(&p)
	c.Auth.validate(&p)
	c.Collectors.validate(&p)
	c.Detectors.validate(&p)
	c.Rebuild.validate(&p)
	c.Verify.validate(&p)
	p.positive("leader.retry_interval", c.Leader.RetryInterval)
	p.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	p.oneOf("log.format", c.Log.Format, "text", "json")
	p.positive("shutdown.drain_timeout", c.Shutdown.DrainTimeout)
	if len(p.errs) == 0 {
		return nil
	}
	return &Problems{Errs: p.errs}
}

// String renders the effective configuration as YAML with every secret redacted.
func (c Config) String() string {
	out, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Sprintf("<unprintable config: %v>", err)
	}
	return string(out)
}

// durationProblem rewords the decoder's "line 3: cannot unmarshal !!str `99999...` into
// time.Duration", which truncates the value and gives no reason, from the line itself.
func durationProblem(msg string, lines []string) error {
	var n int
	if !strings.HasSuffix(msg, " into time.Duration") {
		return nil
	}
	if _, err := fmt.Sscanf(msg, "line %d:", &n); err != nil || n < 1 || n > len(lines) {
		return nil
	}
	_, value, ok := strings.Cut(lines[n-1], ":")
	if !ok {
		return nil
	}
	value = strings.Trim(strings.TrimSpace(stripComment(value)), `"'`)
	_, err := ParseDuration(value)
	if err == nil {
		return nil
	}
	return fmt.Errorf("line %d: %s%w", n, keyAt(lines, n), err)
}

// keyAt is "key: " for the mapping key on line n (from 1), or "".
func keyAt(lines []string, n int) string {
	if n < 1 || n > len(lines) {
		return ""
	}
	key, _, ok := strings.Cut(lines[n-1], ":")
	key = strings.TrimLeft(strings.TrimSpace(key), "- ")
	if !ok || key == "" || strings.ContainsAny(key, " \t\"'") {
		return ""
	}
	return key + ": "
}

func stripComment(s string) string {
	if i := strings.Index(s, " #"); i >= 0 {
		return s[:i]
	}
	return s
}
