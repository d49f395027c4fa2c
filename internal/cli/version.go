package cli

import (
	"context"
	"fmt"

	"github.com/prometheus/common/version"
)

// runVersion prints what flagwarden_build_info exports: version, revision, branch, build
// date, Go version and platform.
func runVersion(_ context.Context, env Env, _ []string) int {
	fmt.Fprintln(env.Stdout, version.Print("flagwarden"))
	return 0
}
