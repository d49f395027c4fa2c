// Package verdict is the vocabulary of cache verification: what one stored entry
// turned out to be when compared with a fresh build. The verifier (rebuild/verify)
// writes verdicts; the detectors and the API read them without depending on the
// verifier's machinery.
package verdict

import (
	"fmt"
	"strings"
	"time"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
)

// Outcome is what one stored entry turned out to be.
type Outcome string

// Outcomes of one team, kind and tier.
const (
	// OK: the stored JSON is byte for byte the fresh build's.
	OK Outcome = "ok"
	// Missing: no entry (or PostHog's "__missing__" marker, or an empty value).
	Missing Outcome = "missing"
	// Undecodable: the entry is not what PostHog's readers accept (not a pickled str,
	// a broken zstd frame, not JSON): to them it is a miss.
	Undecodable Outcome = "undecodable"
	// Stale: other bytes, written before the team's flag data last changed.
	Stale Outcome = "stale"
	// Different: other bytes, written after the data last changed (or of unknown age).
	Different Outcome = "different"
	// Recent: the team's data changed within the grace period, so a rebuild may still
	// be on its way; not judged.
	Recent Outcome = "recent"
	// Failed: the entry could not be checked (Redis, S3 or the build failed).
	Failed Outcome = "error"
)

// Outcomes lists every outcome in report order.
var Outcomes = []Outcome{OK, Missing, Undecodable, Stale, Different, Recent, Failed}

// Side checks of an entry: its :etag and its place in PostHog's expiry sorted set.
const (
	CheckOK          = "ok"
	CheckMissing     = "missing"
	CheckWrong       = "wrong"
	CheckUndecodable = "undecodable"
)

// Tiers.
const (
	TierRedis = "redis"
	TierS3    = "s3"
)

// Check is the verdict on one stored entry.
type Check struct {
	TeamID  int64          `json:"team_id"`
	Kind    cachekeys.Kind `json:"kind"`
	Tier    string         `json:"tier"`
	Outcome Outcome        `json:"outcome"`
	// ETag is the :etag check (Redis with the PostHog layout, or flagwarden's metadata
	// in its own layout): ok, missing, wrong or undecodable; empty when not checked.
	ETag string `json:"etag,omitempty"`
	// Expiry is whether PostHog's expiry sorted set tracks the entry (ok, missing);
	// an untracked entry is never refreshed and expires. Empty when not checked.
	Expiry string `json:"expiry,omitempty"`
	// StoredBytes and StoredSHA256 describe the stored JSON text (after decoding).
	StoredBytes  int64  `json:"stored_bytes,omitempty"`
	StoredSHA256 string `json:"stored_sha256,omitempty"`
	FreshBytes   int64  `json:"fresh_bytes"`
	FreshSHA256  string `json:"fresh_sha256,omitempty"`
	// WrittenAt is when the entry was written, as far as it can be told; AgeFrom says
	// how: flagwarden_meta, expiry_set (score minus the TTL), s3_last_modified.
	WrittenAt time.Time `json:"written_at,omitzero"`
	AgeFrom   string    `json:"age_from,omitempty"`
	// DataChangedAt is the newest change to the team's flag data.
	DataChangedAt time.Time `json:"data_changed_at,omitzero"`
	// Detail says what was wrong, in words.
	Detail string `json:"detail,omitempty"`
}

// Wrong reports whether the check found a problem (recent entries are not judged).
func (c Check) Wrong() bool {
	if c.Outcome != OK && c.Outcome != Recent {
		return true
	}
	return (c.ETag != "" && c.ETag != CheckOK) || (c.Expiry != "" && c.Expiry != CheckOK)
}

// TeamProblems is one team's wrong checks from its last verification.
type TeamProblems struct {
	TeamID    int64     `json:"team_id"`
	CheckedAt time.Time `json:"checked_at"`
	Checks    []Check   `json:"checks"`
}

// Line describes one wrong check in one line.
func (c Check) Line() string {
	var parts []string
	if c.Outcome != OK {
		parts = append(parts, string(c.Outcome))
	}
	if c.ETag != "" && c.ETag != CheckOK {
		parts = append(parts, "etag "+c.ETag)
	}
	if c.Expiry != "" && c.Expiry != CheckOK {
		parts = append(parts, "expiry "+c.Expiry)
	}
	s := fmt.Sprintf("team %d %s in %s: %s", c.TeamID, c.Kind.File(), c.Tier, strings.Join(parts, ", "))
	if c.Detail != "" {
		s += " (" + c.Detail + ")"
	}
	return s
}
