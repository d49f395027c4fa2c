package cli

import (
	"fmt"
	"io"
	"strings"
	"text/template"
	"unicode"

	"github.com/prometheus/common/version"
	"github.com/spf13/cobra"
)

const rootLong = `flagwarden watches the Celery workers that rebuild feature-flag caches, pages before
a backlog or an oversized team takes them down, and rebuilds the caches itself with
bounded memory.

Start here: 'flagwarden demo' runs everything with no servers installed.`

// usageTemplate is cobra's, shorter: the synopsis on the Usage line (each command
// writes its own, so help and synopsis spell the flags alike), then the commands and
// flags.
const usageTemplate = `Usage: {{if .Runnable}}{{.UseLine}}{{else}}{{.CommandPath}} COMMAND [flags]{{end}}{{if gt (len .Aliases) 0}}

Aliases: {{.NameAndAliases}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }}  {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Flags of '{{.Parent.CommandPath}}' that apply here too:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Run '{{.CommandPath}} COMMAND --help' for a command's flags.{{end}}
`

// newRoot builds the command tree for one run.
func newRoot(env Env) *cobra.Command {
	root := &cobra.Command{
		Use:     "flagwarden",
		Short:   "watch the Celery workers that rebuild flag caches, page early, rebuild them with bounded memory",
		Long:    rootLong,
		Version: version.Version,
		// Main prints errors and usage itself, to stderr, with the exit code it chooses.
		SilenceErrors:         true,
		SilenceUsage:          true,
		DisableFlagsInUseLine: true,
	}
	root.SetVersionTemplate(version.Print("flagwarden") + "\n")
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetUsageTemplate(usageTemplate)
	// Usage goes with errors, to stderr; help asked for goes to stdout.
	root.SetUsageFunc(func(c *cobra.Command) error {
		return tmpl(c.ErrOrStderr(), c.UsageTemplate(), c)
	})
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.SuggestionsMinimumDistance = 2

	root.AddCommand(
		newServeCmd(env),
		newDemoCmd(env),
		newReplayCmd(env),
		newCheckConfigCmd(env),
		newInspectCmd(env),
		newAnalyzeCmd(env),
		newRebuildCmd(env),
		newSeedCmd(env),
		newBenchCmd(env),
		newMigrateCmd(env),
		newVerifyCmd(env),
		newVersionCmd(env),
	)
	for _, c := range root.Commands() {
		c.DisableFlagsInUseLine = true
		for _, s := range c.Commands() {
			s.DisableFlagsInUseLine = true
		}
	}
	return root
}

// groupCmd is a command that only holds subcommands ('inspect', 'bench'): run alone
// or with an unknown subject it is a usage error naming the choices.
func groupCmd(use, short, long string) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Long: long,
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		RunE: func(c *cobra.Command, args []string) error {
			names := make([]string, 0, len(c.Commands()))
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			if len(args) == 0 {
				return usagef("name one of: %s", joinOr(names))
			}
			msg := "unknown subject %q: name one of: %s"
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				return usagef(msg+" (did you mean %s?)", args[0], joinOr(names), s[0])
			}
			return usagef(msg, args[0], joinOr(names))
		},
	}
}

// templateFuncs are the functions cobra's templates use.
var templateFuncs = template.FuncMap{
	"rpad":                    func(s string, n int) string { return fmt.Sprintf("%-*s", n, s) },
	"trimTrailingWhitespaces": func(s string) string { return strings.TrimRightFunc(s, unicode.IsSpace) },
}

// tmpl renders a usage template for c.
func tmpl(w io.Writer, text string, c *cobra.Command) error {
	t, err := template.New("usage").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return err
	}
	return t.Execute(w, c)
}

// joinOr lists names as "a, b or c".
func joinOr(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// noArgs rejects positional arguments, naming the first.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}
