package cli

import "context"

func runAnalyze(_ context.Context, env Env, _ []string) int { return notYet("analyze", env) }
