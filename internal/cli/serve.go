package cli

import (
	"context"
	"fmt"

	"github.com/prometheus/common/version"

	"github.com/flagwarden/flagwarden/internal/app"
)

func runServe(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet("serve", env, "serve [--config FILE] [--listen ADDR]")
	cfgPath := configFlag(fs, env)
	listen := fs.String("listen", "", "override http.listen (host:port)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(*cfgPath, env)
	if err != nil {
		printConfigError(env.Stderr, err)
		return 1
	}
	if *listen != "" {
		cfg.HTTP.Listen = *listen
	}
	logger := newLogger(cfg.Log, env.Stderr)
	if err := app.Run(ctx, app.Options{Config: cfg, Logger: logger, Version: version.Version}); err != nil {
		fmt.Fprintf(env.Stderr, "flagwarden serve: %v\n", err)
		return 1
	}
	return 0
}
