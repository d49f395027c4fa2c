package cli

import (
	"context"
	"fmt"
)

// runDemo will run every part of flagwarden on an embedded default (miniredis as broker
// and cache, River on SQLite, the simulated fleet behind the collectors' and builder's
// source interfaces). The app cannot start without Postgres yet, so the command says so
// and points at what already runs with nothing installed.
func runDemo(_ context.Context, env Env, args []string) int {
	fs := newFlagSet("demo", env, "demo [--speed N] [--listen ADDR] [--alertmanager URL]")
	fs.Float64("speed", 60, "simulated seconds per real second")
	fs.String("listen", "127.0.0.1:8080", "dashboard and API listen `address`")
	fs.String("alertmanager", "", "Alertmanager `URL` to page (default: dashboard only)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fmt.Fprintf(env.Stderr, `flagwarden demo: not available yet in this version (%s).
The embedded mode (no Postgres, miniredis broker and cache, River on SQLite) is not wired
into the app yet. What runs with nothing installed today:

  flagwarden replay incident          the February incident, as it happened and with flagwarden
  flagwarden replay incident --json   the same comparison as JSON
`, Version)
	return 1
}
