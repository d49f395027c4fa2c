package cli

import (
	"context"
	"fmt"

	"github.com/prometheus/common/version"
	"github.com/spf13/cobra"

	"github.com/flagwarden/flagwarden/internal/app"
)

func newServeCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--listen ADDR]",
		Short: "run flagwarden: collectors, detectors, paging, rebuild engine, API and dashboard",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	cfgPath := configFlag(fs, env)
	listen := fs.String("listen", "", "override http.listen (`host:port`)")
	cmd.RunE = runBody(func(ctx context.Context, _ []string) int {
		cfg, err := loadConfig(*cfgPath, env, allServers...)
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
	})
	return cmd
}
