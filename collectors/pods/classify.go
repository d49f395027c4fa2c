package pods

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Seen is what one look at a pod leaves for the next: its restart count and the
// termination time of the last OOM kill already counted.
type Seen struct {
	Restarts int32
	OOMAt    time.Time
	Known    bool
}

// Reasons the kubelet and the container runtime report.
const (
	ReasonCrashLoop = snapshot.ReasonCrashLoop
	ReasonOOMKilled = snapshot.ReasonOOMKilled
	// ExitSIGKILL is 128+9: what an OOM-killed process exits with.
	ExitSIGKILL = 137
)

// benignWaiting are waiting reasons of a pod on its way up, not of a problem.
var benignWaiting = map[string]bool{"ContainerCreating": true, "PodInitializing": true}

// Classify turns a pod into what the collector reports. It is pure: prev is what the
// previous look saw of this pod (zero for a pod not seen before), now and recent decide
// whether an OOM kill on a pod seen for the first time is news (it is when it finished
// within recent of now; older kills happened before anyone was watching and would
// otherwise be counted again each time flagwarden restarts).
//
// An OOM kill is counted once per termination: its finishedAt must be later than the
// last one counted. The restart delta is the increase of the summed restart counts since
// the previous look; a count that went down (the kubelet lost its state) is no restart.
func Classify(p *corev1.Pod, prev Seen, now time.Time, recent time.Duration) (snapshot.Pod, Seen) {
	out := snapshot.Pod{Namespace: p.Namespace, Name: p.Name, Phase: string(p.Status.Phase)}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			out.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			out.MemoryLimit += q.Value()
		}
	}

	var lastTerm *corev1.ContainerStateTerminated
	consider := func(t *corev1.ContainerStateTerminated) {
		if t == nil || (t.ExitCode == 0 && t.Reason == "Completed") {
			return
		}
		if lastTerm == nil || t.FinishedAt.After(lastTerm.FinishedAt.Time) {
			lastTerm = t
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, cs := range statuses {
		out.Restarts += cs.RestartCount
		if w := cs.State.Waiting; w != nil && !benignWaiting[w.Reason] {
			// CrashLoopBackOff wins over any other reason: it is the one that pages.
			if out.Waiting == "" || w.Reason == ReasonCrashLoop {
				out.Waiting = w.Reason
			}
		}
		consider(cs.LastTerminationState.Terminated)
		consider(cs.State.Terminated) // a container that was not restarted
	}
	if lastTerm != nil {
		out.LastTermination = lastTerm.Reason
		out.LastExitCode = lastTerm.ExitCode
		out.LastTerminatedAt = lastTerm.FinishedAt.Time
	}

	next := Seen{Restarts: out.Restarts, OOMAt: prev.OOMAt, Known: true}
	if prev.Known && out.Restarts > prev.Restarts {
		out.RestartDelta = out.Restarts - prev.Restarts
	}
	if lastTerm != nil && lastTerm.Reason == ReasonOOMKilled {
		at := lastTerm.FinishedAt.Time
		fresh := at.After(prev.OOMAt)
		if !prev.Known {
			fresh = now.Sub(at) <= recent
		}
		if fresh {
			out.NewOOMKill = true
		}
		next.OOMAt = at
	}
	return out, next
}
