package pgretry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestIsConnReset(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&pgconn.PgError{Code: "57P01"}, true},
		{fmt.Errorf("insert: %w", &pgconn.PgError{Code: "08006"}), true},
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation: the statement failed
		{&pgconn.PgError{Code: "57014"}, false}, // statement timeout
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{pgconn.ErrConnClosed, true},
		{errors.New("syntax error"), false},
		{context.Canceled, false},
	} {
		require.Equal(t, tc.want, IsConnReset(tc.err), "%v", tc.err)
	}
}

func TestDoRetriesOnceOnReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	resets, calls := 0, 0
	r := Retrier{Reset: func() { resets++ }}
	err := r.Do(ctx, func() error {
		calls++
		if calls == 1 {
			return &pgconn.PgError{Code: "57P01"}
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 2, calls)
	require.Equal(t, 1, resets)

	calls = 0
	err = r.Do(ctx, func() error { calls++; return &pgconn.PgError{Code: "57P01"} })
	require.Error(t, err, "a second reset is the answer")
	require.Equal(t, 2, calls, "only one retry")

	calls = 0
	err = r.Do(ctx, func() error { calls++; return errors.New("constraint") })
	require.Error(t, err)
	require.Equal(t, 1, calls, "a failed statement is not retried")
}
