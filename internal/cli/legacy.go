package cli

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// legacyArgs rewrites the single-dash long flags that the standard library's flag
// package accepted, and that scripts written for earlier releases use (-json,
// -config FILE, -flags=1000), to pflag's double dash. Only the names of flags the
// command being run defines are rewritten, so a short flag (-o json), a negative value
// (--grace -1s) or a flag's value that starts with a dash stays as it is. Shell
// completion requests are passed through untouched.
func legacyArgs(root *cobra.Command, args []string) []string {
	if len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd) {
		return args
	}
	out := make([]string, 0, len(args))
	cmd := root
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if c := subcommand(cmd, a); c != nil {
				cmd = c
			}
			out = append(out, a)
			continue
		}
		dashes := 1
		if strings.HasPrefix(a, "--") {
			dashes = 2
		}
		name, _, inline := strings.Cut(a[dashes:], "=")
		var f *pflag.Flag
		switch {
		case dashes == 2 || len(name) > 1:
			f = lookupFlag(cmd, name)
			if f != nil && dashes == 1 {
				a = "-" + a
			}
		default:
			f = lookupShorthand(cmd, name)
		}
		out = append(out, a)
		// A flag that takes a value given as the next argument: keep that as it is.
		if f != nil && f.NoOptDefVal == "" && !inline && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		}
	}
	return out
}

// subcommand is cmd's subcommand called name (or by an alias), or nil.
func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}

// lookupFlag finds a long flag cmd accepts: its own, or a persistent one of its own or
// of a parent, including cobra's --help and the root's --version.
func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	cmd.InitDefaultHelpFlag()
	if !cmd.HasParent() {
		cmd.InitDefaultVersionFlag()
	}
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	for c := cmd; c != nil; c = c.Parent() {
		if f := c.PersistentFlags().Lookup(name); f != nil {
			return f
		}
	}
	return nil
}

// lookupShorthand finds a one-letter flag cmd accepts.
func lookupShorthand(cmd *cobra.Command, name string) *pflag.Flag {
	if f := cmd.Flags().ShorthandLookup(name); f != nil {
		return f
	}
	for c := cmd; c != nil; c = c.Parent() {
		if f := c.PersistentFlags().ShorthandLookup(name); f != nil {
			return f
		}
	}
	return nil
}
