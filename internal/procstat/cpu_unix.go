//go:build unix

package procstat

import "syscall"

// CPUSeconds is the CPU time this process has used so far, user and system, in
// seconds; 0 where unavailable.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
