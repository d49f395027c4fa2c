package rebuild

import (
	"fmt"

	"github.com/flagwarden/flagwarden/internal/units"
)

// AdmissionLimits are the sizes that decide a team's lane.
type AdmissionLimits struct {
	// LargeTeamBytes: a team whose estimated payload reaches this builds in the large
	// lane.
	LargeTeamBytes int64
	// HardLimitBytes: a team whose estimated payload reaches this is quarantined.
	HardLimitBytes int64
}

// Admission is where one team's build goes.
type Admission struct {
	Lane Lane
	// Quarantine is set when the team must be quarantined now, for Reason.
	Quarantine bool
	Reason     string
}

// Admit is the admission policy: a quarantined team stays in the quarantine lane; a
// team whose estimated payload (estBytes) reaches the hard limit is quarantined; one
// that reaches the large-team size builds in the large lane; every other team in the
// small lane. It is pure, so that the engine and the offline replay apply the same rule.
func Admit(estBytes int64, quarantined bool, l AdmissionLimits) Admission {
	switch {
	case quarantined:
		return Admission{Lane: LaneQuarantine}
	case estBytes >= l.HardLimitBytes:
		return Admission{Lane: LaneQuarantine, Quarantine: true,
			Reason: fmt.Sprintf("estimated payload %s exceeds the hard limit of %s", units.Bytes(estBytes), units.Bytes(l.HardLimitBytes))}
	case estBytes >= l.LargeTeamBytes:
		return Admission{Lane: LaneLarge}
	}
	return Admission{Lane: LaneSmall}
}
