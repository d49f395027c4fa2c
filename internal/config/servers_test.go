package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseForAsksOnlyForTheServersUsed(t *testing.T) {
	t.Parallel()
	broker := "broker:\n  url: redis://127.0.0.1:6379/0\n"
	cfg, err := ParseFor(strings.NewReader(broker), nil, BrokerServer)
	require.NoError(t, err, "no flag database or cache needed to read queues")
	require.Equal(t, "redis://127.0.0.1:6379/0", cfg.Broker.URL.Value())

	_, err = ParseFor(strings.NewReader(broker), nil, BrokerServer, CacheServer)
	require.EqualError(t, err, "cache.url: is required")

	_, err = ParseFor(strings.NewReader(""), nil, StateDatabaseServer)
	require.EqualError(t, err, "state_database.url: is required", "the state database needs a URL of its own or the flag database's")
	cfg, err = ParseFor(strings.NewReader("flag_database:\n  url: postgres://127.0.0.1/f\n"), nil, StateDatabaseServer)
	require.NoError(t, err)
	require.Equal(t, "postgres://127.0.0.1/f", cfg.StateDatabase.URL.Value())

	// Every other rule still applies.
	_, err = ParseFor(strings.NewReader(broker+"log:\n  level: loud\n"), nil, BrokerServer)
	require.ErrorContains(t, err, "log.level")
	_, err = ParseFor(strings.NewReader("broker:\n  url: http://127.0.0.1/\n"), nil)
	require.ErrorContains(t, err, "broker.url")

	// Load still wants them all.
	_, err = Parse(strings.NewReader(broker), nil)
	require.ErrorContains(t, err, "flag_database.url: is required")
}
