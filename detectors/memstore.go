package detectors

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"time"
)

// FindingStore is where the leader's pass keeps findings and every reader finds them:
// Store on the state database, or MemStore in a single embedded process.
type FindingStore interface {
	Active(ctx context.Context) ([]Finding, error)
	Recent(ctx context.Context, limit int) ([]Finding, error)
	Apply(ctx context.Context, changes []Change) error
	Prune(ctx context.Context, cutoff time.Time) (int64, error)
	SaveStatus(ctx context.Context, statuses []DetectorStatus) error
	Statuses(ctx context.Context) ([]DetectorStatus, error)
}

var _ FindingStore = (*MemStore)(nil)

// MemStore keeps findings in memory with the same semantics as pgstore.Store, for a process
// that runs alone (the embedded demo). It is safe for concurrent use.
type MemStore struct {
	mu       sync.RWMutex
	seq      int64
	rows     []memRow
	statuses map[string]DetectorStatus
}

type memRow struct {
	seq int64
	f   Finding
}

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore { return &MemStore{statuses: map[string]DetectorStatus{}} }

func cloneFinding(f Finding) Finding {
	f.Labels = maps.Clone(f.Labels)
	f.Evidence = maps.Clone(f.Evidence)
	return f
}

// Active returns the pending and firing findings, critical and oldest first.
func (m *MemStore) Active(context.Context) ([]Finding, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Finding
	for _, r := range m.rows {
		if r.f.State != StateResolved {
			out = append(out, cloneFinding(r.f))
		}
	}
	sevRank := func(s Severity) int {
		if s == SeverityCritical {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(sevRank(a.Severity), sevRank(b.Severity)), a.ActiveAt.Compare(b.ActiveAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Recent returns up to limit findings, newest first, resolved ones included.
func (m *MemStore) Recent(_ context.Context, limit int) ([]Finding, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	rows := slices.Clone(m.rows)
	slices.SortFunc(rows, func(a, b memRow) int {
		return cmp.Or(b.f.ActiveAt.Compare(a.f.ActiveAt), cmp.Compare(b.seq, a.seq))
	})
	out := make([]Finding, 0, min(limit, len(rows)))
	for _, r := range rows[:max(0, min(limit, len(rows)))] {
		out = append(out, cloneFinding(r.f))
	}
	return out, nil
}

// Apply records one pass's changes, as Store.Apply does.
func (m *MemStore) Apply(_ context.Context, changes []Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range changes {
		f := cloneFinding(c.Finding)
		idx := slices.IndexFunc(m.rows, func(r memRow) bool { return r.f.ID == f.ID && r.f.State != StateResolved })
		switch {
		case c.Dropped:
			if idx >= 0 && m.rows[idx].f.State == StatePending {
				m.rows = slices.Delete(m.rows, idx, idx+1)
			}
		case f.State == StateResolved:
			if idx >= 0 {
				m.rows[idx].f.State, m.rows[idx].f.ResolvedAt = StateResolved, f.ResolvedAt
			}
		case idx >= 0:
			f.ActiveAt = m.rows[idx].f.ActiveAt
			m.rows[idx].f = f
		default:
			m.seq++
			m.rows = append(m.rows, memRow{seq: m.seq, f: f})
		}
	}
	return nil
}

// Prune deletes resolved findings that resolved before cutoff.
func (m *MemStore) Prune(_ context.Context, cutoff time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	before := len(m.rows)
	m.rows = slices.DeleteFunc(m.rows, func(r memRow) bool { return r.f.State == StateResolved && r.f.ResolvedAt.Before(cutoff) })
	return int64(before - len(m.rows)), nil
}

// SaveStatus replaces the stored status of each detector.
func (m *MemStore) SaveStatus(_ context.Context, statuses []DetectorStatus) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range statuses {
		m.statuses[s.Detector] = s
	}
	return nil
}

// Statuses returns every detector's last status, by name.
func (m *MemStore) Statuses(context.Context) ([]DetectorStatus, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]DetectorStatus, 0, len(m.statuses))
	for _, k := range slices.Sorted(maps.Keys(m.statuses)) {
		out = append(out, m.statuses[k])
	}
	return out, nil
}
