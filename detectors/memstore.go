package detectors

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// FindingStore is where findings live: the detector pass writes each pass's changes
// and statuses, and the API reads the active and recent findings. Store keeps them in
// the state database; MemStore in process, for a single replica without Postgres (the
// embedded demo).
type FindingStore interface {
	Active(ctx context.Context) ([]Finding, error)
	Recent(ctx context.Context, limit int) ([]Finding, error)
	Apply(ctx context.Context, changes []Change) error
	SaveStatus(ctx context.Context, statuses []DetectorStatus) error
	Prune(ctx context.Context, cutoff time.Time) (int64, error)
}

var (
	_ FindingStore = (*Store)(nil)
	_ FindingStore = (*MemStore)(nil)
)

// MemStore is a FindingStore in memory, with the same semantics as Store: active
// findings are upserted by id, resolving closes one, a pending finding that cleared
// before firing is dropped, and resolved ones stay as history until pruned. It is safe
// for concurrent use.
type MemStore struct {
	mu       sync.Mutex
	seq      int64
	findings []memFinding
	statuses map[string]DetectorStatus
}

type memFinding struct {
	f   Finding
	seq int64
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{statuses: map[string]DetectorStatus{}} }

// open returns the index of the unresolved finding with id, or -1.
func (s *MemStore) open(id string) int {
	return slices.IndexFunc(s.findings, func(m memFinding) bool { return m.f.ID == id && m.f.State != StateResolved })
}

// Apply implements FindingStore.
func (s *MemStore) Apply(_ context.Context, changes []Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range changes {
		f := c.Finding
		i := s.open(f.ID)
		switch {
		case c.Dropped:
			if i >= 0 && s.findings[i].f.State == StatePending {
				s.findings = slices.Delete(s.findings, i, i+1)
			}
		case f.State == StateResolved:
			if i >= 0 {
				s.findings[i].f.State = StateResolved
				s.findings[i].f.ResolvedAt = f.ResolvedAt
			}
		case i >= 0:
			// the first activation time and sequence stay, as the upsert keeps them.
			f.ActiveAt = s.findings[i].f.ActiveAt
			s.findings[i].f = cloneFinding(f)
		default:
			s.seq++
			s.findings = append(s.findings, memFinding{f: cloneFinding(f), seq: s.seq})
		}
	}
	return nil
}

func cloneFinding(f Finding) Finding {
	f.Labels = cloneMap(f.Labels)
	f.Evidence = cloneMap(f.Evidence)
	return f
}

func cloneMap[M ~map[K]V, K comparable, V any](m M) M {
	if m == nil {
		return nil
	}
	out := make(M, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Active implements FindingStore: pending and firing findings, critical first, then
// oldest first.
func (s *MemStore) Active(context.Context) ([]Finding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []memFinding
	for _, m := range s.findings {
		if m.f.State != StateResolved {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b memFinding) int {
		return cmp.Or(cmp.Compare(severityRank(a.f.Severity), severityRank(b.f.Severity)),
			a.f.ActiveAt.Compare(b.f.ActiveAt), cmp.Compare(a.f.ID, b.f.ID))
	})
	return unwrap(out), nil
}

func severityRank(s Severity) int {
	if s == SeverityCritical {
		return 0
	}
	return 1
}

// Recent implements FindingStore: up to limit findings, newest first.
func (s *MemStore) Recent(_ context.Context, limit int) ([]Finding, error) {
	if limit <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.findings)
	slices.SortStableFunc(out, func(a, b memFinding) int {
		return cmp.Or(b.f.ActiveAt.Compare(a.f.ActiveAt), cmp.Compare(b.seq, a.seq))
	})
	return unwrap(out[:min(limit, len(out))]), nil
}

func unwrap(ms []memFinding) []Finding {
	out := make([]Finding, len(ms))
	for i, m := range ms {
		out[i] = cloneFinding(m.f)
	}
	return out
}

// SaveStatus implements FindingStore.
func (s *MemStore) SaveStatus(_ context.Context, statuses []DetectorStatus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range statuses {
		s.statuses[st.Detector] = st
	}
	return nil
}

// Statuses returns every detector's last status, by name.
func (s *MemStore) Statuses(context.Context) ([]DetectorStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]DetectorStatus, 0, len(s.statuses))
	for _, st := range s.statuses {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b DetectorStatus) int { return cmp.Compare(a.Detector, b.Detector) })
	return out, nil
}

// Prune implements FindingStore: resolved findings that resolved before cutoff go.
func (s *MemStore) Prune(_ context.Context, cutoff time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := len(s.findings)
	s.findings = slices.DeleteFunc(s.findings, func(m memFinding) bool {
		return m.f.State == StateResolved && m.f.ResolvedAt.Before(cutoff)
	})
	return int64(before - len(s.findings)), nil
}
