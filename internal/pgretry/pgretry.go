// Package pgretry retries a database operation once when it failed because its
// connection was dead: after a failover, a server restart or pg_terminate_backend the
// pool still holds connections that fail on first use, and the caller would otherwise
// answer 5xx for a write the database would have taken.
package pgretry

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsConnReset reports whether err means the connection broke, not that the statement
// failed: the server ended the session (SQLSTATE class 08, or 57P01 admin shutdown,
// 57P02 crash shutdown, 57P03 cannot connect now), the socket was closed or reset, or
// the driver says the connection is bad or closed.
func IsConnReset(err error) bool {
	if err == nil {
		return false
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pe.Code {
		case "57P01", "57P02", "57P03":
			return true
		}
		return len(pe.Code) == 5 && pe.Code[:2] == "08"
	}
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) ||
		pgconn.SafeToRetry(err)
}

// Retrier runs operations with one retry on a reset connection.
type Retrier struct {
	// Reset, if set, is called before the retry to drop the pool's other idle
	// connections, which died with the one that failed (pgxpool.Pool.Reset).
	Reset func()
	// OnRetry, if set, is called for every retry (a metric).
	OnRetry func()
}

// Do runs fn, and once more if it failed with a reset connection and ctx is still
// live. Use it for operations that are safe to repeat: idempotent writes, or writes
// whose connection died before the server could commit them.
func (r Retrier) Do(ctx context.Context, fn func() error) error {
	err := fn()
	if !IsConnReset(err) || ctx.Err() != nil {
		return err
	}
	if r.Reset != nil {
		r.Reset()
	}
	if r.OnRetry != nil {
		r.OnRetry()
	}
	return fn()
}

// Value is Do for an operation with a result.
func Value[T any](ctx context.Context, r Retrier, fn func() (T, error)) (T, error) {
	var v T
	err := r.Do(ctx, func() error {
		var err error
		v, err = fn()
		return err
	})
	return v, err
}
