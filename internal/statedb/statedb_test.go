package statedb

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/config"
	"github.com/flagwarden/flagwarden/internal/testenv"
)

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.Postgres(t)
	pool, err := Open(ctx, Options{URL: config.URL(url), MaxConns: 2})
	require.NoError(t, err)
	defer pool.Close()

	migs, err := Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, migs)

	applied, err := Migrate(ctx, pool)
	require.NoError(t, err)
	require.Len(t, applied, len(migs), "a fresh database gets every migration")

	again, err := Migrate(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, again, "re-running applies nothing")

	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM flagwarden_schema_migrations`).Scan(&n))
	require.Equal(t, len(migs), n)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM flagwarden_replicas`).Scan(&n), "the replicas table exists")
}

func TestOpenReportsUnreachableServer(t *testing.T) {
	t.Parallel()
	port := testenv.FreePort(t) // nothing listens there
	_, err := Open(context.Background(), Options{
		URL:      config.URL("postgres://fw:topsecret@127.0.0.1:" + strconv.Itoa(port) + "/x?connect_timeout=2"),
		MaxConns: 1,
	})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "topsecret", "errors name the server without its password")
}
