// Command flagwarden watches the Celery workers that rebuild feature-flag caches, pages
// before they degrade, and rebuilds the caches itself with bounded memory.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/flagwarden/flagwarden/internal/cli"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Main(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()})
}
