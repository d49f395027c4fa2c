package snapshot

import "time"

// Quarantine is one quarantined team as the rebuild engine reports it: the detectors
// page on it and the API lists it, neither needing the engine itself.
type Quarantine struct {
	TeamID int64  `json:"team_id"`
	Reason string `json:"reason"`
	// Auto is true when the engine quarantined the team (size or repeated failures).
	Auto  bool      `json:"auto"`
	Since time.Time `json:"since"`
}
