package procstat

import (
	"runtime"
	"testing"
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
