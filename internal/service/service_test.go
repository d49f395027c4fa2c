package service

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

type recorder struct {
	name     string
	log      *[]string
	startErr error
}

func (r recorder) Name() string { return r.name }
func (r recorder) Start(context.Context) error {
	if r.startErr != nil {
		return r.startErr
	}
	*r.log = append(*r.log, "start "+r.name)
	return nil
}
func (r recorder) Stop(context.Context) error { *r.log = append(*r.log, "stop "+r.name); return nil }

func TestGroupStartsInOrderStopsInReverse(t *testing.T) {
	var log []string
	g := NewGroup(quiet)
	require.NoError(t, g.Start(context.Background(), recorder{"a", &log, nil}, recorder{"b", &log, nil}, recorder{"c", &log, nil}))
	require.NoError(t, g.Stop(context.Background()))
	require.NoError(t, g.Stop(context.Background()), "second stop is a no-op")
	require.Equal(t, []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}, log)
}

func TestGroupUnwindsOnStartFailure(t *testing.T) {
	var log []string
	g := NewGroup(quiet)
	err := g.Start(context.Background(), recorder{"a", &log, nil}, recorder{"b", &log, errors.New("no broker")}, recorder{"c", &log, nil})
	require.ErrorContains(t, err, "start b: no broker")
	require.Equal(t, []string{"start a", "stop a"}, log)
}

func TestFuncStopsRunAndBoundsWait(t *testing.T) {
	f := NewFunc("worker", quiet, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	require.NoError(t, f.Start(context.Background()))
	require.Error(t, f.Start(context.Background()), "double start is refused")
	require.NoError(t, f.Stop(context.Background()))
	require.NoError(t, f.Stop(context.Background()))

	release := make(chan struct{})
	stuck := NewFunc("stuck", quiet, func(ctx context.Context) error { <-release; return nil })
	require.NoError(t, stuck.Start(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorContains(t, stuck.Stop(ctx), "did not stop in time")
	close(release)
}
