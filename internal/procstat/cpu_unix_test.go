//go:build unix

package procstat

import (
	"runtime"
	"testing"
	"time"
)

func TestCPUSecondsCountsWork(t *testing.T) {
	before := CPUSeconds()
	x := uint64(1)
	// Spin until 50 ms of CPU time show, or 10 s of wall time pass without them.
	for deadline := time.Now().Add(10 * time.Second); CPUSeconds()-before < 0.05 && time.Now().Before(deadline); {
		for range 1 << 16 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	if after := CPUSeconds(); after < before+0.05 {
		t.Fatalf("CPUSeconds %.3f after 50 ms of work, was %.3f", after, before)
	}
	runtime.KeepAlive(x)
}
