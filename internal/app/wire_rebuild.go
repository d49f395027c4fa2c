package app

import "context"

// wireRebuild builds the rebuild engine. Filled in by the rebuild work.
func (a *App) wireRebuild(ctx context.Context) error { return nil }

// migrateRebuild applies River's migrations to the state database.
func (a *App) migrateRebuild(ctx context.Context) error { return nil }
