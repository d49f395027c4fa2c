package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flagwarden/flagwarden/internal/cachekeys"
	"github.com/flagwarden/flagwarden/internal/posthog"
	"github.com/flagwarden/flagwarden/rebuild"
)

// TeamLister pages over every team id in id order.
type TeamLister interface {
	// TeamIDs returns up to limit team ids greater than after, ascending.
	TeamIDs(ctx context.Context, after int64, limit int) ([]int64, error)
}

// PGTeams lists PostHog's posthog_team: by default the teams that have ever had a
// flag (a row in posthog_featureflag, deleted or not), as PostHog's own verification
// and `flagwarden rebuild --all` scope themselves; with every set, all of them.
type PGTeams struct {
	pool  *pgxpool.Pool
	every bool
}

// NewPGTeams lists the teams in pool's posthog_team.
func NewPGTeams(pool *pgxpool.Pool, every bool) *PGTeams { return &PGTeams{pool: pool, every: every} }

// TeamIDs implements TeamLister (posthog.TeamIDsAfter).
func (p *PGTeams) TeamIDs(ctx context.Context, after int64, limit int) ([]int64, error) {
	return posthog.TeamIDsAfter(ctx, p.pool, after, limit, p.every)
}

// teamPage is how many team ids one listing query returns.
const teamPage = 500

// Pass checks up to limit teams with ids greater than after, in id order, and adds
// them to rep; fn, if set, sees each team's checks as they are made. It returns the
// last team checked and whether the end of the team list was reached. Teams deleted
// meanwhile are skipped.
func (v *Verifier) Pass(ctx context.Context, teams TeamLister, after int64, limit int, rep *Report, fn func([]Check)) (int64, bool, error) {
	done := 0
	for done < limit {
		want := min(teamPage, limit-done)
		ids, err := teams.TeamIDs(ctx, after, want)
		if err != nil {
			return after, false, err
		}
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				return after, false, err
			}
			checks, err := v.Team(ctx, id)
			after = id
			done++
			if errors.Is(err, rebuild.ErrUnknownTeam) {
				continue
			}
			if err != nil {
				return after, false, err
			}
			rep.Add(checks)
			if fn != nil {
				fn(checks)
			}
		}
		if len(ids) < want {
			return after, true, nil
		}
	}
	return after, false, nil
}

// Row counts one tier and kind's outcomes.
type Row struct {
	Tier     string          `json:"tier"`
	Kind     cachekeys.Kind  `json:"kind"`
	File     string          `json:"file"`
	Checked  int             `json:"checked"`
	Outcomes map[Outcome]int `json:"outcomes"`
	// ETag and Expiry count the side checks' results other than ok.
	ETag   map[string]int `json:"etag,omitempty"`
	Expiry map[string]int `json:"expiry,omitempty"`
}

// Report sums up checks: per tier and kind counts, and the wrong checks (the first
// MaxProblems of them, so that a report of every team stays small).
type Report struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Teams      int       `json:"teams"`
	Rows       []Row     `json:"summary"`
	// Problems are the wrong checks, in the order found; ProblemCount counts them all.
	Problems     []Check `json:"problems"`
	ProblemCount int     `json:"problem_count"`
	// Failures counts checks that could not be made (outcome error).
	Failures int `json:"failures"`
	// MaxProblems bounds Problems (default 1000).
	MaxProblems int `json:"-"`
	rows        map[string]*Row
}

// Add counts one team's checks.
func (r *Report) Add(checks []Check) {
	if r.rows == nil {
		r.rows = map[string]*Row{}
	}
	r.Teams++
	for _, c := range checks {
		k := c.Tier + "/" + string(c.Kind)
		row := r.rows[k]
		if row == nil {
			row = &Row{Tier: c.Tier, Kind: c.Kind, File: c.Kind.File(), Outcomes: map[Outcome]int{}}
			r.rows[k] = row
		}
		row.Checked++
		row.Outcomes[c.Outcome]++
		if c.ETag != "" && c.ETag != CheckOK {
			if row.ETag == nil {
				row.ETag = map[string]int{}
			}
			row.ETag[c.ETag]++
		}
		if c.Expiry != "" && c.Expiry != CheckOK {
			if row.Expiry == nil {
				row.Expiry = map[string]int{}
			}
			row.Expiry[c.Expiry]++
		}
		if c.Outcome == Failed {
			r.Failures++
		}
		if c.Wrong() {
			r.ProblemCount++
			if len(r.Problems) < cmp.Or(r.MaxProblems, 1000) {
				r.Problems = append(r.Problems, c)
			}
		}
	}
	r.Rows = r.Rows[:0]
	for _, row := range r.rows {
		r.Rows = append(r.Rows, *row)
	}
	sort.Slice(r.Rows, func(i, j int) bool {
		if r.Rows[i].Tier != r.Rows[j].Tier {
			return r.Rows[i].Tier == TierRedis
		}
		return r.Rows[i].Kind < r.Rows[j].Kind
	})
}

// Wrong reports whether any cache was found wrong.
func (r *Report) Wrong() bool { return r.ProblemCount > r.Failures }

// WriteTable prints the summary as a table.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"tier", "file", "checked"}
	for _, o := range Outcomes {
		head = append(head, string(o))
	}
	head = append(head, "etag!", "expiry!")
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, row := range r.Rows {
		cells := []string{row.Tier, row.File, fmt.Sprint(row.Checked)}
		for _, o := range Outcomes {
			cells = append(cells, fmt.Sprint(row.Outcomes[o]))
		}
		cells = append(cells, fmt.Sprint(sum(row.ETag)), fmt.Sprint(sum(row.Expiry)))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	_ = tw.Flush()
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
