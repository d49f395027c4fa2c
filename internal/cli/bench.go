package cli

import "context"

func runBench(_ context.Context, env Env, _ []string) int { return notYet("bench", env) }
