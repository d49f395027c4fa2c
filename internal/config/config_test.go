package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const minimal = `
flag_database:
  url: postgres://fw:hunter2@127.0.0.1:5432/posthog
broker:
  url: redis://127.0.0.1:6379/0
cache:
  url: redis://:cachepass@127.0.0.1:6379/1
`

func TestParseMinimalAppliesDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(strings.NewReader(minimal), nil)
	require.NoError(t, err)
	require.Equal(t, cfg.FlagDatabase.URL, cfg.StateDatabase.URL, "state database defaults to the flag database")
	require.Equal(t, "\x06\x16", cfg.Broker.Sep)
	require.Equal(t, []int{0, 3, 6, 9}, cfg.Broker.PrioritySteps)
	require.Equal(t, 15*time.Second, cfg.Collectors.Celery.Interval)
	require.Equal(t, ByteSize(8<<30), cfg.Detectors.WorkerMemoryLimit)
}

func TestUnknownKeysNameKeyAndLine(t *testing.T) {
	t.Parallel()
	in := minimal + "broker_typo: 1\nhttp:\n  listen: 127.0.0.1:0\n  lisen: x\n"
	_, err := Parse(strings.NewReader(in), nil)
	require.Error(t, err)
	var p *Problems
	require.True(t, errors.As(err, &p))
	require.Len(t, p.Errs, 2)
	require.Contains(t, p.Errs[0].Error(), `line 8: unknown key "broker_typo"`)
	require.Contains(t, p.Errs[1].Error(), `line 11: unknown key "lisen"`)
}

func TestValidationListsEveryProblemByField(t *testing.T) {
	t.Parallel()
	in := `
broker:
  priority_steps: [3, 0]
collectors:
  celery:
    interval: 0s
    timeout: 5s
http:
  listen: nonsense
auth:
  tokens:
    - name: short
      token: abc
      role: admin
`
	_, err := Parse(strings.NewReader(in), nil)
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{
		"flag_database.url: is required",
		"broker.url: is required",
		"cache.url: is required",
		"broker.priority_steps: must be ascending",
		"collectors.celery.interval: must be a positive duration",
		"http.listen: must be host:port",
		"auth.tokens[0].token: must be at least 16 characters",
		"auth.tokens[0].role: must be one of read, operate",
	} {
		require.Contains(t, msg, want)
	}
}

func TestEnvOverridesFileAndRejectsUnknownVariables(t *testing.T) {
	t.Parallel()
	env := []string{
		"FLAGWARDEN_BROKER_URL=redis://10.0.0.1:6380/2",
		"FLAGWARDEN_BROKER_QUEUES=celery, feature_flags",
		"FLAGWARDEN_DETECTORS_WORKER_MEMORY_LIMIT=4GiB",
		"FLAGWARDEN_COLLECTORS_TEAMS_INTERVAL=2m",
		"FLAGWARDEN_CONFIG=/ignored/reserved.yaml",
		"PATH=/usr/bin",
	}
	cfg, err := Parse(strings.NewReader(minimal), env)
	require.NoError(t, err)
	require.Equal(t, "redis://10.0.0.1:6380/2", cfg.Broker.URL.Value())
	require.Equal(t, []string{"celery", "feature_flags"}, cfg.Broker.Queues)
	require.Equal(t, ByteSize(4<<30), cfg.Detectors.WorkerMemoryLimit)
	require.Equal(t, 2*time.Minute, cfg.Collectors.Teams.Interval, "inline Loop fields are reachable")

	_, err = Parse(strings.NewReader(minimal), []string{"FLAGWARDEN_BROKER_ULR=redis://x"})
	require.ErrorContains(t, err, "FLAGWARDEN_BROKER_ULR: is not a configuration key")
	_, err = Parse(strings.NewReader(minimal), []string{"FLAGWARDEN_COLLECTORS_CELERY_INTERVAL=soon"})
	require.ErrorContains(t, err, `invalid duration "soon"`)
}

func TestSecretsNeverPrint(t *testing.T) {
	t.Parallel()
	in := minimal + `
alertmanager:
  urls: [http://127.0.0.1:9093]
  username: pager
  password: am-password-value
auth:
  tokens:
    - name: ops
      token: operate-token-0123456789
      role: operate
`
	cfg, err := Parse(strings.NewReader(in), nil)
	require.NoError(t, err)
	outputs := map[string]string{
		"String":   cfg.String(),
		"%v":       fmt.Sprintf("%v", cfg),
		"%+v":      fmt.Sprintf("%+v", cfg),
		"%#v":      fmt.Sprintf("%#v", cfg),
		"url %s":   cfg.FlagDatabase.URL.String(),
		"token %v": fmt.Sprintf("%v", cfg.Auth.Tokens[0]),
	}
	for name, out := range outputs {
		for _, secret := range []string{"hunter2", "cachepass", "am-password-value", "operate-token-0123456789"} {
			require.NotContains(t, out, secret, "%s leaks a secret", name)
		}
	}
	require.Contains(t, cfg.String(), "<secret>")
	require.Contains(t, cfg.String(), "postgres://fw:<secret>@127.0.0.1:5432/posthog")
	require.Equal(t, "hunter2", mustPassword(t, cfg.FlagDatabase.URL.Value()), "the real value is still there to connect with")
}

func mustPassword(t *testing.T, raw string) string {
	t.Helper()
	_, rest, _ := strings.Cut(raw, "://")
	userinfo, _, _ := strings.Cut(rest, "@")
	_, pw, _ := strings.Cut(userinfo, ":")
	return pw
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                  "",
		"redis://127.0.0.1:6379/0":          "redis://127.0.0.1:6379/0",
		"redis://:pw@127.0.0.1:6379/0":      "redis://:<secret>@127.0.0.1:6379/0",
		"postgres://u@h/db?password=x&a=b":  "postgres://u@h/db?a=b&password=<secret>",
		"postgres://u:p@h:5432/db?sslmode=": "postgres://u:<secret>@h:5432/db?sslmode=",
		"://bad\x7f":                        "<secret>",
	} {
		require.Equal(t, want, RedactURL(in), in)
	}
}

func TestByteSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]ByteSize{"8GiB": 8 << 30, "512MiB": 512 << 20, "1.5GB": 1500000000, "1024": 1024, "0": 0} {
		got, err := ParseByteSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "lots", "-1", "1XB", "-2MiB"} {
		_, err := ParseByteSize(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, "8GiB", ByteSize(8<<30).String())
}

// TestExampleDocumentsEveryKey keeps flagwarden.example.yaml complete: every key of
// Config must appear in it, under its section, and the example must be valid.
func TestExampleDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../flagwarden.example.yaml")
	require.NoError(t, err)
	_, err = Parse(strings.NewReader(string(data)), nil)
	require.NoError(t, err, "the example configuration must be valid")

	var root yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &root))
	present := map[string]bool{}
	walkNode(root.Content[0], "", present)
	for _, path := range configPaths(reflect.TypeFor[Config](), "") {
		require.True(t, present[path], "flagwarden.example.yaml does not document %s", path)
	}
}

func walkNode(n *yaml.Node, prefix string, out map[string]bool) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		p := prefix + n.Content[i].Value
		out[p] = true
		walkNode(n.Content[i+1], p+".", out)
	}
}

// configPaths lists the YAML path of every field, descending into structs (not into
// lists of structs, whose items the example shows in comments).
func configPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			out = append(out, configPaths(f.Type, prefix)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		out = append(out, prefix+name)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			out = append(out, configPaths(f.Type, prefix+name+".")...)
		}
	}
	return out
}

func TestDetectorSeasonKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(strings.NewReader(minimal+"detectors:\n  backlog_timezone: Europe/Berlin\n  backlog_weeks: 2\n  oom_keep_firing: 2h\n"), nil)
	require.NoError(t, err)
	require.Equal(t, "Europe/Berlin", cfg.Detectors.Location().String())
	require.Equal(t, 2, cfg.Detectors.BacklogWeeks)
	require.Equal(t, 2*time.Hour, cfg.Detectors.OOMKeepFiring)

	def, err := Parse(strings.NewReader(minimal), nil)
	require.NoError(t, err)
	require.Equal(t, time.UTC, def.Detectors.Location())
	require.Equal(t, 4, def.Detectors.BacklogWeeks)
	require.Equal(t, time.Hour, def.Detectors.OOMKeepFiring)

	_, err = Parse(strings.NewReader(minimal+"detectors:\n  backlog_timezone: Mars/Olympus\n  backlog_weeks: 0\n  oom_keep_firing: 0s\n"), nil)
	require.Error(t, err)
	for _, want := range []string{
		`detectors.backlog_timezone: must be an IANA time zone such as UTC or Europe/Berlin, got "Mars/Olympus"`,
		"detectors.backlog_weeks: must be between 1 and 8, got 0",
		"detectors.oom_keep_firing: must be a positive duration",
	} {
		require.Contains(t, err.Error(), want)
	}
}

// Sizes and durations beyond what their types hold are rejected with the line, the
// key and the reason, never wrapped around into a negative number.
func TestOverflowingValuesNameLineKeyAndReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"rebuild:\n  memory_budget: 1e30GiB\n", `line 9: memory_budget: invalid byte size "1e30GiB": too large`},
		{"rebuild:\n  memory_budget: 99999999999999999999\n", `line 9: memory_budget: invalid byte size "99999999999999999999": too large`},
		{"rebuild:\n  memory_budget: -5MiB\n", `line 9: memory_budget: invalid byte size "-5MiB": must not be negative`},
		{"rebuild:\n  memory_budget: NaNGiB\n", `line 9: memory_budget: invalid byte size "NaNGiB" (want`},
		{"rebuild:\n  build_timeout: 9999999999h\n", `line 9: build_timeout: invalid duration "9999999999h": too large`},
		{"rebuild:\n  build_timeout: 5 minutes # long\n", `line 9: build_timeout: invalid duration "5 minutes" (want a number with a unit`},
	} {
		_, err := Parse(strings.NewReader(minimal+tc.in), nil)
		require.Error(t, err, tc.in)
		require.Contains(t, err.Error(), tc.want)
		require.NotContains(t, err.Error(), "-9223372036854775808")
	}
	_, err := Parse(strings.NewReader(minimal), []string{"FLAGWARDEN_REBUILD_BUILD_TIMEOUT=9999999999h"})
	require.ErrorContains(t, err, `invalid duration "9999999999h": too large`)
	_, err = Parse(strings.NewReader(minimal), []string{"FLAGWARDEN_REBUILD_MEMORY_BUDGET=1e30GiB"})
	require.ErrorContains(t, err, `invalid byte size "1e30GiB": too large`)
}

// rebuild.shared_prediction_ttl: a week by default, 0 shares none, negative refused.
func TestSharedPredictionTTL(t *testing.T) {
	t.Parallel()
	def, err := Parse(strings.NewReader(minimal), nil)
	require.NoError(t, err)
	require.Equal(t, 7*24*time.Hour, def.Rebuild.SharedPredictionTTL)
	off, err := Parse(strings.NewReader(minimal+"rebuild:\n  shared_prediction_ttl: 0s\n"), nil)
	require.NoError(t, err)
	require.Zero(t, off.Rebuild.SharedPredictionTTL)
	_, err = Parse(strings.NewReader(minimal+"rebuild:\n  shared_prediction_ttl: -1h\n"), nil)
	require.ErrorContains(t, err, "rebuild.shared_prediction_ttl: must not be negative, got -1h0m0s")
}
