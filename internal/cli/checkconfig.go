package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/flagwarden/flagwarden/internal/config"
)

func runCheckConfig(_ context.Context, env Env, args []string) int {
	fs := newFlagSet("check-config", env, "check-config [--print] [--env] FILE")
	print := fs.Bool("print", false, "print the effective configuration (secrets redacted)")
	listEnv := fs.Bool("env", false, "list the FLAGWARDEN_* variables that override keys, and exit")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *listEnv {
		fmt.Fprintln(env.Stdout, strings.Join(config.EnvNames(), "\n"))
		return 0
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(fs.Arg(0), env.Environ)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: ", fs.Arg(0))
		printConfigError(env.Stderr, err)
		return 1
	}
	fmt.Fprintf(env.Stdout, "%s: configuration is valid\n", fs.Arg(0))
	if *print {
		fmt.Fprint(env.Stdout, cfg.String())
	}
	return 0
}
