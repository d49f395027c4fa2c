package cli

import "context"

func runDemo(_ context.Context, env Env, _ []string) int { return notYet("demo", env) }
