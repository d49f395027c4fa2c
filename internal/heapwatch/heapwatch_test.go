package heapwatch

import (
	"runtime"
	"testing"
	"time"
)

var sink [][]byte

// The live peak follows what is held across a collection, and falls back when it is
// released; the heap peak sees it too.
func TestPeaksFollowHeldMemory(t *testing.T) {
	runtime.GC()
	base := Read()
	if base.Heap <= 0 || base.Live <= 0 {
		t.Fatalf("Read() = %+v, want both figures", base)
	}
	s := Start(time.Millisecond)
	const held = 32 << 20
	for range held / (1 << 20) {
		sink = append(sink, make([]byte, 1<<20))
	}
	runtime.GC() // the 32 MiB are live at this collection
	// The ticker's goroutine sees that collection's figure.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		seen := s.peaks.Live >= base.Live+held
		s.mu.Unlock()
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sampler never saw the live heap reach %d", base.Live+held)
		}
	}
	sink = nil
	runtime.GC() // and gone at this one
	p := s.Stop()
	if p.Live < base.Live+held {
		t.Fatalf("live peak %d, want at least %d: the 32 MiB held across a collection", p.Live, base.Live+held)
	}
	if p.Heap < held {
		t.Fatalf("heap peak %d, want at least the %d held", p.Heap, held)
	}
	if now := Read(); now.Live >= base.Live+held {
		t.Fatalf("live heap %d after the release, want below %d", now.Live, base.Live+held)
	}
	if again := s.Stop(); again != p {
		t.Fatalf("second Stop = %+v, want %+v", again, p)
	}
}

// A sampler stopped at once still reports the heap as it was.
func TestStopAtOnce(t *testing.T) {
	p := Start(time.Hour).Stop()
	if p.Heap <= 0 || p.Live <= 0 {
		t.Fatalf("Stop() = %+v, want the readings from Start and Stop", p)
	}
}
