package rebuild

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// MaxCohortDepth bounds nested cohort-on-cohort dependencies, as PostHog's BFS does.
const MaxCohortDepth = 20

// maxProblems bounds the problems one build reports; the count is still exact.
const maxProblems = 20

// BuilderOptions configure the streaming builder.
type BuilderOptions struct {
	// PageSize is how many flags one query reads. Default 500.
	PageSize int
	// FailOnMalformed fails the build on the first malformed flag or cohort cycle
	// instead of skipping the flag and reporting it.
	FailOnMalformed bool
	// Progress, if set, is called after every page.
	Progress func(BuildProgress)
}

// BuildProgress is reported as a build streams.
type BuildProgress struct {
	Rows  int64
	Bytes int64
}

// BuildStats is what one build produced.
type BuildStats struct {
	Team     TeamInfo
	Flags    int64
	Cohorts  int64
	Skipped  int64
	Problems []string
	// ProblemCount counts every problem, also those beyond the reported ones.
	ProblemCount int64
}

func (s *BuildStats) problem(format string, args ...any) {
	s.ProblemCount++
	if len(s.Problems) < maxProblems {
		s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
	}
}

// MalformedError is a build failed because of bad data, with FailOnMalformed.
type MalformedError struct {
	TeamID int64
	What   string
}

func (e *MalformedError) Error() string { return fmt.Sprintf("team %d: %s", e.TeamID, e.What) }

// ErrMalformed matches every MalformedError with errors.Is.
var ErrMalformed = errors.New("malformed flag data")

// Is lets errors.Is(err, ErrMalformed) match.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// Builder streams a team's flags into both cache payloads in one pass. Its memory is
// one flag row, two small write buffers and a few integers per flag (id and flag
// dependencies), whatever the team's size.
type Builder struct {
	opts BuilderOptions
}

// NewBuilder returns a builder.
func NewBuilder(opts BuilderOptions) *Builder {
	opts.PageSize = cmp.Or(opts.PageSize, 500)
	return &Builder{opts: opts}
}

// out is a small write buffer in front of a payload stream.
type out struct {
	w   io.Writer
	buf []byte
	n   int64
	err error
}

const outFlush = 32 << 10

func (o *out) write(b []byte) {
	o.buf = append(o.buf, b...)
	if len(o.buf) >= outFlush {
		o.flush()
	}
}

func (o *out) str(s string) { o.write([]byte(s)) }

func (o *out) flush() {
	if o.err == nil && len(o.buf) > 0 {
		_, o.err = o.w.Write(o.buf)
		o.n += int64(len(o.buf))
	}
	o.buf = o.buf[:0]
}

// Build reads team teamID from src and writes the /flags payload to flagsW and the
// local-evaluation payload to defsW. On error the writers hold a partial payload that
// the caller must discard.
func (b *Builder) Build(ctx context.Context, src FlagSource, teamID int64, flagsW, defsW io.Writer) (BuildStats, error) {
	var st BuildStats
	team, err := src.Team(ctx, teamID)
	if err != nil {
		return st, err
	}
	st.Team = team
	groupTypes, err := src.GroupTypes(ctx, team.ProjectID)
	if err != nil {
		return st, err
	}
	fo := &out{w: flagsW, buf: make([]byte, 0, outFlush*2)}
	do := &out{w: defsW, buf: make([]byte, 0, outFlush*2)}
	fo.str(`{"flags":[`)
	do.str(`{"flags":[`)

	var (
		ids       []int64               // every written flag's id
		deps      = map[int64][]int64{} // only flags that depend on other flags
		cohortRef = map[int64]struct{}{}
		scratch   = make([]byte, 0, 4096)
		after     string
		rows      int64
		scan      filterScan
	)
	for {
		n, err := src.Flags(ctx, teamID, after, b.opts.PageSize, func(f *FlagRow) error {
			after = f.Key
			rows++
			scan.reset()
			if reason := scan.inspect(f.Filters); reason != "" {
				st.Skipped++
				st.problem("flag %d (%s): %s", f.ID, f.Key, reason)
				if b.opts.FailOnMalformed {
					return &MalformedError{TeamID: teamID, What: fmt.Sprintf("flag %d (%s): %s", f.ID, f.Key, reason)}
				}
				return nil
			}
			if f.IsRemoteConfiguration && f.HasEncryptedPayloads {
				return nil // served by the remote-config endpoint, never evaluated locally
			}
			for _, c := range scan.cohorts {
				cohortRef[c] = struct{}{}
			}
			if len(scan.flagDeps) > 0 {
				deps[f.ID] = slices.Clone(scan.flagDeps)
			}
			ids = append(ids, f.ID)
			sep := ","
			if st.Flags == 0 {
				sep = ""
			}
			st.Flags++
			scratch = appendFlag(append(scratch[:0], sep...), f)
			fo.write(scratch)
			do.write(scratch)
			return cmp.Or(fo.err, do.err)
		})
		if err != nil {
			return st, err
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if b.opts.Progress != nil {
			b.opts.Progress(BuildProgress{Rows: rows, Bytes: fo.n + do.n + int64(len(fo.buf)+len(do.buf))})
		}
		if n < b.opts.PageSize {
			break
		}
	}
	fo.str(`],"evaluation_metadata":`)
	do.str(`],"group_type_mapping":{`)
	if err := writeEvaluationMetadata(fo, ids, deps, &st); err != nil {
		return st, &MalformedError{TeamID: teamID, What: err.Error()}
	}
	ids, deps = nil, nil
	for i, g := range groupTypes {
		if i > 0 {
			do.str(",")
		}
		scratch = appendString(strconv.AppendInt(append(scratch[:0], '"'), int64(g.Index), 10), `":`, g.Type)
		do.write(scratch)
	}
	fo.str(`,"cohorts":[`)
	do.str(`},"cohorts":{`)

	included, err := resolveCohorts(ctx, src, teamID, cohortRef, &st)
	if err != nil {
		return st, err
	}
	if b.opts.FailOnMalformed && st.ProblemCount > 0 {
		return st, &MalformedError{TeamID: teamID, What: st.Problems[len(st.Problems)-1]}
	}
	for start := 0; start < len(included); start += 500 {
		batch := included[start:min(start+500, len(included))]
		err := src.Cohorts(ctx, teamID, batch, func(c *CohortRow) error {
			sep := ","
			if st.Cohorts == 0 {
				sep = ""
			}
			st.Cohorts++
			scratch = appendCohort(append(scratch[:0], sep...), c)
			fo.write(scratch)
			scratch = append(strconv.AppendInt(append(append(scratch[:0], sep...), '"'), c.ID, 10), `":`...)
			props := gjson.GetBytes(c.Filters, "properties")
			if props.IsObject() {
				scratch = append(scratch, props.Raw...)
			} else {
				scratch = append(scratch, `{"type":"AND","values":[]}`...)
			}
			do.write(scratch)
			return cmp.Or(fo.err, do.err)
		})
		if err != nil {
			return st, err
		}
	}
	fo.str("]}")
	do.str("}}")
	fo.flush()
	do.flush()
	if err := cmp.Or(fo.err, do.err); err != nil {
		return st, err
	}
	return st, nil
}

// filterScan validates one flag's filters and collects what it references, reusing
// its slices from flag to flag.
type filterScan struct {
	cohorts  []int64
	flagDeps []int64
	reason   string
}

func (s *filterScan) reset() {
	s.cohorts, s.flagDeps, s.reason = s.cohorts[:0], s.flagDeps[:0], ""
}

// inspect returns why filters are malformed, or "" when they are usable.
func (s *filterScan) inspect(filters []byte) string {
	if filters == nil {
		return "filters are NULL"
	}
	if !gjson.ValidBytes(filters) {
		return "filters are not valid JSON"
	}
	root := gjson.ParseBytes(filters)
	if !root.IsObject() {
		return "filters are " + jsonKind(root) + ", not an object"
	}
	for _, field := range []string{"groups", "super_groups", "holdout_groups"} {
		groups := root.Get(field)
		if !groups.Exists() || groups.Type == gjson.Null {
			continue
		}
		if !groups.IsArray() {
			return "filters." + field + " is " + jsonKind(groups) + ", not an array"
		}
		groups.ForEach(func(_, g gjson.Result) bool {
			if !g.IsObject() {
				s.reason = "filters." + field + " holds " + jsonKind(g) + ", not a condition group"
				return false
			}
			props := g.Get("properties")
			if props.Exists() && props.Type != gjson.Null && !props.IsArray() {
				s.reason = "filters." + field + "[].properties is " + jsonKind(props) + ", not an array"
				return false
			}
			props.ForEach(func(_, p gjson.Result) bool {
				switch p.Get("type").String() {
				case "cohort":
					id, ok := jsonInt(p.Get("value"))
					if !ok {
						s.reason = "cohort condition value " + p.Get("value").Raw + " is not a cohort id"
						return false
					}
					s.cohorts = append(s.cohorts, id)
				case "flag":
					if id, ok := jsonInt(p.Get("key")); ok {
						s.flagDeps = append(s.flagDeps, id)
					}
				}
				return true
			})
			return s.reason == ""
		})
		if s.reason != "" {
			return s.reason
		}
	}
	return ""
}

func jsonKind(r gjson.Result) string {
	switch {
	case r.IsObject():
		return "an object"
	case r.IsArray():
		return "an array"
	case r.Type == gjson.String:
		return "a string"
	case r.Type == gjson.Number:
		return "a number"
	case r.Type == gjson.True || r.Type == gjson.False:
		return "a boolean"
	}
	return "null"
}

// jsonInt reads an integer given as a JSON number or a numeric string.
func jsonInt(r gjson.Result) (int64, bool) {
	switch r.Type {
	case gjson.Number:
		if r.Num != float64(int64(r.Num)) {
			return 0, false
		}
		return int64(r.Num), true
	case gjson.String:
		v, err := strconv.ParseInt(r.Str, 10, 64)
		return v, err == nil
	}
	return 0, false
}

// resolveCohorts finds the referenced non-static, non-deleted cohorts and their nested
// dependencies breadth first to MaxCohortDepth, reports cycles and too-deep nesting,
// and returns the ids to ship, sorted. Only ids and edges are held.
func resolveCohorts(ctx context.Context, src FlagSource, teamID int64, refs map[int64]struct{}, st *BuildStats) ([]int64, error) {
	seen := make(map[int64]struct{}, len(refs))
	edges := map[int64][]int64{}
	var included []int64
	frontier := make([]int64, 0, len(refs))
	for id := range refs {
		frontier = append(frontier, id)
		seen[id] = struct{}{}
	}
	var scan filterScan
	for depth := 1; len(frontier) > 0; depth++ {
		if depth > MaxCohortDepth {
			slices.Sort(frontier)
			st.problem("cohort nesting deeper than %d levels (cohorts %v not followed)", MaxCohortDepth, frontier[:min(len(frontier), 5)])
			break
		}
		slices.Sort(frontier)
		var next []int64
		for start := 0; start < len(frontier); start += 500 {
			batch := frontier[start:min(start+500, len(frontier))]
			err := src.Cohorts(ctx, teamID, batch, func(c *CohortRow) error {
				if c.Deleted || c.IsStatic {
					return nil
				}
				included = append(included, c.ID)
				scan.reset()
				_ = scan.inspect([]byte(`{"groups":[` + "{\"properties\":" + cohortProps(c.Filters) + "}" + `]}`))
				for _, dep := range scan.cohorts {
					edges[c.ID] = append(edges[c.ID], dep)
					if _, ok := seen[dep]; !ok {
						seen[dep] = struct{}{}
						next = append(next, dep)
					}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		frontier = next
	}
	if cycle := findCycle(edges); cycle != nil {
		parts := make([]string, len(cycle))
		for i, id := range cycle {
			parts[i] = strconv.FormatInt(id, 10)
		}
		st.problem("cohort cycle %s", strings.Join(parts, " -> "))
	}
	slices.Sort(included)
	return included, nil
}

// cohortProps flattens a cohort's nested property groups into one property array so
// that filterScan finds the cohort references at any depth.
func cohortProps(filters []byte) string {
	var b strings.Builder
	b.WriteByte('[')
	first := true
	var walk func(r gjson.Result)
	walk = func(r gjson.Result) {
		if vals := r.Get("values"); vals.IsArray() {
			vals.ForEach(func(_, v gjson.Result) bool { walk(v); return true })
			return
		}
		if r.IsObject() {
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(r.Raw)
		}
	}
	walk(gjson.GetBytes(filters, "properties"))
	b.WriteByte(']')
	return b.String()
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

// writeEvaluationMetadata writes the dependency stages of the flags (Kahn's layering):
// stage 0 holds flags without flag dependencies, each later stage the flags whose
// dependencies are all in earlier stages. Flags depending on a missing flag, or on a
// cycle, are listed in flags_with_missing_deps.
func writeEvaluationMetadata(o *out, ids []int64, deps map[int64][]int64, st *BuildStats) error {
	slices.Sort(ids)
	has := func(id int64) bool { _, ok := slices.BinarySearch(ids, id); return ok }
	const (
		unknown = -1
		missing = -2
		onStack = -3
	)
	stage := make(map[int64]int, len(deps))
	var depth func(id int64) int
	depth = func(id int64) int {
		d, ok := deps[id]
		if !ok {
			if has(id) {
				return 0
			}
			return missing
		}
		if s, ok := stage[id]; ok {
			if s == onStack {
				st.problem("flag dependency cycle through flag %d", id)
				return missing
			}
			return s
		}
		stage[id] = onStack
		best := 0
		for _, dep := range d {
			s := depth(dep)
			if s == missing {
				best = missing
				break
			}
			best = max(best, s+1)
		}
		stage[id] = best
		return best
	}
	maxStage := 0
	for id := range deps {
		maxStage = max(maxStage, depth(id))
	}
	var b []byte
	b = append(b, `{"dependency_stages":[[`...)
	first := true
	for _, id := range ids {
		if _, ok := deps[id]; ok {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = strconv.AppendInt(b, id, 10)
		if len(b) > outFlush {
			o.write(b)
			b = b[:0]
		}
	}
	b = append(b, ']')
	byStage := make([][]int64, maxStage+1)
	var missingIDs []int64
	for id, s := range stage {
		if s < 0 {
			missingIDs = append(missingIDs, id)
			continue
		}
		byStage[s] = append(byStage[s], id)
	}
	for s := 1; s <= maxStage; s++ {
		if len(byStage[s]) == 0 {
			continue
		}
		slices.Sort(byStage[s])
		b = appendIDs(append(b, ','), byStage[s])
	}
	slices.Sort(missingIDs)
	b = appendIDs(append(b, `],"flags_with_missing_deps":`...), missingIDs)
	b = append(b, `,"transitive_deps":{`...)
	withDeps := make([]int64, 0, len(deps))
	for id := range deps {
		if stage[id] >= 0 {
			withDeps = append(withDeps, id)
		}
	}
	slices.Sort(withDeps)
	for i, id := range withDeps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(strconv.AppendInt(append(b, '"'), id, 10), `":`...)
		b = appendIDs(b, transitive(id, deps))
		if len(b) > outFlush {
			o.write(b)
			b = b[:0]
		}
	}
	b = append(b, "}}"...)
	o.write(b)
	return o.err
}

// transitive returns every flag id reachable from id's dependencies, sorted.
func transitive(id int64, deps map[int64][]int64) []int64 {
	seen := map[int64]struct{}{}
	stack := slices.Clone(deps[id])
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[d]; ok {
			continue
		}
		seen[d] = struct{}{}
		stack = append(stack, deps[d]...)
	}
	out := make([]int64, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

func appendIDs(b []byte, ids []int64) []byte {
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return append(b, ']')
}

// appendFlag serializes one flag the way PostHog's MinimalFeatureFlagSerializer does.
func appendFlag(b []byte, f *FlagRow) []byte {
	b = strconv.AppendInt(append(b, `{"id":`...), f.ID, 10)
	b = strconv.AppendInt(append(b, `,"team_id":`...), f.TeamID, 10)
	b = appendString(b, `,"name":`, f.Name)
	b = appendString(b, `,"key":`, f.Key)
	b = append(append(b, `,"filters":`...), f.Filters...)
	b = append(b, `,"deleted":false,"active":`...)
	b = strconv.AppendBool(b, f.Active)
	b = strconv.AppendBool(append(b, `,"ensure_experience_continuity":`...), f.EnsureExperienceContinuity)
	b = strconv.AppendBool(append(b, `,"has_encrypted_payloads":`...), f.HasEncryptedPayloads)
	b = appendOptInt(append(b, `,"version":`...), f.Version)
	b = appendString(b, `,"evaluation_runtime":`, f.EvaluationRuntime)
	b = append(b, `,"evaluation_tags":[`...)
	for i, t := range f.Tags {
		sep := ","
		if i == 0 {
			sep = ""
		}
		b = appendString(b, sep, t)
	}
	return append(b, "]}"...)
}

// appendCohort serializes one cohort as flags.json carries it.
func appendCohort(b []byte, c *CohortRow) []byte {
	b = strconv.AppendInt(append(b, `{"id":`...), c.ID, 10)
	b = append(b, `,"name":`...)
	if c.Name == nil {
		b = append(b, "null"...)
	} else {
		b = appendString(b, "", *c.Name)
	}
	b = appendString(b, `,"description":`, c.Description)
	b = strconv.AppendInt(append(b, `,"team_id":`...), c.TeamID, 10)
	b = append(b, `,"deleted":false,"filters":`...)
	b = appendRaw(b, c.Filters)
	b = appendRaw(append(b, `,"query":`...), c.Query)
	b = appendOptInt(append(b, `,"version":`...), c.Version)
	b = appendOptInt(append(b, `,"pending_version":`...), c.PendingVersion)
	b = appendOptInt(append(b, `,"count":`...), c.Count)
	b = strconv.AppendBool(append(b, `,"is_calculating":`...), c.IsCalculating)
	b = strconv.AppendBool(append(b, `,"is_static":`...), c.IsStatic)
	b = strconv.AppendInt(append(b, `,"errors_calculating":`...), c.ErrorsCalculating, 10)
	groups := c.Groups
	if len(groups) == 0 {
		groups = []byte("[]")
	}
	b = appendRaw(append(b, `,"groups":`...), groups)
	b = appendOptInt(append(b, `,"created_by_id":`...), c.CreatedByID)
	b = append(b, `,"cohort_type":`...)
	if c.CohortType == nil {
		b = append(b, "null"...)
	} else {
		b = appendString(b, "", *c.CohortType)
	}
	return append(b, '}')
}

func appendRaw(b, raw []byte) []byte {
	if raw == nil {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

func appendOptInt(b []byte, v *int64) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, *v, 10)
}

const hexDigits = "0123456789abcdef"

// appendString appends prefix and s as a JSON string.
func appendString(b []byte, prefix, s string) []byte {
	b = append(b, prefix...)
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
