package posthog

// Kinds of bad flag data, as the team-size measurement reports them
// (snapshot.TeamSize.BadReasons) and the seeder plants them (seed.Result.BadTeams).
// PostHog's writer skips or fails on each of them; the detectors and the dashboard show
// them by these names.
const (
	BadNullFilters      = "null filters"
	BadNonObjectFilters = "non-object filters"
	BadCohortCycle      = "cohort cycle"
	BadMissingCohort    = "reference to a missing cohort"
	BadCohortReference  = "cohort reference is not an id"
)
