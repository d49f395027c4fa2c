// Package service gives every long-running part of flagwarden one lifecycle: Start with
// a context, an idempotent Stop, started in order and stopped in reverse.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Service is a long-running part of the process. Start returns once the service is
// running (its goroutines outlive the call and stop when ctx is cancelled or Stop is
// called). Stop is idempotent and returns once the service has released everything,
// or when ctx ends.
type Service interface {
	Name() string
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Group starts services in order and stops them in reverse.
type Group struct {
	logger *slog.Logger

	mu      sync.Mutex
	started []Service
}

// NewGroup returns an empty group.
func NewGroup(logger *slog.Logger) *Group {
	return &Group{logger: logger}
}

// Start starts each service in order. If one fails, those already started are stopped
// in reverse and the error is returned.
func (g *Group) Start(ctx context.Context, services ...Service) error {
	for _, s := range services {
		if err := s.Start(ctx); err != nil {
			stopErr := g.Stop(context.WithoutCancel(ctx))
			return errors.Join(fmt.Errorf("start %s: %w", s.Name(), err), stopErr)
		}
		g.logger.Debug("service started", "service", s.Name())
		g.mu.Lock()
		g.started = append(g.started, s)
		g.mu.Unlock()
	}
	return nil
}

// Stop stops every started service in reverse order, each bounded by ctx. It is
// idempotent: a second call stops nothing.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	started := g.started
	g.started = nil
	g.mu.Unlock()
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		s := started[i]
		if err := s.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", s.Name(), err))
			continue
		}
		g.logger.Debug("service stopped", "service", s.Name())
	}
	return errors.Join(errs...)
}

// Func adapts a blocking run function into a Service: Start launches run in a
// goroutine with a context that Stop cancels, and Stop waits for run to return.
type Func struct {
	name string
	run  func(ctx context.Context) error
	log  *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewFunc returns a service that runs run until stopped. An error from run is logged.
func NewFunc(name string, logger *slog.Logger, run func(ctx context.Context) error) *Func {
	return &Func{name: name, run: run, log: logger}
}

// Name implements Service.
func (f *Func) Name() string { return f.name }

// Start implements Service.
func (f *Func) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done != nil {
		return fmt.Errorf("service %s already started", f.name)
	}
	ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	f.done = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		if err := f.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			f.log.Error("service stopped with error", "service", f.name, "err", err)
		}
	}(f.done)
	return nil
}

// Stop implements Service.
func (f *Func) Stop(ctx context.Context) error {
	f.mu.Lock()
	cancel, done := f.cancel, f.done
	f.cancel, f.done = nil, nil
	f.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("service %s did not stop in time: %w", f.name, ctx.Err())
	}
}
