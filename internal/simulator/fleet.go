package simulator

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Team is one simulated team's flag data, described by counts and average sizes so that
// a fleet of thousands costs a few hundred bytes a team. FlagFilters renders real
// filters JSON for any of its flags on demand.
type Team struct {
	ID        int64
	ProjectID int64
	Name      string
	// Flags and Cohorts are the team's live flags and referenced non-static cohorts.
	Flags   int64
	Cohorts int64
	// FlagBytes and CohortBytes are the average serialized size of one flag's filters
	// and one cohort's properties.
	FlagBytes   int64
	CohortBytes int64
	GroupTypes  int64
	// Activity weights how often the team's flags change.
	Activity float64
	// TestAutomation marks the team whose data grows until its builds do not fit.
	TestAutomation bool
	UpdatedAt      time.Time
}

// flagOverhead is what the serializer adds around each flag's filters (id, key, name,
// booleans, evaluation tags), from the MinimalFeatureFlagSerializer's field list.
const flagOverhead = 320

// Size is the team's measured size, as the team-size collector would report it.
func (t *Team) Size(at time.Time) snapshot.TeamSize {
	flagsPayload := t.Flags * (t.FlagBytes + flagOverhead)
	cohortBytes := t.Cohorts * t.CohortBytes
	return snapshot.TeamSize{
		TeamID: t.ID, ProjectID: t.ProjectID,
		Flags: t.Flags, ActiveFlags: t.Flags,
		Cohorts: t.Cohorts, CohortBytes: cohortBytes,
		FiltersBytes:       t.Flags * t.FlagBytes,
		LargestFilterBytes: min(385<<10, 4*t.FlagBytes),
		GroupTypes:         t.GroupTypes,
		FlagsPayloadBytes:  flagsPayload + 16,
		// definitions carry the flags plus every referenced cohort and group types.
		DefinitionsPayloadBytes: flagsPayload + cohortBytes + 40*t.GroupTypes + 64,
		UpdatedAt:               t.UpdatedAt,
		MeasuredAt:              at,
	}
}

// FleetOptions shape the generated fleet.
type FleetOptions struct {
	// Seed makes the fleet reproducible.
	Seed uint64
	// Teams is how many teams have flags (default 2000).
	Teams int
	// TestTeamID is the test-automation team's id (default 2, an early internal account).
	TestTeamID int64
	// TestFlags, TestCohorts and TestCohortBytes are its starting data (defaults 900,
	// 6800, 64 KiB).
	TestFlags       int64
	TestCohorts     int64
	TestCohortBytes int64
	// Start stamps every team's UpdatedAt.
	Start time.Time
}

// WithDefaults returns o with every zero field set to its default.
func (o FleetOptions) WithDefaults() FleetOptions {
	if o.Teams <= 0 {
		o.Teams = 2000
	}
	if o.TestTeamID == 0 {
		o.TestTeamID = 2
	}
	if o.TestFlags == 0 {
		o.TestFlags = 900
	}
	if o.TestCohorts == 0 {
		o.TestCohorts = 6800
	}
	if o.TestCohortBytes == 0 {
		o.TestCohortBytes = 64 << 10
	}
	return o
}

// Fleet is every simulated team, in id order.
type Fleet struct {
	Teams []*Team
	byID  map[int64]*Team
	// cumulative activity weights for picking the team a change lands on.
	cum  []float64
	Test *Team
}

// NewFleet generates a fleet: flag counts Pareto-distributed (most teams have a handful,
// a few approach PostHog's observed maximum of 1,033), cohorts a fraction of flags,
// filter sizes log-normal around a few hundred bytes, and one test-automation team.
func NewFleet(o FleetOptions) *Fleet {
	o = o.WithDefaults()
	rng := rand.New(rand.NewPCG(o.Seed, 0x666c656574))
	f := &Fleet{byID: map[int64]*Team{}}
	id := int64(1)
	for len(f.Teams) < o.Teams {
		if id == o.TestTeamID {
			t := &Team{
				ID: id, ProjectID: id, Name: "test-automation (internal)",
				Flags: o.TestFlags, Cohorts: o.TestCohorts, FlagBytes: 1800, CohortBytes: o.TestCohortBytes,
				GroupTypes: 3, Activity: 0, TestAutomation: true, UpdatedAt: o.Start,
			}
			f.add(t)
			f.Test = t
			id++
			continue
		}
		flags := int64(math.Min(1033, math.Floor(1/math.Pow(1-rng.Float64(), 1/1.16))))
		cohorts := int64(math.Floor(float64(flags) * rng.Float64() * 0.4))
		fb := int64(math.Min(385<<10, math.Exp(rng.NormFloat64()*0.9+math.Log(380))))
		f.add(&Team{
			ID: id, ProjectID: id, Name: fmt.Sprintf("team-%d", id),
			Flags: flags, Cohorts: cohorts, FlagBytes: fb,
			CohortBytes: int64(200 + rng.IntN(1800)), GroupTypes: int64(rng.IntN(4)),
			// busier teams have more flags; sub-linear so the biggest do not dominate.
			Activity:  math.Pow(float64(flags), 0.7) * (0.2 + rng.Float64()),
			UpdatedAt: o.Start,
		})
		id++
	}
	var sum float64
	f.cum = make([]float64, len(f.Teams))
	for i, t := range f.Teams {
		sum += t.Activity
		f.cum[i] = sum
	}
	return f
}

func (f *Fleet) add(t *Team) {
	f.Teams = append(f.Teams, t)
	f.byID[t.ID] = t
}

// Team returns a team by id.
func (f *Fleet) Team(id int64) (*Team, bool) {
	t, ok := f.byID[id]
	return t, ok
}

// pick returns the team a random change lands on, weighted by activity.
func (f *Fleet) pick(rng *rand.Rand) *Team {
	x := rng.Float64() * f.cum[len(f.cum)-1]
	return f.Teams[sort.SearchFloat64s(f.cum, x)]
}

// Sizes returns every team's size, keyed by id.
func (f *Fleet) Sizes(at time.Time) map[int64]snapshot.TeamSize {
	out := make(map[int64]snapshot.TeamSize, len(f.Teams))
	for _, t := range f.Teams {
		out[t.ID] = t.Size(at)
	}
	return out
}

// FlagCohort is the cohort flag i's filters name (0: none), without generating them.
func (f *Fleet) FlagCohort(seed uint64, t *Team, i int64) int64 {
	_, cohort := flagHead(flagRand(seed, t, i), t)
	return cohort
}

func flagRand(seed uint64, t *Team, i int64) *rand.Rand {
	return rand.New(rand.NewPCG(seed^uint64(t.ID)<<20, uint64(i)))
}

// flagHead draws the first part of a flag's filters: its rollout and its cohort.
func flagHead(rng *rand.Rand, t *Team) (rollout int, cohort int64) {
	rollout = []int{100, 50, 20, 10, 5}[rng.IntN(5)]
	if t.Cohorts > 0 && rng.IntN(3) == 0 {
		cohort = 1 + rng.Int64N(t.Cohorts)
	}
	return rollout, cohort
}

// FlagFilters returns the filters JSON of the team's flag i (0-based), in the shape
// PostHog stores (posthog_flags.md §2a): release conditions on person properties,
// cohort conditions, an occasional multivariate split and payloads. The same team, flag
// and seed always give the same JSON; its size is near the team's FlagBytes.
func (f *Fleet) FlagFilters(seed uint64, t *Team, i int64) json.RawMessage {
	rng := flagRand(seed, t, i)
	type prop struct {
		Key      string `json:"key"`
		Type     string `json:"type"`
		Value    any    `json:"value"`
		Operator string `json:"operator,omitempty"`
	}
	type group struct {
		Properties        []prop  `json:"properties"`
		RolloutPercentage int     `json:"rollout_percentage"`
		Variant           *string `json:"variant"`
	}
	type variant struct {
		Key               string  `json:"key"`
		Name              *string `json:"name"`
		RolloutPercentage int     `json:"rollout_percentage"`
	}
	type multivariate struct {
		Variants []variant `json:"variants"`
	}
	type filters struct {
		Groups                    []group           `json:"groups"`
		Multivariate              *multivariate     `json:"multivariate"`
		AggregationGroupTypeIndex *int              `json:"aggregation_group_type_index"`
		Payloads                  map[string]string `json:"payloads"`
	}
	fl := filters{Payloads: map[string]string{}}
	rollout, cohort := flagHead(rng, t)
	g := group{RolloutPercentage: rollout}
	if cohort > 0 {
		g.Properties = append(g.Properties, prop{Key: "id", Type: "cohort", Value: cohort})
	}
	// person-property conditions, as many values as it takes to reach the team's size.
	var emails []string
	for n := int64(0); n < t.FlagBytes; n += 24 {
		emails = append(emails, fmt.Sprintf("user%d@example%d.com", rng.IntN(100000), rng.IntN(50)))
	}
	g.Properties = append(g.Properties, prop{Key: "email", Type: "person", Value: emails, Operator: "exact"})
	fl.Groups = append(fl.Groups, g)
	if rng.IntN(5) == 0 {
		fl.Multivariate = &multivariate{Variants: []variant{{Key: "control", RolloutPercentage: 50}, {Key: "test", RolloutPercentage: 50}}}
		fl.Payloads["control"] = `{"color":"blue"}`
	} else {
		fl.Payloads["true"] = `{"enabled":true}`
	}
	b, _ := json.Marshal(fl)
	return b
}
