package app

import "context"

// wireCollectors builds the collectors components. Filled in by the collectors work.
func (a *App) wireCollectors(ctx context.Context) error { return nil }
