package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/flagwarden/flagwarden/internal/posthog"
)

// teamIDValue is a --team flag: a posthog_team id in its one canonical spelling, so an
// id that cannot name a team (0, negative, beyond int4) is refused on the command line
// as an unknown team, before any server is asked.
type teamIDValue struct{ id *int64 }

func (v teamIDValue) String() string {
	if *v.id == 0 {
		return ""
	}
	return strconv.FormatInt(*v.id, 10)
}

func (v teamIDValue) Type() string { return "ID" }

func (v teamIDValue) Set(s string) error {
	id, err := posthog.ParseTeamID(s)
	if err != nil {
		return fmt.Errorf("unknown team: %w", err)
	}
	*v.id = id
	return nil
}

// teamFlag registers a --team flag; 0 means not given.
func teamFlag(fs *pflag.FlagSet, usage string) *int64 {
	var id int64
	fs.Var(teamIDValue{&id}, "team", usage)
	return &id
}
