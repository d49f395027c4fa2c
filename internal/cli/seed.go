package cli

import "context"

func runSeed(_ context.Context, env Env, _ []string) int { return notYet("seed", env) }
