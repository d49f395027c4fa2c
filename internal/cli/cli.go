// Package cli is flagwarden's command line: it parses flags and environment into
// options, takes its components from internal/app, and renders what they return.
//
// The commands are built with cobra, as kubectl's are: per-command help, suggestions
// for mistyped commands, shell completion and pflag's flags (already a dependency of
// client-go) come with it. Single-dash long flags, which the standard library's flag
// package accepted and scripts use, are rewritten before cobra parses (legacy.go).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/common/version"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

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
	// Terminal reports whether w is a terminal, where progress bars and colour are
	// drawn; nil checks whether w is a terminal file.
	Terminal func(w io.Writer) bool
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

// isTerminal reports whether w is a terminal.
func (e Env) isTerminal(w io.Writer) bool {
	if e.Terminal != nil {
		return e.Terminal(w)
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// colour reports whether w may be written in colour: a terminal, and NO_COLOR
// (no-color.org) unset or empty.
func (e Env) colour(w io.Writer) bool {
	return e.getenv("NO_COLOR") == "" && e.getenv("TERM") != "dumb" && e.isTerminal(w)
}

// exitCode ends a command with a code after the command has said why.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// runBody adapts a command body that prints its own errors and returns the process
// exit code to cobra's RunE.
func runBody(body func(ctx context.Context, args []string) int) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		if code := body(c.Context(), args); code != 0 {
			return exitCode(code)
		}
		return nil
	}
}

// usageError is a command line that cannot run; Main prints it with the command's
// usage and exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// Main runs the command args name and returns the process exit code: 0 success, 1
// failure, 2 usage error (verify and analyze --fail-on also use 3).
func Main(ctx context.Context, args []string, env Env) int {
	root := newRoot(env)
	if len(args) == 0 {
		_ = root.Help()
		return 2
	}
	root.SetArgs(legacyArgs(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	// Anything else is cobra's or pflag's verdict on the command line, or a usageError.
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", cmd.CommandPath(), err)
	if !strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintln(env.Stderr)
		_ = cmd.Usage()
	} else {
		fmt.Fprintf(env.Stderr, "Run '%s --help' for the commands.\n", cmd.CommandPath())
	}
	return 2
}

// configFlag registers --config, defaulting to $FLAGWARDEN_CONFIG.
func configFlag(fs *pflag.FlagSet, env Env) *string {
	return fs.String("config", env.getenv("FLAGWARDEN_CONFIG"), "configuration `FILE` (default $FLAGWARDEN_CONFIG; without one, defaults and FLAGWARDEN_* variables apply)")
}

// allServers is what serve and check-config validate: everything.
var allServers = []config.Server{config.FlagDatabaseServer, config.StateDatabaseServer, config.BrokerServer, config.CacheServer}

// loadConfig loads path (or defaults when empty) with env overrides, requiring the
// URLs of only the servers the command uses.
func loadConfig(path string, env Env, uses ...config.Server) (config.Config, error) {
	if path == "" {
		return config.ParseFor(strings.NewReader(""), env.Environ, uses...)
	}
	return config.LoadFor(path, env.Environ, uses...)
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
