package rebuild

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// MaxCohortDepth bounds nested cohort-on-cohort dependencies in flags.json, as
// PostHog's breadth-first load does (_MAX_COHORT_DEPENDENCY_DEPTH).
const MaxCohortDepth = 20

// cohortBatch bounds the ids of one cohort query. A query costs a round trip and a
// plan: 2,000 ids took the bench team's two cohort walks from 55 to 40 ms against 500.
const cohortBatch = 2000

// cohortDocs are one cohort row's JSON columns, parsed.
type cohortDocs struct {
	filters, query, groups          pyjson.Doc
	hasFilters, hasQuery, hasGroups bool
}

func (cd *cohortDocs) parse(c *CohortRow) error {
	var err error
	if cd.hasFilters, err = parseOpt(&cd.filters, c.Filters); err != nil {
		return fmt.Errorf("cohort %d filters: %w", c.ID, err)
	}
	if cd.hasQuery, err = parseOpt(&cd.query, c.Query); err != nil {
		return fmt.Errorf("cohort %d query: %w", c.ID, err)
	}
	if cd.hasGroups, err = parseOpt(&cd.groups, c.Groups); err != nil {
		return fmt.Errorf("cohort %d groups: %w", c.ID, err)
	}
	return nil
}

func parseOpt(d *pyjson.Doc, b []byte) (bool, error) {
	if b == nil {
		return false, nil
	}
	return true, d.Parse(b)
}

func (cd *cohortDocs) filtersNode() pyjson.Node {
	if !cd.hasFilters {
		return pyjson.Node{}
	}
	return cd.filters.Root()
}

func (cd *cohortDocs) groupsNode() pyjson.Node {
	if !cd.hasGroups {
		return pyjson.Node{}
	}
	return cd.groups.Root()
}

// properties is Cohort.properties of the row.
func (cd *cohortDocs) properties() (*pyGroup, error) {
	var pp propParser
	return pp.cohortProperties(cd.filtersNode(), cd.groupsNode())
}

// cohortCacheBytes bounds the printed cohorts a build keeps from its walk for printing;
// past it the cohorts are read again when printed. A variable for tests.
var cohortCacheBytes = 4 << 20

// printCache keeps printed cohorts within cohortCacheBytes.
type printCache struct {
	m     map[int64][]byte
	bytes int
}

func (c *printCache) put(id int64, b []byte) {
	if c.bytes+len(b) > cohortCacheBytes {
		return
	}
	if c.m == nil {
		c.m = map[int64][]byte{}
	}
	c.m[id] = b
	c.bytes += len(b)
}

func (c *printCache) get(id int64) ([]byte, bool) {
	b, ok := c.m[id]
	return b, ok
}

// flagsCohorts are the cohorts flags.json carries: the ones its active flags name and
// their nested dependencies, static ones included, level by level to MaxCohortDepth.
type flagsCohorts struct {
	levels [][]int64
	// printed holds cohorts already printed (nil: left out of flags.json).
	printed printCache
}

func walkFlagsCohorts(ctx context.Context, rd TeamReader, seeds []int64, st *BuildStats) (*flagsCohorts, error) {
	out := &flagsCohorts{}
	seen := map[int64]struct{}{}
	for _, id := range seeds {
		seen[id] = struct{}{}
	}
	edges := map[int64][]int64{}
	frontier := slices.Clone(seeds)
	var docs cohortDocs
	for depth := 0; len(frontier) > 0; depth++ {
		if depth >= MaxCohortDepth {
			st.problem("cohort nesting deeper than %d levels (cohorts %v not followed)", MaxCohortDepth, frontier[:min(len(frontier), 5)])
			break
		}
		var level, next []int64
		err := eachCohort(ctx, rd, frontier, false, func(c *CohortRow) error {
			level = append(level, c.ID)
			if err := docs.parse(c); err != nil {
				st.problem("cohort %d left out of flags.json: %v", c.ID, err)
				out.printed.put(c.ID, nil)
				return nil
			}
			if p := checkCohortRow(c, &docs); p != nil {
				st.problem("cohort %d left out of flags.json: %s", c.ID, p.detail)
				out.printed.put(c.ID, nil)
			} else {
				out.printed.put(c.ID, appendFlagsCohort(nil, c, &docs))
			}
			props, err := docs.properties()
			if err != nil {
				st.problem("cohort %d: %v", c.ID, err)
				return nil
			}
			cohortRefsStrict(props, c.ID, func(dep int64) {
				edges[c.ID] = append(edges[c.ID], dep)
				if _, ok := seen[dep]; !ok {
					seen[dep] = struct{}{}
					next = append(next, dep)
				}
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
		slices.Sort(level)
		out.levels = append(out.levels, level)
		slices.Sort(next)
		frontier = next
	}
	reportCycle(edges, st)
	return out, nil
}

func eachCohort(ctx context.Context, rd TeamReader, ids []int64, project bool, fn func(*CohortRow) error) error {
	for start := 0; start < len(ids); start += cohortBatch {
		if err := rd.Cohorts(ctx, ids[start:min(start+cohortBatch, len(ids))], project, fn); err != nil {
			return err
		}
	}
	return nil
}

// reportCycle reports one cohort dependency cycle; PostHog's walks stop at cohorts they
// have seen, so a cycle is harmless to the payloads but worth knowing.
func reportCycle(edges map[int64][]int64, st *BuildStats) {
	if cycle := findCycle(edges); cycle != nil {
		parts := make([]string, len(cycle))
		for i, id := range cycle {
			parts[i] = strconv.FormatInt(id, 10)
		}
		st.problem("cohort cycle %s", strings.Join(parts, " -> "))
	}
}

// defCohorts is the definitions' view of cohorts: the non-deleted cohorts of the
// project the flags name, with their nested dependencies (static cohorts end a walk:
// they have no conditions), and which of them cannot be parsed.
type defCohorts struct {
	known     map[int64]uint8 // loaded cohorts: cohortStatic, cohortBroken
	edges     map[int64][]int64
	reachBad  map[int64]bool
	brokenWhy map[int64]string
	// printed holds to_dict() of cohorts already printed.
	printed printCache
}

const (
	cohortStatic uint8 = 1 << iota
	cohortBroken
)

func walkDefCohorts(ctx context.Context, rd TeamReader, seeds []int64, st *BuildStats) (*defCohorts, error) {
	dc := &defCohorts{known: map[int64]uint8{}, edges: map[int64][]int64{}, reachBad: map[int64]bool{}, brokenWhy: map[int64]string{}}
	seen := map[int64]struct{}{}
	for _, id := range seeds {
		seen[id] = struct{}{}
	}
	frontier := slices.Clone(seeds)
	var docs cohortDocs
	for len(frontier) > 0 {
		var next []int64
		err := eachCohort(ctx, rd, frontier, true, func(c *CohortRow) error {
			var f uint8
			if c.IsStatic {
				dc.known[c.ID] = cohortStatic
				return nil
			}
			var props *pyGroup
			err := docs.parse(c)
			if err == nil {
				props, err = docs.properties()
			}
			if err != nil {
				f |= cohortBroken
				dc.brokenWhy[c.ID] = err.Error()
				st.problem("cohort %d: %v", c.ID, err)
			} else {
				dc.printed.put(c.ID, props.appendDict(nil))
				cohortRefsLoose(props, func(dep int64) {
					dc.edges[c.ID] = append(dc.edges[c.ID], dep)
					if _, ok := seen[dep]; !ok {
						seen[dep] = struct{}{}
						next = append(next, dep)
					}
				})
			}
			dc.known[c.ID] = f
			return nil
		})
		if err != nil {
			return nil, err
		}
		slices.Sort(next)
		frontier = next
	}
	// A cohort whose walk reaches a broken one raises in get_all_cohort_dependencies.
	rev := map[int64][]int64{}
	for from, tos := range dc.edges {
		for _, to := range tos {
			rev[to] = append(rev[to], from)
		}
	}
	var stack []int64
	for id, f := range dc.known {
		if f&cohortBroken != 0 {
			dc.reachBad[id] = true
			stack = append(stack, id)
		}
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, from := range rev[id] {
			if !dc.reachBad[from] {
				dc.reachBad[from] = true
				stack = append(stack, from)
			}
		}
	}
	return dc, nil
}

// brokenRef is why a flag naming cohort id is dropped from the definitions, or "".
func (dc *defCohorts) brokenRef(id int64) string {
	if !dc.reachBad[id] {
		return ""
	}
	return fmt.Sprintf("cohort %d or a cohort it depends on cannot be parsed", id)
}

// shipped are the cohorts the definitions carry for the kept flags' references:
// non-static, parseable, ordered as their ids sort as strings.
func (dc *defCohorts) shipped(kept []int64) []int64 {
	seen := map[int64]struct{}{}
	stack := slices.Clone(kept)
	var out []int64
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[id]; ok {
			continue
		}
		seen[id] = struct{}{}
		f, loaded := dc.known[id]
		if !loaded || dc.reachBad[id] {
			continue
		}
		if f&cohortStatic == 0 {
			out = append(out, id)
		}
		stack = append(stack, dc.edges[id]...)
	}
	slices.SortFunc(out, func(a, b int64) int { return strings.Compare(strconv.FormatInt(a, 10), strconv.FormatInt(b, 10)) })
	return out
}

// appendFlagsCohort prints one cohort as flags.json carries it (_serialize_cohort).
// groups are printed as Cohort.properties leaves them: the legacy-groups repair edits
// the cohort's groups in place before PostHog serializes it.
func appendFlagsCohort(dst []byte, c *CohortRow, docs *cohortDocs) []byte {
	dst = append(dst, `{"cohort_type": `...)
	dst = appendOptString(dst, c.CohortType)
	dst = appendOptInt(append(dst, `, "count": `...), c.Count)
	dst = appendOptInt(append(dst, `, "created_by_id": `...), c.CreatedByID)
	dst = strconv.AppendBool(append(dst, `, "deleted": `...), c.Deleted)
	dst = pyjson.AppendString(append(dst, `, "description": `...), c.Description)
	dst = strconv.AppendInt(append(dst, `, "errors_calculating": `...), c.ErrorsCalculating, 10)
	dst = appendOptDoc(append(dst, `, "filters": `...), &docs.filters, docs.hasFilters, nil)
	dst = append(dst, `, "groups": `...)
	dst = appendRepairedGroups(dst, docs)
	dst = strconv.AppendInt(append(dst, `, "id": `...), c.ID, 10)
	dst = strconv.AppendBool(append(dst, `, "is_calculating": `...), c.IsCalculating)
	dst = strconv.AppendBool(append(dst, `, "is_static": `...), c.IsStatic)
	dst = appendOptTime(append(dst, `, "last_backfill_events_at": `...), c.LastBackfillEventsAt)
	dst = appendOptTime(append(dst, `, "last_backfill_person_properties_at": `...), c.LastBackfillPersonPropertiesAt)
	dst = appendOptString(append(dst, `, "name": `...), c.Name)
	dst = appendOptInt(append(dst, `, "pending_version": `...), c.PendingVersion)
	dst = appendOptDoc(append(dst, `, "query": `...), &docs.query, docs.hasQuery, nil)
	dst = strconv.AppendInt(append(dst, `, "team_id": `...), c.TeamID, 10)
	dst = appendOptInt(append(dst, `, "version": `...), c.Version)
	return append(dst, '}')
}

// appendRepairedGroups prints cohort.groups after Cohort.properties ran over it (only
// when filters are empty): list properties without a type, or typed "event", become
// "person", and an old {key: value} mapping becomes a list of person properties.
func appendRepairedGroups(dst []byte, docs *cohortDocs) []byte {
	if !docs.hasGroups {
		return append(dst, "null"...)
	}
	g := docs.groups.Root()
	if pyTruthy(docs.filtersNode()) || g.Kind() != pyjson.Array {
		return docs.groups.Append(dst, g, nil)
	}
	if _, err := docs.properties(); err != nil {
		return docs.groups.Append(dst, g, nil)
	}
	ov := &memberOverrides{m: map[pyjson.Node][]pyjson.Member{}}
	g.Elems(func(grp pyjson.Node) bool {
		props := grp.Get("properties")
		if !pyTruthy(props) {
			// A group of neither kind ends Cohort.properties: later groups stay as they are.
			return pyTruthy(grp.Get("action_id")) || pyTruthy(grp.Get("event_id"))
		}
		switch props.Kind() {
		case pyjson.Array:
			props.Elems(func(p pyjson.Node) bool {
				if legacyPersonType(p) != "" {
					ov.m[p] = []pyjson.Member{{Key: "type", Value: []byte(`"person"`)}}
				}
				return true
			})
		case pyjson.Object:
			if props.Has("type") || props.Has("values") {
				return true
			}
			list := []byte{'['}
			first := true
			eachDictItem(props, func(k string, v pyjson.Node) bool {
				if !first {
					list = append(list, ", "...)
				}
				first = false
				list = pyjson.AppendString(append(list, `{"key": `...), k)
				list = append(list, `, "type": "person", "value": `...)
				list = append(pyjson.Print(list, v), '}')
				return true
			})
			ov.m[grp] = []pyjson.Member{{Key: "properties", Value: append(list, ']')}}
		}
		return true
	})
	return docs.groups.Append(dst, g, ov)
}

type memberOverrides struct {
	m map[pyjson.Node][]pyjson.Member
}

func (o *memberOverrides) Members(n pyjson.Node) []pyjson.Member { return o.m[n] }

func appendOptDoc(dst []byte, d *pyjson.Doc, ok bool, ov pyjson.Overrides) []byte {
	if !ok {
		return append(dst, "null"...)
	}
	return d.Append(dst, d.Root(), ov)
}

func appendOptString(dst []byte, s *string) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	return pyjson.AppendString(dst, *s)
}

func appendOptInt(dst []byte, v *int64) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	return strconv.AppendInt(dst, *v, 10)
}

func appendOptBool(dst []byte, v *bool) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	return strconv.AppendBool(dst, *v)
}

// appendOptTime prints datetime.isoformat() of a UTC timestamp, or null.
func appendOptTime(dst []byte, t *time.Time) []byte {
	if t == nil {
		return append(dst, "null"...)
	}
	u := t.UTC()
	dst = append(dst, '"')
	dst = u.AppendFormat(dst, "2006-01-02T15:04:05")
	if us := u.Nanosecond() / 1000; us != 0 {
		dst = fmt.Appendf(dst, ".%06d", us)
	}
	return append(dst, `+00:00"`...)
}

// findCycle returns one dependency cycle (first node repeated at the end), or nil.
func findCycle(edges map[int64][]int64) []int64 {
	const (
		white = iota
		grey
		black
	)
	color := make(map[int64]int, len(edges))
	var stack []int64
	var found []int64
	var visit func(id int64) bool
	visit = func(id int64) bool {
		color[id] = grey
		stack = append(stack, id)
		for _, dep := range edges[id] {
			switch color[dep] {
			case grey:
				i := slices.Index(stack, dep)
				found = append(slices.Clone(stack[i:]), dep)
				return true
			case white:
				if visit(dep) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[id] = black
		return false
	}
	keys := make([]int64, 0, len(edges))
	for k := range edges {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if color[k] == white && visit(k) {
			return found
		}
	}
	return nil
}
