package snapshot

// Reasons the kubelet and the container runtime report, as Pod.Waiting and
// Pod.LastTermination carry them.
const (
	ReasonCrashLoop = "CrashLoopBackOff"
	ReasonOOMKilled = "OOMKilled"
)

// PodFleet counts one look at a set of pods.
type PodFleet struct {
	Total, Ready, CrashLooping int
	// LastTerminatedOOM counts pods whose last termination was an OOM kill.
	LastTerminatedOOM int
	// OOMKills and Restarts are new since the previous look.
	OOMKills, Restarts int
	// MemoryRatioMax is the highest usage/limit among pods with both known; 0 when none.
	MemoryRatioMax float64
}

// SummarizePods counts a look at pods: the pod collector's series and the API's
// per-namespace summary are both this count.
func SummarizePods(pods []Pod) PodFleet {
	var f PodFleet
	for _, x := range pods {
		f.Total++
		if x.Ready {
			f.Ready++
		}
		if x.Waiting == ReasonCrashLoop {
			f.CrashLooping++
		}
		if x.LastTermination == ReasonOOMKilled {
			f.LastTerminatedOOM++
		}
		if x.NewOOMKill {
			f.OOMKills++
		}
		f.Restarts += int(x.RestartDelta)
		if x.MemoryLimit > 0 && x.MemoryUsage > 0 {
			f.MemoryRatioMax = max(f.MemoryRatioMax, float64(x.MemoryUsage)/float64(x.MemoryLimit))
		}
	}
	return f
}
