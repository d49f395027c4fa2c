package replay

import (
	"context"
	"time"

	"github.com/flagwarden/flagwarden/internal/simulator"
	"github.com/flagwarden/flagwarden/rebuild"
)

// engineOptions are the rebuild engine's admission and lane settings (the
// rebuild.* configuration defaults) and the streaming builder's speed.
type engineOptions struct {
	SmallWorkers, LargeWorkers, QuarantineWorkers int
	LargeTeamBytes, HardLimitBytes                int64
	// BuildOverhead and BytesPerSecond time one streaming build of both payloads.
	BuildOverhead  time.Duration
	BytesPerSecond int64
	MemoryBudget   int64
}

// engineModel applies the rebuild engine's policy to the simulated fleet: every task
// taken off the broker becomes a request; a team with a waiting build joins it, a
// team whose build is running gets one follow-up; admission by the team's measured
// payload picks the lane (small, large, or quarantine past the hard limit, one at a
// time); a build streams both payloads in one pass under the memory budget, so its
// memory does not depend on the team's size and nothing is OOM-killed. Admission is
// the engine's own policy (rebuild.Admit) with the same thresholds.
type engineModel struct {
	opts  engineOptions
	queue string
	jobs  map[int64]*job
	lanes map[rebuild.Lane]*laneState
	// Quarantines lists auto-quarantined teams for the detectors.
	quarantines []rebuild.Quarantine

	Requests, Joined, Builds int64
	// PeakWaiting is the most builds that waited at once.
	PeakWaiting int
}

type job struct {
	waiting, running, followUp bool
}

type laneState struct {
	fifo  []int64
	slots []slot
}

type slot struct {
	busy       bool
	team       int64
	start, end time.Time
	cursor     time.Time
}

func newEngineModel(o engineOptions, queue string) *engineModel {
	m := &engineModel{opts: o, queue: queue, jobs: map[int64]*job{}, lanes: map[rebuild.Lane]*laneState{}}
	for lane, n := range map[rebuild.Lane]int{rebuild.LaneSmall: o.SmallWorkers, rebuild.LaneLarge: o.LargeWorkers, rebuild.LaneQuarantine: o.QuarantineWorkers} {
		m.lanes[lane] = &laneState{slots: make([]slot, n)}
	}
	return m
}

var laneOrder = []rebuild.Lane{rebuild.LaneSmall, rebuild.LaneLarge, rebuild.LaneQuarantine}

// Quarantined implements detectors.QuarantineSource.
func (m *engineModel) Quarantined(context.Context) ([]rebuild.Quarantine, error) {
	return m.quarantines, nil
}

func (m *engineModel) admit(s *simulator.Sim, teamID int64, now time.Time) rebuild.Lane {
	t, _ := s.Fleet.Team(teamID)
	ad := rebuild.Admit(t.Size(now).PayloadBytes(), m.isQuarantined(teamID),
		rebuild.AdmissionLimits{LargeTeamBytes: m.opts.LargeTeamBytes, HardLimitBytes: m.opts.HardLimitBytes})
	if ad.Quarantine {
		m.quarantines = append(m.quarantines, rebuild.Quarantine{TeamID: teamID, Auto: true, Since: now, Reason: ad.Reason})
	}
	return ad.Lane
}

func (m *engineModel) isQuarantined(teamID int64) bool {
	for _, q := range m.quarantines {
		if q.TeamID == teamID {
			return true
		}
	}
	return false
}

func (m *engineModel) request(s *simulator.Sim, teamID int64, now time.Time) {
	m.Requests++
	j := m.jobs[teamID]
	if j == nil {
		j = &job{}
		m.jobs[teamID] = j
	}
	switch {
	case j.waiting:
		m.Joined++
	case j.running:
		if j.followUp {
			m.Joined++
		}
		j.followUp = true
	default:
		j.waiting = true
		l := m.lanes[m.admit(s, teamID, now)]
		l.fifo = append(l.fifo, teamID)
	}
}

func (m *engineModel) waiting() int {
	n := 0
	for _, l := range m.lanes {
		n += len(l.fifo)
	}
	return n
}

// Tick implements simulator.Consumer: take every task off the queue (the engine's
// Celery consumer), then run each lane's workers through the interval.
func (m *engineModel) Tick(ctx context.Context, s *simulator.Sim, now, until time.Time) error {
	for {
		d, ok, err := s.Broker.Get(ctx, m.queue, now)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := s.Broker.Ack(ctx, d); err != nil {
			return err
		}
		if d.Err == nil {
			m.request(s, d.Task.TeamID, now)
		}
	}
	m.PeakWaiting = max(m.PeakWaiting, m.waiting())
	for _, lane := range laneOrder {
		l := m.lanes[lane]
		for i := range l.slots {
			if l.slots[i].cursor.Before(now) {
				l.slots[i].cursor = now
			}
		}
		// one event at a time, always the slot furthest behind, so the lane's workers
		// share its queue in time order.
		for {
			var sl *slot
			for i := range l.slots {
				if l.slots[i].cursor.Before(until) && (sl == nil || l.slots[i].cursor.Before(sl.cursor)) {
					sl = &l.slots[i]
				}
			}
			if sl == nil {
				break
			}
			m.step(s, l, sl, until)
		}
	}
	return nil
}

// step performs the next event of one worker slot: finish its build, start the next
// one, or idle to the end of the interval.
func (m *engineModel) step(s *simulator.Sim, l *laneState, sl *slot, until time.Time) {
	if sl.busy {
		if sl.end.After(until) {
			sl.cursor = until
			return
		}
		sl.cursor = sl.end
		sl.busy = false
		m.Builds++
		// one pass writes both caches.
		s.Built(sl.team, "flags", sl.start, sl.end)
		s.Built(sl.team, "definitions", sl.start, sl.end)
		j := m.jobs[sl.team]
		j.running = false
		if j.followUp {
			j.followUp = false
			j.waiting = true
			l.fifo = append(l.fifo, sl.team)
		}
		return
	}
	if len(l.fifo) == 0 {
		sl.cursor = until
		return
	}
	team := l.fifo[0]
	l.fifo = l.fifo[1:]
	j := m.jobs[team]
	j.waiting, j.running = false, true
	t, _ := s.Fleet.Team(team)
	size := t.Size(sl.cursor)
	bytes := size.FlagsPayloadBytes + size.DefinitionsPayloadBytes
	sl.busy, sl.team, sl.start = true, team, sl.cursor
	sl.end = sl.cursor.Add(m.opts.BuildOverhead + time.Duration(float64(bytes)/float64(m.opts.BytesPerSecond)*float64(time.Second)))
}
