// Package heapwatch samples the Go heap while a piece of work runs, for the peaks a
// build and the benchmark report. Two figures, because they answer different
// questions:
//
//   - Heap is the heap's objects, live and dead: what the process has allocated and the
//     collector has not freed yet. The collector lets garbage grow to about the live
//     heap again before it runs (GOGC=100), so this peak is up to twice what the work
//     holds, and where between depends on when the collections happened to fall.
//   - Live is what the last collection found reachable: what the work holds. It is the
//     figure a memory bound is about, and the one that does not move with GOGC or with
//     the collector's timing. It changes only when a collection ends, so work that
//     allocates too little to start one reports the live heap from before it.
package heapwatch

import (
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// Peaks are the highest readings seen, in bytes.
type Peaks struct {
	Heap int64
	Live int64
}

const (
	heapMetric = "/memory/classes/heap/objects:bytes"
	liveMetric = "/gc/heap/live:bytes"
)

// Read returns the heap now: its objects and the live heap of the last collection.
func Read() Peaks {
	s := []rtmetrics.Sample{{Name: heapMetric}, {Name: liveMetric}}
	rtmetrics.Read(s)
	return Peaks{Heap: uint64Value(s[0]), Live: uint64Value(s[1])}
}

func uint64Value(s rtmetrics.Sample) int64 {
	if s.Value.Kind() != rtmetrics.KindUint64 {
		return 0 // a runtime without the metric
	}
	return int64(s.Value.Uint64())
}

func (p *Peaks) raise(o Peaks) {
	p.Heap = max(p.Heap, o.Heap)
	p.Live = max(p.Live, o.Live)
}

// Sampler reads the heap on a ticker until Stop.
type Sampler struct {
	mu    sync.Mutex
	peaks Peaks
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// Start begins sampling every interval (a few milliseconds: the heap's peak lasts
// until the next collection, which at a build's allocation rate comes within tens of
// milliseconds).
func Start(interval time.Duration) *Sampler {
	s := &Sampler{peaks: Read(), done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *Sampler) sample() {
	r := Read()
	s.mu.Lock()
	s.peaks.raise(r)
	s.mu.Unlock()
}

// Stop ends sampling and returns the peaks, including a last reading. Calling it again
// returns the same peaks.
func (s *Sampler) Stop() Peaks {
	s.once.Do(func() {
		close(s.done)
		s.wg.Wait()
		s.sample()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peaks
}
