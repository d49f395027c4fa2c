package simulator

import (
	"fmt"
	"time"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Kubernetes' container restart backoff (Kubernetes in Action 2e §6.2.1): 10 s, doubled
// after every crash, capped at 5 minutes, reset once a container has run 10 minutes.
const (
	BackoffInitial = 10 * time.Second
	BackoffMax     = 5 * time.Minute
	BackoffReset   = 10 * time.Minute
)

// NextBackoff is the delay before the next restart of a container that crashed after
// running for ran, given the delay before its previous restart (0 for none).
func NextBackoff(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= BackoffReset {
		return BackoffInitial
	}
	return min(2*prev, BackoffMax)
}

// Pod is one simulated Celery worker pod with a single container.
type Pod struct {
	Namespace string
	Name      string
	Limit     int64
	// Baseline is the worker's resident memory between builds.
	Baseline int64

	Restarts        int32
	RunningSince    time.Time
	WaitingUntil    time.Time // while in CrashLoopBackOff
	backoff         time.Duration
	LastTermination string
	LastTerminated  time.Time
	OOMKills        int
	// CrashLoopTime is the total time spent waiting in CrashLoopBackOff.
	CrashLoopTime time.Duration

	// the build in progress, if any.
	Busy     bool
	Job      Task
	JobStart time.Time
	JobEnd   time.Time
	// JobMemory is what the build holds at its peak; > Limit means the build dies.
	JobMemory int64

	reported int32 // restarts at the previous Snapshot, for RestartDelta
	oomSeen  time.Time
}

// Running reports whether the container runs at now.
func (p *Pod) Running(now time.Time) bool { return !now.Before(p.WaitingUntil) }

// Waiting reports whether the pod is in CrashLoopBackOff at now.
func (p *Pod) Waiting(now time.Time) bool { return now.Before(p.WaitingUntil) }

// OOMKill terminates the container at now with reason OOMKilled and schedules the
// restart after Kubernetes' backoff.
func (p *Pod) OOMKill(now time.Time) {
	ran := now.Sub(p.RunningSince)
	p.backoff = NextBackoff(p.backoff, ran)
	p.Restarts++
	p.OOMKills++
	p.LastTermination = snapshot.ReasonOOMKilled
	p.LastTerminated = now
	p.WaitingUntil = now.Add(p.backoff)
	p.RunningSince = p.WaitingUntil
	p.CrashLoopTime += p.backoff
	p.Busy = false
}

// Memory is the container's working set at now.
func (p *Pod) Memory(now time.Time) int64 {
	if p.Waiting(now) {
		return 0
	}
	if p.Busy {
		// the naive build's memory climbs as it loads; report the share reached so far.
		span := p.JobEnd.Sub(p.JobStart)
		frac := 1.0
		if span > 0 {
			frac = min(1, float64(now.Sub(p.JobStart))/float64(span))
		}
		return p.Baseline + int64(frac*float64(p.JobMemory-p.Baseline))
	}
	return p.Baseline
}

// Snapshot classifies the pod as the pod collector would, at now. It advances the
// restart delta and OOM de-duplication, so call it once per look.
func (p *Pod) Snapshot(now time.Time) snapshot.Pod {
	sp := snapshot.Pod{
		Namespace: p.Namespace, Name: p.Name, Phase: "Running",
		Ready: p.Running(now), Restarts: p.Restarts, RestartDelta: p.Restarts - p.reported,
		LastTermination: p.LastTermination, LastTerminatedAt: p.LastTerminated,
		MemoryLimit: p.Limit, MemoryUsage: min(p.Memory(now), p.Limit),
	}
	if p.LastTermination == snapshot.ReasonOOMKilled {
		sp.LastExitCode = 137
		if p.LastTerminated.After(p.oomSeen) {
			sp.NewOOMKill = true
			p.oomSeen = p.LastTerminated
		}
	}
	if p.Waiting(now) {
		sp.Waiting = snapshot.ReasonCrashLoop
	}
	p.reported = p.Restarts
	return sp
}

// WaitingMessage is what the kubelet puts in the waiting state's message.
func (p *Pod) WaitingMessage() string {
	return fmt.Sprintf("back-off %s restarting failed container=worker pod=%s_%s", p.backoff, p.Name, p.Namespace)
}
