package posthog

// cohort is one posthog_cohort row as far as sizing needs it.
type cohort struct {
	id      int64
	team    int64
	deleted bool
	static  bool
	bytes   int64
	refs    []int64 // cohorts its filters depend on
}

// maxCohortDepth is PostHog's limit on cohort-on-cohort nesting when it loads the
// cohorts a payload needs.
const maxCohortDepth = 20

// cohortUse is what a team's flags pull in through cohorts.
type cohortUse struct {
	count, bytes int64
	// missing counts references to cohorts that do not exist (or are not the team's);
	// cycles counts dependency edges that close a loop.
	missing, cycles int64
}

// closeCohorts walks from the cohorts a team's flags reference through the cohorts they
// depend on, as PostHog does when it builds the definitions payload: static and deleted
// cohorts are not shipped, nesting is cut at maxCohortDepth. A cycle is counted, never
// followed twice.
func closeCohorts(direct []int64, all map[int64]*cohort) cohortUse {
	var use cohortUse
	const (
		white = iota
		grey  // on the current path
		black // done
	)
	color := map[int64]int{}
	var visit func(id int64, depth int)
	visit = func(id int64, depth int) {
		c, ok := all[id]
		if !ok {
			use.missing++
			color[id] = black
			return
		}
		color[id] = grey
		if !c.static && !c.deleted {
			use.count++
			use.bytes += c.bytes
		}
		if depth < maxCohortDepth {
			for _, r := range c.refs {
				switch color[r] {
				case white:
					visit(r, depth+1)
				case grey:
					use.cycles++
				}
			}
		}
		color[id] = black
	}
	for _, id := range direct {
		if color[id] == white {
			visit(id, 1)
		}
	}
	return use
}
