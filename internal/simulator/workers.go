package simulator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// WorkerOptions describe the Celery worker fleet and its naive build.
type WorkerOptions struct {
	// Pods is how many worker pods run (default 4), each one build at a time.
	Pods      int
	Namespace string
	// Limit is each pod's memory limit (default 8 GiB).
	Limit int64
	// BaselineMin and BaselineMax bound a worker's resident memory between builds
	// (defaults 3 and 4 GiB, PostHog's PR #47602); each build draws one.
	BaselineMin, BaselineMax int64
	// TaskOverhead is a task's fixed cost (queries, connections; default 2 s) and
	// BytesPerSecond how fast a naive build serializes (default 20 MB/s).
	TaskOverhead   time.Duration
	BytesPerSecond int64
	// Seed draws the baselines.
	Seed uint64
}

// WithDefaults returns o with every zero field set to its default.
func (o WorkerOptions) WithDefaults() WorkerOptions {
	if o.Pods <= 0 {
		o.Pods = 4
	}
	if o.Namespace == "" {
		o.Namespace = "posthog"
	}
	if o.Limit == 0 {
		o.Limit = 8 << 30
	}
	if o.BaselineMin == 0 {
		o.BaselineMin = 3 << 30
	}
	if o.BaselineMax == 0 {
		o.BaselineMax = 4 << 30
	}
	if o.TaskOverhead == 0 {
		o.TaskOverhead = 2 * time.Second
	}
	if o.BytesPerSecond == 0 {
		o.BytesPerSecond = 20e6
	}
	return o
}

// CeleryWorkers are the simulated worker pods: each takes the next task (acked on
// receipt, Celery's default, so a task whose worker dies is lost), builds it the way
// the incident's task did — everything in memory at once, snapshot.NaiveBuildFactor ×
// the payloads on top of the worker's baseline — and is OOM-killed when that passes
// its limit, then waits out Kubernetes' CrashLoopBackOff.
type CeleryWorkers struct {
	Opts WorkerOptions
	Pods []*Pod
	rng  *rand.Rand
	// cursor is each pod's own clock within a tick.
	cursor []time.Time
	// OOMKills counts every OOM kill.
	OOMKills int
	// Lost counts tasks lost with a killed worker.
	Lost int
	// FirstOOM is when the first OOM kill happened; zero until then.
	FirstOOM time.Time
}

// NewCeleryWorkers starts the pods at start.
func NewCeleryWorkers(o WorkerOptions, start time.Time) *CeleryWorkers {
	o = o.WithDefaults()
	w := &CeleryWorkers{Opts: o, rng: rand.New(rand.NewPCG(o.Seed, 0x776f726b))}
	for i := range o.Pods {
		w.Pods = append(w.Pods, &Pod{
			Namespace: o.Namespace, Name: fmt.Sprintf("celery-worker-feature-flags-%d", i),
			Limit: o.Limit, Baseline: o.BaselineMin, RunningSince: start.Add(-time.Hour),
		})
		w.cursor = append(w.cursor, start)
	}
	return w
}

// Tick implements Consumer: each pod works through the interval event by event.
func (w *CeleryWorkers) Tick(ctx context.Context, s *Sim, now, until time.Time) error {
	for i, p := range w.Pods {
		c := w.cursor[i]
		if c.Before(now) {
			c = now
		}
		for c.Before(until) {
			if p.Waiting(c) {
				c = p.WaitingUntil
				continue
			}
			if p.Busy {
				if p.JobEnd.After(until) {
					break
				}
				c = p.JobEnd
				if p.JobMemory > p.Limit {
					p.OOMKill(c)
					if w.OOMKills == 0 {
						w.FirstOOM = c
					}
					w.OOMKills++
					w.Lost++
					continue
				}
				p.Busy = false
				s.Built(p.Job.TeamID, p.Job.Kind(), p.JobStart, c)
				continue
			}
			d, ok, err := s.Broker.Get(ctx, s.Opts.Queue, c)
			if err != nil {
				return err
			}
			if !ok {
				c = until
				break
			}
			if err := s.Broker.Ack(ctx, d); err != nil {
				return err
			}
			if d.Err != nil {
				continue // Celery rejects a message it cannot decode.
			}
			w.start(s, p, d.Task, c)
		}
		w.cursor[i] = c
	}
	return nil
}

// start begins a naive build of task on p at c.
func (w *CeleryWorkers) start(s *Sim, p *Pod, task Task, c time.Time) {
	team, ok := s.Fleet.Team(task.TeamID)
	if !ok {
		return
	}
	size := team.Size(c)
	need := size.EstimatedNaiveBuildBytes()
	payload := size.FlagsPayloadBytes
	if task.Kind() == "definitions" {
		payload = size.DefinitionsPayloadBytes
	}
	p.Baseline = w.Opts.BaselineMin + w.rng.Int64N(w.Opts.BaselineMax-w.Opts.BaselineMin+1)
	dur := w.Opts.TaskOverhead + time.Duration(float64(payload)/float64(w.Opts.BytesPerSecond)*float64(time.Second))
	p.Busy, p.Job, p.JobStart, p.JobMemory = true, task, c, p.Baseline+need
	p.JobEnd = c.Add(dur)
	if p.JobMemory > p.Limit {
		// memory climbs while the build loads; the kill comes when it crosses the limit.
		frac := float64(p.Limit-p.Baseline) / float64(need)
		p.JobEnd = c.Add(time.Duration(frac * float64(dur)))
	}
}

// CrashLooping counts pods waiting in CrashLoopBackOff at now.
func (w *CeleryWorkers) CrashLooping(now time.Time) int {
	n := 0
	for _, p := range w.Pods {
		if p.Waiting(now) {
			n++
		}
	}
	return n
}
