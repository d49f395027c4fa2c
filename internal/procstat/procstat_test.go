package procstat

import (
	"runtime"
	"testing"
	"time"
)

func TestPeakRSSGrowsWithMemoryTouched(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	before := PeakRSS()
	if before <= 0 {
		t.Fatalf("PeakRSS = %d, want the process's peak", before)
	}
	b := make([]byte, 64<<20)
	for i := range b {
		if i%4096 == 0 {
			b[i] = 1
		}
	}
	if after := PeakRSS(); after < before+32<<20 {
		t.Fatalf("PeakRSS %d after touching 64 MiB, was %d", after, before)
	}
	runtime.KeepAlive(b)
}

func TestCPUSecondsCountsWork(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("no process CPU time here")
	}
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
