package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/app"
	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/replay"
)

// tableWidth is what a default table fits in; -o wide may be wider.
const tableWidth = 100

func newReplayCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay incident",
		Short: "replay the February incident with and without flagwarden and compare",
		Args:  cobra.ArbitraryArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(env.Stderr, "flagwarden replay: name the scenario: 'flagwarden replay incident' (the February 2026 incident)")
			return exitCode(2)
		},
	}
	incident := &cobra.Command{
		Use:   "incident [-o table|wide|json|yaml] [--seed N]",
		Short: "the February 2026 incident: a test account's data OOM-kills the cache workers for days",
		Long: `Simulate a week of the February 2026 incident twice on the same fleet and traffic: as it
happened (naive builds in Celery workers, no backlog monitoring) and with flagwarden's
detectors and rebuild policy, and compare them side by side. Takes 30-40 s; progress
shows on stderr. -o wide adds the dates and what each first page said to the table.`,
		Args: noArgs,
	}
	out := outputFlags(incident, incident.Flags())
	seed := incident.Flags().Uint64("seed", 1, "simulation seed; the same seed gives the same result")
	incident.RunE = runBody(func(ctx context.Context, _ []string) int {
		format, err := out.Format()
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden replay: %v\n", err)
			return 2
		}
		if *seed == 0 {
			fmt.Fprintln(env.Stderr, "flagwarden replay: --seed must be positive")
			return 2
		}
		// two runs of a week each, counted in simulated hours
		p := env.newProgress("replay", "simulated h", 2*7*24)
		var offset time.Duration
		last := ""
		r, err := replay.Run(ctx, replay.Options{Seed: *seed, Policy: app.ReplayPolicy(config.Default()), Progress: func(run string, done, of time.Duration) {
			if run != last {
				if last != "" {
					offset += of
				}
				last = run
				p.Describe(run)
			}
			p.Set(int64((offset + done) / time.Hour))
		}})
		p.Finish()
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden replay: %v\n", err)
			return 1
		}
		switch format {
		case formatJSON, formatYAML:
			err = writeData(env.Stdout, format, r)
		case formatWide:
			err = r.WriteTable(env.Stdout)
		default:
			err = r.WriteNarrowTable(env.Stdout, tableWidth)
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "flagwarden replay: write: %v\n", err)
			return 1
		}
		return 0
	})
	cmd.AddCommand(incident)
	return cmd
}
