package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/config"
)

func newCheckConfigCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check-config [--print] [--env] FILE",
		Short: "validate a configuration file and list every problem",
		Long: `Validate a configuration file as serve reads it (every server's URL required) and
list every problem with the key, and the line where the file has one.`,
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
		},
	}
	fs := cmd.Flags()
	print := fs.Bool("print", false, "print the effective configuration (secrets redacted)")
	listEnv := fs.Bool("env", false, "list the FLAGWARDEN_* variables that override keys, and exit")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if *listEnv {
			fmt.Fprintln(env.Stdout, strings.Join(config.EnvNames(), "\n"))
			return nil
		}
		if len(args) != 1 {
			return usagef("name one configuration FILE")
		}
		return runBody(func(context.Context, []string) int {
			cfg, err := config.Load(args[0], env.Environ)
			if err != nil {
				fmt.Fprintf(env.Stderr, "%s: ", args[0])
				printConfigError(env.Stderr, err)
				return 1
			}
			fmt.Fprintf(env.Stdout, "%s: configuration is valid\n", args[0])
			if *print {
				fmt.Fprint(env.Stdout, cfg.String())
			}
			return 0
		})(c, args)
	}
	return cmd
}
