package cli

import (
	"context"
	"fmt"

	"github.com/flagwarden/flagwarden/internal/replay"
)

func runReplay(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet("replay", env, "replay incident [--json] [--seed N]")
	asJSON := fs.Bool("json", false, "print the comparison as JSON")
	seed := fs.Uint64("seed", 1, "simulation seed; the same seed gives the same result")
	if len(args) == 0 || args[0] != "incident" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fs.Usage()
			return 0
		}
		fmt.Fprintln(env.Stderr, "flagwarden replay: name the scenario: 'flagwarden replay incident' (the February 2026 incident)")
		return 2
	}
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "flagwarden replay: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *seed == 0 {
		fmt.Fprintln(env.Stderr, "flagwarden replay: --seed must be positive")
		return 2
	}
	r, err := replay.Run(ctx, replay.Options{Seed: *seed})
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden replay: %v\n", err)
		return 1
	}
	if *asJSON {
		err = r.WriteJSON(env.Stdout)
	} else {
		err = r.WriteTable(env.Stdout)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden replay: write: %v\n", err)
		return 1
	}
	return 0
}
