// Package pgstore keeps the detectors' findings and statuses in the state database
// (migration 0004): the leader writes them after each pass and every replica's API
// reads them. It is apart from package detectors so that the detectors themselves
// need no database driver.
package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/detectors"
)

// Store is a detectors.FindingStore in the state database.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a store on the state database (migration 0004 applied).
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const findingColumns = `id, kind, severity, subject, state, labels, summary, description, evidence,
	active_at, fired_at, resolved_at, runbook_url, generator_url`

// Active returns the pending and firing findings, most severe and oldest first.
func (s *Store) Active(ctx context.Context) ([]detectors.Finding, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+findingColumns+` FROM flagwarden_findings
		WHERE state <> 'resolved'
		ORDER BY CASE severity WHEN 'critical' THEN 0 ELSE 1 END, active_at, id`)
	if err != nil {
		return nil, fmt.Errorf("query active findings: %w", err)
	}
	return collectFindings(rows)
}

// Recent returns up to limit findings, newest first, resolved ones included.
func (s *Store) Recent(ctx context.Context, limit int) ([]detectors.Finding, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+findingColumns+` FROM flagwarden_findings
		ORDER BY active_at DESC, seq DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("query recent findings: %w", err)
	}
	return collectFindings(rows)
}

func collectFindings(rows pgx.Rows) ([]detectors.Finding, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (detectors.Finding, error) {
		var f detectors.Finding
		var labels, evidence []byte
		var fired, resolved *time.Time
		if err := r.Scan(&f.ID, &f.Kind, &f.Severity, &f.Subject, &f.State, &labels, &f.Summary, &f.Description,
			&evidence, &f.ActiveAt, &fired, &resolved, &f.RunbookURL, &f.GeneratorURL); err != nil {
			return f, err
		}
		if err := json.Unmarshal(labels, &f.Labels); err != nil {
			return f, fmt.Errorf("finding %s labels: %w", f.ID, err)
		}
		if err := json.Unmarshal(evidence, &f.Evidence); err != nil {
			return f, fmt.Errorf("finding %s evidence: %w", f.ID, err)
		}
		if fired != nil {
			f.FiredAt = fired.UTC()
		}
		if resolved != nil {
			f.ResolvedAt = resolved.UTC()
		}
		f.ActiveAt = f.ActiveAt.UTC()
		return f, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read findings: %w", err)
	}
	return out, nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Apply records one pass's changes in one transaction: active findings are upserted,
// resolved ones closed, and pending ones that cleared before firing deleted (they never
// paged and are not history).
func (s *Store) Apply(ctx context.Context, changes []detectors.Change) error {
	if len(changes) == 0 {
		return nil
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, c := range changes {
			f := c.Finding
			switch {
			case c.Dropped:
				batch.Queue(`DELETE FROM flagwarden_findings WHERE id = $1 AND state = 'pending'`, f.ID)
			case f.State == detectors.StateResolved:
				batch.Queue(`UPDATE flagwarden_findings SET state = 'resolved', resolved_at = $2, updated_at = now()
					WHERE id = $1 AND state <> 'resolved'`, f.ID, f.ResolvedAt)
			default:
				labels, err := json.Marshal(f.Labels)
				if err != nil {
					return fmt.Errorf("encode finding %s labels: %w", f.ID, err)
				}
				evidence, err := json.Marshal(f.Evidence)
				if err != nil {
					return fmt.Errorf("encode finding %s evidence: %w", f.ID, err)
				}
				batch.Queue(`INSERT INTO flagwarden_findings (`+findingColumns+`)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13)
					ON CONFLICT (id) WHERE state <> 'resolved' DO UPDATE SET
						severity = EXCLUDED.severity, state = EXCLUDED.state, labels = EXCLUDED.labels,
						summary = EXCLUDED.summary, description = EXCLUDED.description, evidence = EXCLUDED.evidence,
						fired_at = EXCLUDED.fired_at, runbook_url = EXCLUDED.runbook_url,
						generator_url = EXCLUDED.generator_url, updated_at = now()`,
					f.ID, f.Kind, string(f.Severity), f.Subject, string(f.State), labels, f.Summary, f.Description,
					evidence, f.ActiveAt, nullTime(f.FiredAt), f.RunbookURL, f.GeneratorURL)
			}
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("write findings: %w", err)
		}
		return nil
	})
}

// Prune deletes resolved findings that resolved before cutoff.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM flagwarden_findings WHERE state = 'resolved' AND resolved_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("prune findings: %w", err)
	}
	return tag.RowsAffected(), nil
}

// SaveStatus replaces the stored status of each detector.
func (s *Store) SaveStatus(ctx context.Context, statuses []detectors.DetectorStatus) error {
	batch := &pgx.Batch{}
	for _, st := range statuses {
		body, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("encode %s status: %w", st.Detector, err)
		}
		batch.Queue(`INSERT INTO flagwarden_detector_status (detector, status, updated_at) VALUES ($1, $2, now())
			ON CONFLICT (detector) DO UPDATE SET status = EXCLUDED.status, updated_at = now()`, st.Detector, body)
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("save detector status: %w", err)
	}
	return nil
}

// Statuses returns every detector's last status, by name.
func (s *Store) Statuses(ctx context.Context) ([]detectors.DetectorStatus, error) {
	rows, err := s.pool.Query(ctx, `SELECT status FROM flagwarden_detector_status ORDER BY detector`)
	if err != nil {
		return nil, fmt.Errorf("query detector status: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (detectors.DetectorStatus, error) {
		var st detectors.DetectorStatus
		var body []byte
		if err := r.Scan(&body); err != nil {
			return st, err
		}
		return st, json.Unmarshal(body, &st)
	})
	if err != nil {
		return nil, fmt.Errorf("read detector status: %w", err)
	}
	return out, nil
}

var _ detectors.FindingStore = (*Store)(nil)
