package cli

import "context"

func runInspect(_ context.Context, env Env, _ []string) int { return notYet("inspect", env) }
