package app

import "context"

// wireWeb builds the web components. Filled in by the web work.
func (a *App) wireWeb(ctx context.Context) error { return nil }
