package posthog

import (
	"errors"
	"fmt"
	"math"
)

// MaxTeamID is the largest id posthog_team.id can hold: the column is a Postgres
// integer (int4). Anything larger cannot name a team, so it is "unknown team" to every
// caller rather than an encode error from the driver.
const MaxTeamID = math.MaxInt32

// ErrTeamID is wrapped by every team id that is not a valid posthog_team.id.
var ErrTeamID = errors.New("invalid team id")

// ValidTeamID reports whether id fits posthog_team.id (a positive int4).
func ValidTeamID(id int64) bool { return id >= 1 && id <= MaxTeamID }

// CheckTeamID returns an error wrapping ErrTeamID when id does not fit the schema.
func CheckTeamID(id int64) error {
	if !ValidTeamID(id) {
		return fmt.Errorf("%w %d: must be between 1 and %d", ErrTeamID, id, MaxTeamID)
	}
	return nil
}

// ParseTeamID parses a team id in its canonical decimal form only: digits, no sign, no
// leading zero, no spaces. "+5" and "00001" are rejected so that one team has one
// spelling in URLs, logs and cache keys.
func ParseTeamID(s string) (int64, error) {
	if s == "" || len(s) > 10 {
		return 0, fmt.Errorf("%w %q: want a decimal number between 1 and %d", ErrTeamID, s, MaxTeamID)
	}
	if s[0] == '0' {
		return 0, fmt.Errorf("%w %q: no leading zeros", ErrTeamID, s)
	}
	var id int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w %q: want a decimal number between 1 and %d", ErrTeamID, s, MaxTeamID)
		}
		id = id*10 + int64(c-'0')
	}
	if err := CheckTeamID(id); err != nil {
		return 0, err
	}
	return id, nil
}
