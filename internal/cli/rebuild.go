package cli

import "context"

func runRebuild(_ context.Context, env Env, _ []string) int { return notYet("rebuild", env) }
