package detectors

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Observation is one condition a detector saw in one pass: the raw material of a
// finding. The tracker turns observations into findings with a lifecycle.
type Observation struct {
	// Kind is the alertname (backlog_growth, outlier_team, …).
	Kind     string
	Severity Severity
	// Subject is the team id, queue, namespace or collector, as a string.
	Subject string
	// Labels identify the subject to Alertmanager: team, queue, namespace or collector.
	// alertname and severity are added by the tracker.
	Labels      map[string]string
	Summary     string
	Description string
	Evidence    map[string]float64
	// For is how long the condition must hold before the finding fires; 0 fires at once
	// (conditions that already include time, such as a collector silent for 5 minutes).
	For time.Duration
	// KeepFiringFor is how long a firing finding stays firing after its condition was
	// last observed (Prometheus' keep_firing_for): a signal that comes and goes within
	// one episode — an OOM kill every 30 minutes against a 15-minute window — is one
	// finding, firing throughout, not a page per kill. 0 resolves at the first pass
	// without it.
	KeepFiringFor time.Duration
	// Link is the dashboard path of the subject: /teams/<id>, /?queue=<name>, /.
	Link string
}

// ID is stable for the same kind and subject labels, whatever the severity.
func (o Observation) ID() string { return findingID(o.Kind, o.Labels) }

func findingID(kind string, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(kind)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if k == "alertname" || k == "severity" {
			continue
		}
		b.WriteString("{" + k + "=" + labels[k] + "}")
	}
	return b.String()
}

// Links builds the URLs a finding carries.
type Links struct {
	// RunbookBase is the runbook document; the alertname is appended as an anchor.
	RunbookBase string
	// ExternalURL is how people reach flagwarden's dashboard; empty leaves
	// generator URLs relative.
	ExternalURL string
}

func (l Links) runbook(kind string) string { return l.RunbookBase + "#" + kind }

func (l Links) generator(path string) string {
	if path == "" {
		path = "/"
	}
	return strings.TrimSuffix(l.ExternalURL, "/") + path
}

// Tracker moves findings through their lifecycle: a condition first seen is pending; it
// fires once it has held for its For duration; it resolves when the condition is no
// longer observed. A pending condition that clears before firing is dropped: it never
// paged. Resolved findings are kept for Retention so that they keep being resent. The
// tracker is not safe for concurrent use; the detector pass owns it.
type Tracker struct {
	links     Links
	retention time.Duration

	active   map[string]*Finding
	resolved []Finding
	// seen is when each active finding's condition was last observed, its keep-firing
	// window, and its description as observed (before any keep-firing note).
	seen map[string]keepState
}

type keepState struct {
	at   time.Time // zero for a restored finding until its first pass
	keep time.Duration
	desc string
}

// keepFiringKey is the evidence entry that carries a finding's keep-firing window, so
// that a new leader restoring it from the store keeps it for as long.
const keepFiringKey = "keep_firing_seconds"

// NewTracker returns an empty tracker.
func NewTracker(links Links, resolvedRetention time.Duration) *Tracker {
	return &Tracker{links: links, retention: resolvedRetention, active: map[string]*Finding{}, seen: map[string]keepState{}}
}

// Restore seeds the tracker with findings that were active under a previous leader, so
// that a takeover neither re-pends nor re-pages them.
func (t *Tracker) Restore(findings []Finding) {
	for _, f := range findings {
		if f.State == StateResolved {
			continue
		}
		f := f
		t.active[f.ID] = &f
		keep := time.Duration(f.Evidence[keepFiringKey] * float64(time.Second))
		t.seen[f.ID] = keepState{keep: keep, desc: f.Description}
	}
}

// IsActive reports whether a finding with this ID is pending or firing.
func (t *Tracker) IsActive(id string) bool { _, ok := t.active[id]; return ok }

// IsFiring reports whether a finding with this ID is firing; detectors use it for
// hysteresis. A pending finding must keep meeting the entry conditions for its whole
// For duration, or a brief excursion would ride the looser exit conditions to a page.
func (t *Tracker) IsFiring(id string) bool {
	f, ok := t.active[id]
	return ok && f.State == StateFiring
}

// Change is what one Update did to one finding.
type Change struct {
	Finding Finding
	// Dropped is true for a pending finding that cleared before it fired.
	Dropped bool
}

// Update applies one pass's observations at now and returns every finding that is
// active or changed state (new, fired, resolved, dropped).
func (t *Tracker) Update(now time.Time, obs []Observation) []Change {
	seen := make(map[string]bool, len(obs))
	var out []Change
	for _, o := range obs {
		id := o.ID()
		if seen[id] {
			continue // a detector reporting the same subject twice: first wins
		}
		seen[id] = true
		f, ok := t.active[id]
		if !ok {
			f = &Finding{ID: id, Kind: o.Kind, Subject: o.Subject, State: StatePending, ActiveAt: now}
			t.active[id] = f
		}
		f.Severity = o.Severity
		f.Labels = map[string]string{"alertname": o.Kind, "severity": string(o.Severity)}
		maps.Copy(f.Labels, o.Labels)
		f.Summary, f.Description, f.Evidence = o.Summary, o.Description, o.Evidence
		if o.KeepFiringFor > 0 {
			f.Evidence = maps.Clone(o.Evidence)
			if f.Evidence == nil {
				f.Evidence = map[string]float64{}
			}
			f.Evidence[keepFiringKey] = o.KeepFiringFor.Seconds()
		}
		t.seen[id] = keepState{at: now, keep: o.KeepFiringFor, desc: o.Description}
		f.RunbookURL = t.links.runbook(o.Kind)
		f.GeneratorURL = t.links.generator(o.Link)
		if f.State == StatePending && now.Sub(f.ActiveAt) >= o.For {
			f.State, f.FiredAt = StateFiring, now
		}
		out = append(out, Change{Finding: *f})
	}
	for _, id := range slices.Sorted(maps.Keys(t.active)) {
		if seen[id] {
			continue
		}
		f := t.active[id]
		ks := t.seen[id]
		if ks.at.IsZero() {
			ks.at = now // restored: last seen by the previous leader, as far as we know
			t.seen[id] = ks
		}
		if f.State == StateFiring && now.Sub(ks.at) < ks.keep {
			// Keep firing: the condition may come back within its episode.
			f.Description = ks.desc + fmt.Sprintf(" (The condition was last seen at %s; this keeps firing until %s unless it recurs.)",
				ks.at.UTC().Format("15:04:05"), ks.at.Add(ks.keep).UTC().Format("15:04:05"))
			out = append(out, Change{Finding: *f})
			continue
		}
		delete(t.active, id)
		delete(t.seen, id)
		f.Description = ks.desc
		if f.State == StatePending {
			out = append(out, Change{Finding: *f, Dropped: true})
			continue
		}
		f.State, f.ResolvedAt = StateResolved, now
		t.resolved = append(t.resolved, *f)
		out = append(out, Change{Finding: *f})
	}
	keep := t.resolved[:0]
	for _, f := range t.resolved {
		if now.Sub(f.ResolvedAt) <= t.retention {
			keep = append(keep, f)
		}
	}
	t.resolved = keep
	return out
}

// Relevant returns what Alertmanager should hear about now: firing findings and those
// resolved within the retention.
func (t *Tracker) Relevant() []Finding {
	var out []Finding
	for _, id := range slices.Sorted(maps.Keys(t.active)) {
		if f := t.active[id]; f.State == StateFiring {
			out = append(out, *f)
		}
	}
	return append(out, t.resolved...)
}

// Active returns the pending and firing findings, sorted by ID.
func (t *Tracker) Active() []Finding {
	out := make([]Finding, 0, len(t.active))
	for _, id := range slices.Sorted(maps.Keys(t.active)) {
		out = append(out, *t.active[id])
	}
	return out
}

// teamLink and queueLink are the dashboard routes of a subject.
func teamLink(id int64) string     { return "/teams/" + itoa(id) }
func queueLink(name string) string { return "/?queue=" + url.QueryEscape(name) }
