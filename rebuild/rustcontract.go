package rebuild

import (
	"fmt"
	"math"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// The Rust /flags service deserialises a team's whole flags.json with serde
// (rust/feature-flags/src/flags/flag_models.rs, properties/property_models.rs,
// cohorts/cohort_models.rs). One value of the wrong shape anywhere fails the whole
// payload, so the team gets an error instead of its flags. PostHog's writer does not
// check; flagwarden leaves such a flag out of both payloads and says why.

// Skip reasons: the label values of flagwarden_rebuild_skipped_flags_total.
const (
	SkipNullFilters    = "null_filters"
	SkipInvalidJSON    = "invalid_json"
	SkipNotObject      = "not_object"
	SkipShape          = "wrong_type"
	SkipPropertyType   = "property_type"
	SkipOperator       = "unknown_operator"
	SkipOutOfRange     = "out_of_range"
	SkipNesting        = "too_deep"
	SkipLoneSurrogate  = "lone_surrogate"
	SkipDependencyLoop = "dependency_cycle"
)

// SkipReasons lists every skip reason.
func SkipReasons() []string {
	return []string{SkipNullFilters, SkipInvalidJSON, SkipNotObject, SkipShape, SkipPropertyType, SkipOperator,
		SkipOutOfRange, SkipNesting, SkipLoneSurrogate, SkipDependencyLoop}
}

// maxValueDepth is the deepest a flag's filters (or a cohort's JSON column) may nest:
// serde_json refuses a document nested 128 levels, and flags.json puts these values
// three levels down ({"flags": [{"filters": …).
const maxValueDepth = 124

// rustOperators is the closed OperatorType enum.
var rustOperators = map[string]bool{"exact": true, "is_not": true, "icontains": true, "not_icontains": true,
	"icontains_multi": true, "not_icontains_multi": true, "regex": true, "not_regex": true, "gt": true, "lt": true,
	"gte": true, "lte": true, "semver_gt": true, "semver_gte": true, "semver_lt": true, "semver_lte": true,
	"semver_eq": true, "semver_neq": true, "semver_tilde": true, "semver_caret": true, "semver_wildcard": true,
	"is_set": true, "is_not_set": true, "is_date_exact": true, "is_date_after": true, "is_date_before": true,
	"in": true, "not_in": true, "flag_evaluates_to": true}

// rustPropertyTypes is the closed PropertyType enum.
var rustPropertyTypes = map[string]bool{"person": true, "cohort": true, "group": true, "flag": true}

// rustCohortTypes is the closed CohortType enum.
var rustCohortTypes = map[string]bool{"static": true, "person_property": true, "behavioral": true, "realtime": true, "analytical": true}

type rustProblem struct {
	code, detail string
}

func (p *rustProblem) String() string { return p.code + ": " + p.detail }

func rustErr(code, format string, args ...any) *rustProblem {
	return &rustProblem{code, fmt.Sprintf(format, args...)}
}

// checkDocument applies the document-wide limits of serde_json to a value that sits
// three levels down in flags.json.
func checkDocument(d *pyjson.Doc, what string) *rustProblem {
	switch {
	case d.Depth() > maxValueDepth:
		return rustErr(SkipNesting, "%s nest %d levels; the Rust reader stops at %d", what, d.Depth(), maxValueDepth)
	case d.FloatOverflow():
		return rustErr(SkipOutOfRange, "%s hold a number beyond the range of a 64-bit float", what)
	case d.LoneSurrogate():
		return rustErr(SkipLoneSurrogate, "%s hold a lone UTF-16 surrogate", what)
	}
	return nil
}

// rootFields are the filters' members the Rust reader types, in the order
// checkFlagFilters reads them.
var rootFields = []string{"groups", "super_groups", "multivariate", "aggregation_group_type_index", "feature_enrollment", "holdout"}

// checkFlagFilters checks a flag's (effective) filters against FlagFilters.
func checkFlagFilters(d *pyjson.Doc) *rustProblem {
	if p := checkDocument(d, "filters"); p != nil {
		return p
	}
	root := d.Root()
	if root.Kind() != pyjson.Object {
		return rustErr(SkipNotObject, "filters are %s, not an object", root.Kind())
	}
	var m [6]pyjson.Node // one per rootFields entry
	root.Lookup(rootFields, m[:])
	if g := m[0]; g.Valid() {
		if g.Kind() != pyjson.Array {
			return rustErr(SkipShape, "filters.groups is %s, not a list", g.Kind())
		}
		if p := checkGroups(g, "groups"); p != nil {
			return p
		}
	}
	if g := present(m[1]); g.Valid() {
		if g.Kind() != pyjson.Array {
			return rustErr(SkipShape, "filters.super_groups is %s, not a list", g.Kind())
		}
		if p := checkGroups(g, "super_groups"); p != nil {
			return p
		}
	}
	if mv := present(m[2]); mv.Valid() {
		if p := checkMultivariate(mv); p != nil {
			return p
		}
	}
	if p := optI32(m[3], "filters.aggregation_group_type_index"); p != nil {
		return p
	}
	if fe := present(m[4]); fe.Valid() && fe.Kind() != pyjson.True && fe.Kind() != pyjson.False {
		return rustErr(SkipShape, "filters.feature_enrollment is %s, not a boolean", fe.Kind())
	}
	if h := present(m[5]); h.Valid() {
		if h.Kind() != pyjson.Object {
			return rustErr(SkipShape, "filters.holdout is %s, not an object", h.Kind())
		}
		id := h.Get("id")
		if id.Kind() != pyjson.Int {
			return rustErr(SkipShape, "filters.holdout.id is %s, not an integer", id.Kind())
		}
		if _, ok := id.Int(); !ok {
			return rustErr(SkipOutOfRange, "filters.holdout.id %s is beyond a 64-bit integer", id.Raw())
		}
		if !isNumber(h.Get("exclusion_percentage")) {
			return rustErr(SkipShape, "filters.holdout.exclusion_percentage is %s, not a number", h.Get("exclusion_percentage").Kind())
		}
	}
	return nil
}

// present is n unless it is JSON null (an Option field reads null as None).
func present(n pyjson.Node) pyjson.Node {
	if n.Kind() == pyjson.Null {
		return pyjson.Node{}
	}
	return n
}

func isNumber(n pyjson.Node) bool { return n.Kind() == pyjson.Int || n.Kind() == pyjson.Float }

func checkGroups(groups pyjson.Node, field string) *rustProblem {
	var p *rustProblem
	i := 0
	groups.Elems(func(g pyjson.Node) bool {
		p = checkGroup(g, field, i)
		i++
		return p == nil
	})
	return p
}

func groupPath(field string, gi int) string { return fmt.Sprintf("filters.%s[%d]", field, gi) }

func propPath(field string, gi, pi int) string {
	return fmt.Sprintf("filters.%s[%d].properties[%d]", field, gi, pi)
}

var groupFields = []string{"properties", "rollout_percentage", "variant", "aggregation_group_type_index"}

func checkGroup(g pyjson.Node, field string, gi int) *rustProblem {
	if g.Kind() != pyjson.Object {
		return rustErr(SkipShape, "%s is %s, not a condition group", groupPath(field, gi), g.Kind())
	}
	var m [4]pyjson.Node
	g.Lookup(groupFields, m[:])
	if props := present(m[0]); props.Valid() {
		if props.Kind() != pyjson.Array {
			return rustErr(SkipShape, "%s.properties is %s, not a list", groupPath(field, gi), props.Kind())
		}
		var p *rustProblem
		pi := 0
		props.Elems(func(prop pyjson.Node) bool {
			p = checkProperty(prop, field, gi, pi)
			pi++
			return p == nil
		})
		if p != nil {
			return p
		}
	}
	if r := present(m[1]); r.Valid() && !isNumber(r) {
		return rustErr(SkipShape, "%s.rollout_percentage is %s, not a number", groupPath(field, gi), r.Kind())
	}
	if v := present(m[2]); v.Valid() && v.Kind() != pyjson.String {
		return rustErr(SkipShape, "%s.variant is %s, not a string", groupPath(field, gi), v.Kind())
	}
	if !optI32ok(m[3]) {
		return optI32(m[3], groupPath(field, gi)+".aggregation_group_type_index")
	}
	return nil
}

var propFields = []string{"key", "type", "operator", "negation", "group_type_index"}

func checkProperty(p pyjson.Node, field string, gi, pi int) *rustProblem {
	if p.Kind() != pyjson.Object {
		return rustErr(SkipShape, "%s is %s, not a property filter", propPath(field, gi, pi), p.Kind())
	}
	var m [5]pyjson.Node
	p.Lookup(propFields, m[:])
	if k := m[0]; k.Kind() != pyjson.String {
		if !k.Valid() {
			return rustErr(SkipShape, "%s has no key", propPath(field, gi, pi))
		}
		return rustErr(SkipShape, "%s.key is %s, not a string", propPath(field, gi, pi), k.Kind())
	}
	t := m[1]
	if !t.Valid() {
		return rustErr(SkipPropertyType, "%s has no type", propPath(field, gi, pi))
	}
	if !knownString(t, rustPropertyTypes) {
		return rustErr(SkipPropertyType, "%s.type %s is not one of person, cohort, group, flag", propPath(field, gi, pi), t.Raw())
	}
	if op := present(m[2]); op.Valid() && !knownString(op, rustOperators) {
		return rustErr(SkipOperator, "%s.operator %s is not an operator the Rust reader knows", propPath(field, gi, pi), op.Raw())
	}
	if n := present(m[3]); n.Valid() && n.Kind() != pyjson.True && n.Kind() != pyjson.False {
		return rustErr(SkipShape, "%s.negation is %s, not a boolean", propPath(field, gi, pi), n.Kind())
	}
	if !optI32ok(m[4]) {
		return optI32(m[4], propPath(field, gi, pi)+".group_type_index")
	}
	return nil
}

// knownString: a string value that is one of set, compared without allocating for
// plain strings.
func knownString(n pyjson.Node, set map[string]bool) bool {
	if n.Kind() != pyjson.String {
		return false
	}
	raw := n.Raw()
	if body := raw[1 : len(raw)-1]; !containsByte(body, '\\') {
		return set[string(body)]
	}
	s, _ := n.Str()
	return set[s]
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

func checkMultivariate(m pyjson.Node) *rustProblem {
	if m.Kind() != pyjson.Object {
		return rustErr(SkipShape, "filters.multivariate is %s, not an object", m.Kind())
	}
	vs := m.Get("variants")
	if vs.Kind() != pyjson.Array {
		return rustErr(SkipShape, "filters.multivariate.variants is %s, not a list", vs.Kind())
	}
	var p *rustProblem
	i := 0
	vs.Elems(func(v pyjson.Node) bool {
		// The path is only formatted for a problem: this runs for every variant of
		// every flag.
		path := variantPath(i)
		i++
		switch {
		case v.Kind() != pyjson.Object:
			p = rustErr(SkipShape, "%s is %s, not a variant", path, v.Kind())
		case v.Get("key").Kind() != pyjson.String:
			p = rustErr(SkipShape, "%s.key is %s, not a string", path, v.Get("key").Kind())
		case present(v.Get("name")).Valid() && v.Get("name").Kind() != pyjson.String:
			p = rustErr(SkipShape, "%s.name is %s, not a string", path, v.Get("name").Kind())
		case !isNumber(v.Get("rollout_percentage")):
			p = rustErr(SkipShape, "%s.rollout_percentage is %s, not a number", path, v.Get("rollout_percentage").Kind())
		}
		return p == nil
	})
	return p
}

// variantPath formats a variant's path when a message needs it.
type variantPath int

func (v variantPath) String() string { return fmt.Sprintf("filters.multivariate.variants[%d]", int(v)) }

// optI32ok is optI32 without the message: the common case allocates nothing.
func optI32ok(n pyjson.Node) bool {
	n = present(n)
	if !n.Valid() {
		return true
	}
	v, ok := n.Int()
	return n.Kind() == pyjson.Int && ok && v >= math.MinInt32 && v <= math.MaxInt32
}

// optI32 checks an Option<i32>: absent, null, or an integer literal within i32.
func optI32(n pyjson.Node, path string) *rustProblem {
	n = present(n)
	if !n.Valid() {
		return nil
	}
	if n.Kind() != pyjson.Int {
		return rustErr(SkipShape, "%s is %s, not an integer", path, n.Kind())
	}
	if v, ok := n.Int(); !ok || v < math.MinInt32 || v > math.MaxInt32 {
		return rustErr(SkipOutOfRange, "%s %s is beyond a 32-bit integer", path, n.Raw())
	}
	return nil
}

// checkCohortRow checks one cohort of flags.json against Cohort; a bad cohort is left
// out of the cohort list rather than failing the team.
func checkCohortRow(c *CohortRow, docs *cohortDocs) *rustProblem {
	if c.CohortType != nil && !rustCohortTypes[*c.CohortType] {
		return rustErr(SkipShape, "cohort_type %q is not one the Rust reader knows", *c.CohortType)
	}
	for _, x := range []struct {
		d    *pyjson.Doc
		ok   bool
		name string
	}{{&docs.filters, docs.hasFilters, "filters"}, {&docs.query, docs.hasQuery, "query"}, {&docs.groups, docs.hasGroups, "groups"}} {
		if x.ok {
			if p := checkDocument(x.d, x.name); p != nil {
				return p
			}
		}
	}
	return nil
}
