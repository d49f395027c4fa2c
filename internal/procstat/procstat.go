// Package procstat reads this process's own resource figures, for the benchmarks'
// peak-RSS and CPU columns.
package procstat

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// ResetPeakRSS resets VmHWM (Linux: writing 5 to clear_refs), so that the next
// PeakRSS is the peak since now; best effort.
func ResetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// PeakRSS is VmHWM from /proc/self/status in bytes, 0 where unavailable.
func PeakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
