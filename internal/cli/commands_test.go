package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/flagwarden/flagwarden/internal/testenv"
)

// commandPaths lists every command as typed after "flagwarden", subcommands included.
func commandPaths(c *cobra.Command, prefix []string) [][]string {
	var out [][]string
	for _, s := range c.Commands() {
		if !s.IsAvailableCommand() {
			continue
		}
		p := append(append([]string{}, prefix...), s.Name())
		out = append(out, p)
		out = append(out, commandPaths(s, p)...)
	}
	return out
}

func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	paths := commandPaths(newRoot(Env{}), nil)
	require.GreaterOrEqual(t, len(paths), 20, "every command and subcommand")
	for _, p := range paths {
		for _, help := range []string{"--help", "-h", "-help"} {
			code, out, errOut := runCLI(t, nil, append(append([]string{}, p...), help)...)
			require.Equal(t, 0, code, "%v %s: %s", p, help, errOut)
			require.Contains(t, out, "Usage: flagwarden "+strings.Join(p, " "), "%v %s", p, help)
			require.Contains(t, out, "--help", "%v lists its flags", p)
			require.Empty(t, errOut, "help asked for goes to stdout")
		}
	}
	// help COMMAND is that command's help, not the top level's.
	code, out, _ := runCLI(t, nil, "help", "inspect")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Usage: flagwarden inspect queues|teams|pods|caches")
	require.NotContains(t, out, "check-config")
	code, out, _ = runCLI(t, nil, "bench", "rebuild", "--help")
	require.Equal(t, 0, code)
	for _, f := range []string{"--flags", "--naive-max", "--url", "--redis", "--layout", "-o, --output", "--json"} {
		require.Contains(t, out, f)
	}
	code, out, _ = runCLI(t, nil, "version", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Usage: flagwarden version")
	require.NotContains(t, out, "revision:", "help, not the version")
	// Help and synopsis spell the flags alike: every long flag a synopsis names exists.
	for _, p := range paths {
		_, out, _ := runCLI(t, nil, append(append([]string{}, p...), "--help")...)
		usage := out[strings.Index(out, "Usage: "):]
		synopsis := usage[:strings.Index(usage, "\n")]
		for _, m := range regexp.MustCompile(`--[a-z][a-z0-9-]*`).FindAllString(synopsis, -1) {
			require.Contains(t, out, "      "+m+" ", "%v: synopsis names %s, help lists it", p, m)
		}
	}
}

func TestVersionFlagAndFormats(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, nil, "--version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(out, "flagwarden, version "), out)
	code, out, _ = runCLI(t, nil, "version", "-o", "json")
	require.Equal(t, 0, code)
	var v versionInfo
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.NotEmpty(t, v.Version)
	require.NotEmpty(t, v.GoVersion)
	code, out, _ = runCLI(t, nil, "version", "-o", "yaml")
	require.Equal(t, 0, code)
	require.Contains(t, out, "version: "+v.Version+"\n")
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	require.NoError(t, err, "bash checks the completion script")
	code, out, errOut := runCLI(t, nil, "completion", "bash")
	require.Equal(t, 0, code, errOut)
	script := filepath.Join(t.TempDir(), "flagwarden.bash")
	require.NoError(t, os.WriteFile(script, []byte(out), 0o600))
	res, err := exec.Command(bash, "-n", script).CombinedOutput()
	require.NoError(t, err, "bash -n: %s", res)
	require.Contains(t, out, "__start_flagwarden")

	for shell, marker := range map[string]string{"zsh": "#compdef flagwarden", "fish": "complete -c flagwarden", "powershell": "Register-ArgumentCompleter"} {
		code, out, _ := runCLI(t, nil, "completion", shell)
		require.Equal(t, 0, code, shell)
		require.Contains(t, out, marker, shell)
	}
	// What the scripts ask the binary: subjects, and -o's values.
	_, out, _ = runCLI(t, nil, cobra.ShellCompNoDescRequestCmd, "inspect", "")
	for _, s := range []string{"queues", "teams", "pods", "caches"} {
		require.Contains(t, out, s+"\n")
	}
	_, out, _ = runCLI(t, nil, cobra.ShellCompNoDescRequestCmd, "inspect", "queues", "-o", "")
	require.Contains(t, out, "yaml\n")
}

func TestSuggestionsForTypos(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t, nil, "inspct")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "Did you mean this?\n\tinspect")
	code, _, errOut = runCLI(t, nil, "inspect", "qeues")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "did you mean queues?")
	code, _, errOut = runCLI(t, nil, "inspect", "queues", "--jsn")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "unknown flag: --jsn")
}

func TestLegacyArgs(t *testing.T) {
	t.Parallel()
	root := newRoot(Env{})
	cases := []struct{ in, want string }{
		{"analyze backlog -csv f.csv -json", "analyze backlog --csv f.csv --json"},
		{"analyze -csv=f.csv -fail-on critical backlog", "analyze --csv=f.csv --fail-on critical backlog"},
		{"bench rebuild -flags 1000 -naive-max 10 -url postgres://x", "bench rebuild --flags 1000 --naive-max 10 --url postgres://x"},
		{"inspect -json -config c.yaml queues -top 5", "inspect --json --config c.yaml queues --top 5"},
		{"verify --grace -1s -team 3", "verify --grace -1s --team 3"},
		{"verify -grace -1s", "verify --grace -1s"},
		{"inspect queues -o json", "inspect queues -o json"},
		{"inspect queues -ojson", "inspect queues -ojson"},
		{"seed -url -json", "seed --url -json"}, // a value that looks like a flag stays a value
		{"replay incident -frobnicate", "replay incident -frobnicate"},
		{"check-config -print -- -env", "check-config --print -- -env"},
		{"-version", "--version"},
		{"rebuild -help", "rebuild --help"},
		{"demo -speed 600 -log-level debug", "demo --speed 600 --log-level debug"},
	}
	for _, c := range cases {
		got := strings.Join(legacyArgs(root, strings.Fields(c.in)), " ")
		require.Equal(t, c.want, got, c.in)
	}
}

func TestLegacySingleDashFlagsRun(t *testing.T) {
	t.Parallel()
	csv := filepath.Join("testdata", "backlog_incident.csv")
	code, out, errOut := runCLI(t, nil, "analyze", "backlog", "-csv", csv, "-json")
	require.Equal(t, 0, code, errOut)
	var res analyzeOutput
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.NotEmpty(t, res.Findings)
	code, _, errOut = runCLI(t, nil, "analyze", "backlog", "-csv="+csv, "-fail-on", "warning")
	require.Equal(t, failOnExit, code, errOut)
	code, _, errOut = runCLI(t, nil, "check-config", "-env")
	require.Equal(t, 0, code, errOut)
}

func TestOutputFormats(t *testing.T) {
	t.Parallel()
	csv := filepath.Join("testdata", "outliers.csv")
	_, jsonOut, _ := runCLI(t, nil, "analyze", "outliers", "--csv", csv, "-o", "json")
	code, alias, _ := runCLI(t, nil, "analyze", "outliers", "--csv", csv, "--json")
	require.Equal(t, 0, code)
	require.Equal(t, jsonOut, alias, "--json is -o json")
	code, yamlOut, errOut := runCLI(t, nil, "analyze", "outliers", "--csv", csv, "-o", "yaml")
	require.Equal(t, 0, code, errOut)
	var fromJSON, fromYAML any
	require.NoError(t, json.Unmarshal([]byte(jsonOut), &fromJSON))
	require.NoError(t, yaml.Unmarshal([]byte(yamlOut), &fromYAML))
	require.Equal(t, normalise(t, fromJSON), normalise(t, fromYAML), "the same data in both")
	require.NotContains(t, yamlOut, "{", "block style")
	require.True(t, strings.HasPrefix(yamlOut, "findings:\n"), yamlOut)

	code, _, errOut = runCLI(t, nil, "analyze", "outliers", "--csv", csv, "-o", "xml")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "must be one of table, wide, json, yaml")
	code, _, errOut = runCLI(t, nil, "analyze", "outliers", "--csv", csv, "--json", "-o", "table")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "disagree")
}

// normalise round-trips v through JSON so that numbers compare alike.
func normalise(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

func TestWriteDataYAMLQuotesWhatWouldChangeType(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	in := map[string]any{"a": "yes", "b": "123", "c": "", "d": "line\nbreak", "e": []int{1, 2}, "f": "null", "g": 1.5}
	require.NoError(t, writeData(&b, formatYAML, in))
	var back map[string]any
	require.NoError(t, yaml.Unmarshal(b.Bytes(), &back))
	require.Equal(t, normalise(t, in), normalise(t, back), b.String())
}

// TestInspectQueuesWithOnlyABroker: inspect queues connects to the broker alone, so a
// configuration with nothing else (or only the environment) is enough.
func TestInspectQueuesWithOnlyABroker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	redisURL := testenv.Redis(t)
	opt, err := redis.ParseURL(redisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	queue := fmt.Sprintf("only_broker_%d", time.Now().UnixNano())
	require.NoError(t, rdb.SAdd(ctx, "_kombu.binding."+queue, queue+"\x06\x16\x06\x16"+queue).Err())
	require.NoError(t, rdb.LPush(ctx, queue, "a", "b").Err())

	cfg := writeFile(t, fmt.Sprintf("broker:\n  url: %s\n", redisURL))
	code, out, errOut := runCLI(t, nil, "inspect", "queues", "--config", cfg, "--top", "0")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, queue+`\s+2\s`, out)
	require.NotContains(t, out, "UNDECODABLE", "a wide-only column")

	code, out, errOut = runCLI(t, []string{"FLAGWARDEN_BROKER_URL=" + redisURL}, "inspect", "queues", "-o", "wide", "--top", "0")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "UNDECODABLE")
	require.Contains(t, out, "SAMPLED")

	code, out, errOut = runCLI(t, nil, "inspect", "queues", "--config", cfg, "-o", "yaml")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "name: "+queue)

	// What the command does not use is not asked for; what it uses is.
	code, _, errOut = runCLI(t, nil, "inspect", "teams", "--config", cfg)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "flag_database.url: is required")
	require.NotContains(t, errOut, "cache.url")
}

func TestTeamIDsAreChecked(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"rebuild", "--team", "99999999999"},
		{"rebuild", "--team", "2147483648"},
		{"rebuild", "--team", "-4"},
		{"rebuild", "--team", "abc"},
		{"verify", "--team", "0"},
		{"verify", "-team", "007"},
	} {
		code, _, errOut := runCLI(t, nil, args...)
		require.Equal(t, 2, code, "%v: %s", args, errOut)
		require.Contains(t, errOut, "unknown team", "%v", args)
		require.Contains(t, errOut, "invalid team id", "%v", args)
	}
	code, _, errOut := runCLI(t, nil, "rebuild", "--team", "3", "--all")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "none of the others can be")
}

// fakeClock advances by step each time it is read.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(step); return t }
}

func withClock(p *progress, now func() time.Time) {
	p.now = now
	p.start = now()
	p.lastAt = p.start
}

func TestProgressPlainLines(t *testing.T) {
	t.Parallel()
	var errOut bytes.Buffer
	env := Env{Stderr: &errOut}
	p := env.newProgress("rebuild", "teams", 100)
	withClock(p, fakeClock(time.Millisecond)) // fast: only the tenths write lines
	for range 100 {
		p.Add(1)
	}
	p.Finish()
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	require.Len(t, lines, 11, "one line per tenth and one at the end:\n%s", errOut.String())
	re := regexp.MustCompile(`^rebuild: \d+/100 teams \(\d+%\), [\d.,]+ teams/s, ETA \d+s$`)
	for _, l := range lines[:10] {
		require.Regexp(t, re, l)
	}
	require.Contains(t, lines[0], "10/100 teams (10%)")
	require.Regexp(t, `^rebuild: 100/100 teams \(100%\), [\d.,]+ teams/s, done in `, lines[10])
	require.NotContains(t, errOut.String(), "\x1b", "no escape codes off a terminal")
	require.NotContains(t, errOut.String(), "\r")

	// Without a total, slow work still shows every few seconds.
	errOut.Reset()
	p = env.newProgress("seed", "rows", 0)
	withClock(p, fakeClock(2*time.Second))
	for range 9 {
		p.Add(1000)
	}
	p.Finish()
	lines = strings.Split(strings.TrimSpace(errOut.String()), "\n")
	require.GreaterOrEqual(t, len(lines), 3, errOut.String())
	require.Regexp(t, `^seed: [\d,]+ rows, [\d.,]+ rows/s`, lines[0])
}

func TestProgressBarOnTerminalAndNoColor(t *testing.T) {
	t.Parallel()
	terminal := func(io.Writer) bool { return true }
	draw := func(environ []string) string {
		var errOut bytes.Buffer
		env := Env{Stderr: &errOut, Environ: environ, Terminal: terminal}
		p := env.newProgress("verify", "teams", 4)
		for range 4 {
			p.Add(1)
			time.Sleep(120 * time.Millisecond) // past the bar's redraw throttle
		}
		p.Finish()
		return errOut.String()
	}
	out := draw(nil)
	require.Contains(t, out, "verify")
	require.Contains(t, out, "/4", "the count")
	require.Contains(t, out, "teams/s", "the rate")
	require.Contains(t, out, "\x1b[36m", "the description in colour")

	out = draw([]string{"NO_COLOR=1"})
	require.Contains(t, out, "/4")
	require.NotContains(t, out, "\x1b[36m", "NO_COLOR: no colour")
	require.NotContains(t, out, "[cyan]")

	// Tables: colour only on a terminal and without NO_COLOR.
	csv := filepath.Join("testdata", "workers_oom_episode.csv")
	analyze := func(env Env) string {
		var o bytes.Buffer
		env.Stdout, env.Stderr = &o, io.Discard
		require.Equal(t, 0, Main(context.Background(), []string{"analyze", "workers", "--csv", csv}, env))
		return o.String()
	}
	require.Contains(t, analyze(Env{Terminal: terminal}), "\x1b[3")
	require.NotContains(t, analyze(Env{Terminal: terminal, Environ: []string{"NO_COLOR=1"}}), "\x1b[")
	require.NotContains(t, analyze(Env{}), "\x1b[")
}
