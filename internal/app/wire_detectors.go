package app

import "context"

// wireDetectors builds the detectors components. Filled in by the detectors work.
func (a *App) wireDetectors(ctx context.Context) error { return nil }
