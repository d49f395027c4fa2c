// Package cli is flagwarden's command line: it parses flags and environment into
// options and calls the app or the tool behind each subcommand.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/prometheus/common/version"

	"github.com/flagwarden/flagwarden/internal/config"
)

// The build stamps github.com/prometheus/common/version (Version, Revision, Branch,
// BuildDate) with -ldflags -X, as Prometheus' own binaries are; flagwarden_build_info
// and the version command report it. An unstamped build is "dev", with the revision
// Go recorded from the checkout.
func init() {
	if version.Version == "" {
		version.Version = "dev"
	}
}

// Env is what a command sees of the process: its output streams and environment.
type Env struct {
	Stdout  io.Writer
	Stderr  io.Writer
	Environ []string
}

// getenv looks a variable up in e.Environ.
func (e Env) getenv(name string) string {
	for _, kv := range e.Environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, env Env, args []string) int
}

// summaries is each command's one-line description, kept apart from commands so that
// flag sets can name it without an initialization cycle.
var summaries = map[string]string{}

func init() {
	for name, c := range commands {
		summaries[name] = c.summary
	}
}

var commands = map[string]command{
	"serve":        {"run flagwarden: collectors, detectors, paging, rebuild engine, API and dashboard", runServe},
	"demo":         {"run everything on an embedded default (no servers needed) with a simulated fleet", runDemo},
	"replay":       {"replay the February incident with and without flagwarden and compare", runReplay},
	"check-config": {"validate a configuration file and list every problem", runCheckConfig},
	"inspect":      {"print one collection of queues, teams, pods or caches", runInspect},
	"analyze":      {"run the detectors offline over a CSV of backlog depths, worker fleet looks or team sizes", runAnalyze},
	"rebuild":      {"rebuild one team's flag caches (or all) now, with progress", runRebuild},
	"seed":         {"fill a Postgres with the PostHog flag schema and realistic test data", runSeed},
	"bench":        {"measure rebuild memory and throughput, or request dedup", runBench},
	"migrate":      {"apply flagwarden's own migrations to the state database", runMigrate},
	"verify":       {"compare the published caches in Redis (and S3) with a fresh build from the flag database", runVerify},
	"version":      {"print the version", runVersion},
}

// Main runs the subcommand named by args[0] and returns the process exit code:
// 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "flagwarden: unknown command %q\n\n", args[0])
		usage(env.Stderr)
		return 2
	}
	return cmd.run(ctx, env, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `flagwarden watches the Celery workers that rebuild feature-flag caches, pages before
a backlog or an oversized team takes them down, and rebuilds the caches itself with
bounded memory.

Usage: flagwarden <command> [flags]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Run 'flagwarden <command> --help' for a command's flags.
Start here: 'flagwarden demo' runs everything with no servers installed.
`)
}

// newFlagSet returns a flag set whose usage names the command and says what it does.
func newFlagSet(name string, env Env, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: flagwarden %s\n\n%s\n\nFlags:\n", synopsis, summaries[name])
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps -h to exit 0 and bad flags to exit 2.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}

// configFlag registers --config, defaulting to $FLAGWARDEN_CONFIG.
func configFlag(fs *flag.FlagSet, env Env) *string {
	return fs.String("config", env.getenv("FLAGWARDEN_CONFIG"), "configuration `file` (default $FLAGWARDEN_CONFIG; without one, defaults and FLAGWARDEN_* variables apply)")
}

// loadConfig loads path (or defaults when empty) with env overrides.
func loadConfig(path string, env Env) (config.Config, error) {
	if path == "" {
		return config.Parse(strings.NewReader(""), env.Environ)
	}
	return config.Load(path, env.Environ)
}

// printConfigError writes every problem on its own line.
func printConfigError(w io.Writer, err error) {
	var p *config.Problems
	if errors.As(err, &p) {
		fmt.Fprintf(w, "configuration has %d problem(s):\n", len(p.Errs))
		for _, e := range p.Errs {
			fmt.Fprintf(w, "  - %v\n", e)
		}
		return
	}
	fmt.Fprintf(w, "configuration: %v\n", err)
}

// newLogger builds the process logger from the log section.
func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
