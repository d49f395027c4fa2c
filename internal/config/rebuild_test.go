package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRebuildCoalescingKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Parse(strings.NewReader(minimal), nil)
	require.NoError(t, err)
	require.Equal(t, 500*time.Millisecond, cfg.Rebuild.CoalesceDelay)
	require.Equal(t, 5*time.Second, cfg.Rebuild.QuarantineCacheTTL)

	for _, tc := range []struct {
		yaml, field string
	}{
		{"rebuild:\n  coalesce_delay: 0s\n", "rebuild.coalesce_delay"},
		{"rebuild:\n  coalesce_delay: 6s\n", "rebuild.coalesce_delay"},
		{"rebuild:\n  quarantine_cache_ttl: 0s\n", "rebuild.quarantine_cache_ttl"},
	} {
		_, err := Parse(strings.NewReader(minimal+tc.yaml), nil)
		require.ErrorContains(t, err, tc.field, tc.yaml)
	}
	cfg, err = Parse(strings.NewReader(minimal+"rebuild:\n  coalesce_delay: 2s\n  quarantine_cache_ttl: 1m\n"), nil)
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, cfg.Rebuild.CoalesceDelay)
	require.Equal(t, time.Minute, cfg.Rebuild.QuarantineCacheTTL)
}
