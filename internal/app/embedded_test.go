package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/config"
)

// TestEmbeddedNeedsItsSources: embedded mode opens no database, so a missing source is
// a clear error instead of a nil dereference later.
func TestEmbeddedNeedsItsSources(t *testing.T) {
	cfg := config.Default()
	cfg.Broker.URL = "redis://127.0.0.1:1"
	cfg.Cache.URL = "redis://127.0.0.1:1"
	_, err := New(t.Context(), Options{Config: cfg, Logger: quiet, Embedded: &Embedded{}})
	require.ErrorContains(t, err, "SQLitePath is required")
	require.ErrorContains(t, err, "the Teams, Pods and Flags sources are required")
}
