package cli

import "context"

func runReplay(_ context.Context, env Env, _ []string) int { return notYet("replay", env) }
