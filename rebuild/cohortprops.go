package rebuild

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// This file reproduces what PostHog's Python does with a cohort's definition:
// Cohort.properties (filters parsed by Filter/PropertyMixin into Property and
// PropertyGroup objects, or the legacy groups column converted), .to_dict() (what
// the definitions payload ships per cohort) and .flat (what the nested-cohort walks
// read). Property silently drops entries it cannot build; a PropertyGroup that
// cannot be parsed raises, which PostHog turns into a cohort left out of the payload
// (to_dict) or a flag left out of it (dependency walks).

// errCohortProps is Cohort.properties raising.
var errCohortProps = errors.New("cohort definition cannot be parsed")

func propsErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCohortProps, fmt.Sprintf(format, args...))
}

// propField is one attribute of Property that to_dict() prints when it is not None.
type propField int

// In sort_keys order.
const (
	pfEventFilters propField = iota
	pfEventType
	pfExplicitDatetime
	pfGroupTypeIndex
	pfKey
	pfMinPeriods
	pfNegation
	pfOperator
	pfOperatorValue
	pfSeqEvent
	pfSeqEventType
	pfSeqTimeInterval
	pfSeqTimeValue
	pfTimeInterval
	pfTimeValue
	pfTotalPeriods
	pfType
	pfValue
	numPropFields
)

var propFieldNames = [numPropFields]string{"event_filters", "event_type", "explicit_datetime", "group_type_index",
	"key", "min_periods", "negation", "operator", "operator_value", "seq_event", "seq_event_type",
	"seq_time_interval", "seq_time_value", "time_interval", "time_value", "total_periods", "type", "value"}

// validPropTypes are VALIDATE_PROP_TYPES' keys; "group" also requires group_type_index
// and "hogql" only a key.
var validPropTypes = map[string]bool{"event": true, "event_metadata": true, "person": true, "data_warehouse": true,
	"data_warehouse_person_property": true, "error_tracking_issue": true, "cohort": true, "element": true,
	"static-cohort": true, "dynamic-cohort": true, "precalculated-cohort": true, "group": true, "recording": true,
	"log_entry": true, "log": true, "flag": true, "revenue_analytics": true, "behavioral": true, "session": true, "hogql": true}

// behavioralRequired is VALIDATE_BEHAVIORAL_PROP_TYPES (beyond key and value).
var behavioralRequired = map[string][]propField{
	"performed_event":            {pfEventType},
	"performed_event_multiple":   {pfEventType, pfOperatorValue},
	"performed_event_first_time": {pfEventType, pfTimeValue, pfTimeInterval},
	"performed_event_sequence":   {pfEventType, pfTimeValue, pfTimeInterval, pfSeqEventType, pfSeqEvent, pfSeqTimeValue, pfSeqTimeInterval},
	"performed_event_regularly":  {pfEventType, pfTimeValue, pfTimeInterval, pfOperatorValue, pfMinPeriods, pfTotalPeriods},
	"stopped_performing_event":   {pfEventType, pfTimeValue, pfTimeInterval, pfSeqTimeValue, pfSeqTimeInterval},
	"restarted_performing_event": {pfEventType, pfTimeValue, pfTimeInterval, pfSeqTimeValue, pfSeqTimeInterval},
}

// pyProp is one Property: each attribute to_dict() prints, already as Python text, and
// what the dependency walks read.
type pyProp struct {
	fields [numPropFields][]byte
	typ    string
	value  pyjson.Node // the loaded value (invalid when value was filled from operator)
}

// pyGroup is one PropertyGroup; values are groups or properties, never both.
type pyGroup struct {
	typ    string // AND, OR
	groups []*pyGroup
	props  []*pyProp
}

func (g *pyGroup) empty() bool { return len(g.groups) == 0 && len(g.props) == 0 }

// appendDict prints PropertyGroup.to_dict(): {} when empty.
func (g *pyGroup) appendDict(dst []byte) []byte {
	if g.empty() {
		return append(dst, "{}"...)
	}
	dst = append(dst, `{"type": "`...)
	dst = append(dst, g.typ...)
	dst = append(dst, `", "values": [`...)
	i := 0
	for _, c := range g.groups {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = c.appendDict(dst)
		i++
	}
	for _, p := range g.props {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = p.appendDict(dst)
		i++
	}
	return append(dst, "]}"...)
}

func (p *pyProp) appendDict(dst []byte) []byte {
	dst = append(dst, '{')
	first := true
	for f, v := range p.fields {
		if v == nil {
			continue
		}
		if !first {
			dst = append(dst, ", "...)
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, propFieldNames[f]...)
		dst = append(dst, `": `...)
		dst = append(dst, v...)
	}
	return append(dst, '}')
}

// flat calls fn for every Property, depth first.
func (g *pyGroup) flat(fn func(*pyProp)) {
	for _, c := range g.groups {
		c.flat(fn)
	}
	for _, p := range g.props {
		fn(p)
	}
}

// propParser builds pyGroups from one cohort's loaded JSON.
type propParser struct{}

// print renders a loaded value as Python text, in a fresh slice.
func (pp *propParser) print(n pyjson.Node) []byte { return pyjson.Print(nil, n) }

// cohortProperties is Cohort.properties for a cohort row's filters and groups (both
// parsed documents; an invalid Node stands for NULL).
func (pp *propParser) cohortProperties(filters, groups pyjson.Node) (*pyGroup, error) {
	if pyTruthy(filters) {
		if filters.Kind() != pyjson.Object {
			return nil, propsErr("filters are %s, not a mapping", filters.Kind())
		}
		return pp.parseData(filters.Get("properties"))
	}
	if !pyTruthy(groups) {
		return &pyGroup{typ: "AND"}, nil
	}
	if groups.Kind() != pyjson.Array {
		return nil, propsErr("legacy groups are %s, not a list", groups.Kind())
	}
	out := &pyGroup{typ: "OR"}
	var err error
	groups.Elems(func(g pyjson.Node) bool {
		if g.Kind() != pyjson.Object {
			err = propsErr("a legacy group is %s", g.Kind())
			return false
		}
		var pg *pyGroup
		props := g.Get("properties")
		switch {
		case pyTruthy(props):
			pg, err = pp.legacyGroupProperties(props)
		case pyTruthy(g.Get("action_id")) || pyTruthy(g.Get("event_id")):
			var p *pyProp
			p, err = pp.behavioralGroup(g)
			pg = &pyGroup{typ: "AND", props: []*pyProp{p}}
		default:
			out = &pyGroup{typ: "AND"} // "invalid state": the whole definition is empty
			return false
		}
		if err != nil {
			return false
		}
		out.groups = append(out.groups, pg)
		return true
	})
	return out, err
}

// legacyGroupProperties parses a legacy group's properties after Cohort.properties'
// in-place repair: list entries without a type (or typed "event") become "person",
// and an old {key: value} mapping becomes a list of person properties.
func (pp *propParser) legacyGroupProperties(props pyjson.Node) (*pyGroup, error) {
	switch {
	case props.Kind() == pyjson.Array:
		var list []*pyProp
		var err error
		props.Elems(func(p pyjson.Node) bool {
			if p.Kind() != pyjson.Object {
				err = propsErr("a legacy property is %s", p.Kind())
				return false
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		props.Elems(func(p pyjson.Node) bool {
			if prop, ok := pp.property(p, legacyPersonType(p)); ok {
				list = append(list, prop)
			}
			return true
		})
		return &pyGroup{typ: "AND", props: list}, nil
	case props.Kind() == pyjson.Object && !props.Has("type") && !props.Has("values"):
		var list []*pyProp
		var err error
		eachDictItem(props, func(k string, v pyjson.Node) bool {
			p := &pyProp{typ: "person", value: v}
			p.fields[pfKey] = pyjson.AppendString(nil, k)
			p.fields[pfType] = []byte(`"person"`)
			if v.Kind() == pyjson.Null {
				// Property(key, None, type="person") raises; _parse_properties skips it.
				return true
			}
			p.fields[pfValue] = pp.print(v)
			list = append(list, p)
			return true
		})
		return &pyGroup{typ: "AND", props: list}, err
	}
	return pp.parseData(props)
}

// legacyPersonType is the type the in-place repair leaves on a legacy property.
func legacyPersonType(p pyjson.Node) string {
	t := p.Get("type")
	if !t.Valid() || t.Equal("event") {
		return "person"
	}
	return ""
}

// behavioralGroup is the Property a legacy {action_id|event_id, count, days} group
// becomes.
func (pp *propParser) behavioralGroup(g pyjson.Node) (*pyProp, error) {
	action := g.Get("action_id")
	key, eventType := action, "actions"
	if !pyTruthy(action) {
		key, eventType = g.Get("event_id"), "events"
	}
	var count int64
	if c := g.Get("count"); pyTruthy(c) {
		v, ok := pyInt(c)
		switch {
		case ok:
			count = max(0, v)
		case c.Kind() == pyjson.String || c.Kind() == pyjson.Float && !isInfinite(c):
			count = 0 // ValueError
		default:
			return nil, propsErr("legacy group count is %s", c.Kind())
		}
	}
	p := &pyProp{typ: "behavioral"}
	p.fields[pfKey] = pp.print(key)
	p.fields[pfType] = []byte(`"behavioral"`)
	p.fields[pfEventType] = pyjson.AppendString(nil, eventType)
	p.fields[pfTimeInterval] = []byte(`"day"`)
	if days := g.Get("days"); pyTruthy(days) {
		p.fields[pfTimeValue] = pp.print(days)
	} else {
		p.fields[pfTimeValue] = []byte("365")
	}
	if op := g.Get("count_operator"); op.Valid() && op.Kind() != pyjson.Null {
		p.fields[pfOperator] = pp.print(op)
	}
	if count == noID {
		count = math.MaxInt64
	}
	p.fields[pfOperatorValue] = fmt.Appendf(nil, "%d", count)
	if count != 0 {
		p.fields[pfValue] = []byte(`"performed_event_multiple"`)
	} else {
		p.fields[pfValue] = []byte(`"performed_event"`)
	}
	return p, nil
}

func isInfinite(n pyjson.Node) bool {
	f, _ := n.Float()
	return math.IsInf(f, 0)
}

// parseData is PropertyMixin._parse_data for the value under "properties".
func (pp *propParser) parseData(props pyjson.Node) (*pyGroup, error) {
	if props.Kind() == pyjson.String {
		// A JSON string is loaded again.
		s, _ := props.Str()
		var sub pyjson.Doc
		if err := sub.Parse([]byte(s)); err != nil {
			return nil, propsErr("properties are a string that is not JSON")
		}
		props = sub.Root()
	}
	if props.Kind() == pyjson.Object && props.Has("type") && props.Has("values") {
		return pp.parseGroup(props)
	}
	list, err := pp.parseProperties(props)
	if err != nil {
		return nil, err
	}
	return &pyGroup{typ: "AND", props: list}, nil
}

// parseGroup is _parse_property_group.
func (pp *propParser) parseGroup(g pyjson.Node) (*pyGroup, error) {
	if !pyTruthy(g) {
		return &pyGroup{typ: "AND"}, nil
	}
	hasType, err := pyContains(g, "type")
	if err != nil {
		return nil, err
	}
	hasValues, err := pyContains(g, "values")
	if err != nil {
		return nil, err
	}
	if !hasType || !hasValues {
		return &pyGroup{typ: "AND"}, nil
	}
	if g.Kind() != pyjson.Object {
		return nil, propsErr("a property group is %s", g.Kind())
	}
	t, ok := g.Get("type").Str()
	if !ok {
		return nil, propsErr("a property group type is %s", g.Get("type").Kind())
	}
	switch strings.ToUpper(t) {
	case "AND", "OR":
	default:
		return nil, propsErr("property group type %q is neither AND nor OR", t)
	}
	out := &pyGroup{typ: strings.ToUpper(t)}
	values := g.Get("values")
	if !pyTruthy(values) {
		return out, nil
	}
	items, err := pyIter(values)
	if err != nil {
		return nil, err
	}
	hasGroups, hasSimple := false, false
	for _, it := range items {
		ht, err := it.contains("type")
		if err != nil {
			return nil, err
		}
		hv, err := it.contains("values")
		if err != nil {
			return nil, err
		}
		hk, err := it.contains("key")
		if err != nil {
			return nil, err
		}
		switch {
		case ht && hv:
			hasGroups = true
		case hk:
			hasSimple = true
		default:
			hasGroups = true
		}
	}
	if hasGroups && hasSimple {
		return nil, propsErr("a property list holds both groups and properties")
	}
	if hasGroups {
		for _, it := range items {
			if !it.isNode {
				// A string item: "type" and "values" would have to be substrings of it,
				// and then indexing it by "type" raises; else it is an empty group.
				if ht, _ := it.contains("type"); ht {
					if hv, _ := it.contains("values"); hv {
						return nil, propsErr("a property group is a string")
					}
				}
				out.groups = append(out.groups, &pyGroup{typ: "AND"})
				continue
			}
			c, err := pp.parseGroup(it.node)
			if err != nil {
				return nil, err
			}
			out.groups = append(out.groups, c)
		}
		return out, nil
	}
	list, err := pp.parseProperties(values)
	if err != nil {
		return nil, err
	}
	out.props = list
	return out, nil
}

// parseProperties is _parse_properties: a list of property dicts (entries Property
// refuses are dropped), or an old {key__operator: value} mapping (whose errors raise).
func (pp *propParser) parseProperties(v pyjson.Node) ([]*pyProp, error) {
	switch {
	case v.Kind() == pyjson.Array:
		var out []*pyProp
		v.Elems(func(e pyjson.Node) bool {
			if e.Kind() == pyjson.Object {
				if p, ok := pp.property(e, ""); ok {
					out = append(out, p)
				}
			}
			return true
		})
		return out, nil
	case !pyTruthy(v):
		return nil, nil
	case v.Kind() == pyjson.Object:
		var out []*pyProp
		var err error
		eachDictItem(v, func(k string, val pyjson.Node) bool {
			name, op, _ := strings.Cut(k, "__")
			if i := strings.Index(op, "__"); i >= 0 {
				op = op[:i]
			}
			p := &pyProp{typ: "event", value: val}
			p.fields[pfKey] = pyjson.AppendString(nil, name)
			p.fields[pfType] = []byte(`"event"`)
			hasOp := strings.Contains(k, "__")
			if hasOp {
				p.fields[pfOperator] = pyjson.AppendString(nil, op)
			}
			switch {
			case val.Kind() != pyjson.Null:
				p.fields[pfValue] = pp.print(val)
			case hasOp && (op == "is_set" || op == "is_not_set"):
				p.fields[pfValue] = pyjson.AppendString(nil, op)
				p.value = pyjson.Node{}
			default:
				err = propsErr("old-style property %q has no value", k)
				return false
			}
			out = append(out, p)
			return true
		})
		return out, err
	}
	return nil, propsErr("properties are %s", v.Kind())
}

// property is Property(**d): nil, false when Property raises (the caller drops it).
// forceType is the type an in-place repair wrote into d ("" for none).
func (pp *propParser) property(d pyjson.Node, forceType string) (*pyProp, bool) {
	if d.Has("self") || !d.Has("key") {
		return nil, false // TypeError: bad keyword arguments
	}
	get := func(name string) pyjson.Node {
		v := d.Get(name)
		if v.Kind() == pyjson.Null {
			return pyjson.Node{}
		}
		return v
	}
	p := &pyProp{}
	for f := range numPropFields {
		switch f {
		case pfType, pfValue, pfNegation, pfGroupTypeIndex:
			continue
		}
		if v := get(propFieldNames[f]); v.Valid() {
			p.fields[f] = pp.print(v)
		}
	}
	// type: a falsy type is "event"; anything else must be a known type name.
	p.typ = forceType
	if p.typ == "" {
		t := d.Get("type")
		if !pyTruthy(t) {
			p.typ = "event"
		} else if s, ok := t.Str(); ok {
			p.typ = s
		} else {
			return nil, false
		}
	}
	if !validPropTypes[p.typ] {
		return nil, false
	}
	p.fields[pfType] = pyjson.AppendString(nil, p.typ)
	if g := get("group_type_index"); g.Valid() {
		v, ok := pyInt(g)
		if !ok || v < 0 || v >= 5 {
			return nil, false
		}
		p.fields[pfGroupTypeIndex] = fmt.Appendf(nil, "%d", v)
	}
	if n := get("negation"); n.Valid() {
		p.fields[pfNegation] = []byte(fmt.Sprint(pyStrToBool(n)))
	}
	op := get("operator")
	switch v := get("value"); {
	case v.Valid():
		p.value = v
		p.fields[pfValue] = pp.print(v)
	case op.Equal("is_set") || op.Equal("is_not_set"):
		p.fields[pfValue] = pp.print(op)
	case p.typ == "hogql":
	default:
		return nil, false // "Value must be set"
	}
	if p.fields[pfKey] == nil {
		return nil, false // key is None
	}
	if p.typ == "group" && p.fields[pfGroupTypeIndex] == nil {
		return nil, false
	}
	if p.typ == "behavioral" {
		bv, ok := p.value.Str()
		req, known := behavioralRequired[bv]
		if !ok || !known {
			return nil, false
		}
		for _, f := range req {
			if p.fields[f] == nil {
				return nil, false
			}
		}
		if (bv == "performed_event" || bv == "performed_event_multiple") && !pyTruthy(d.Get("bytecode_generation")) {
			relative := p.fields[pfTimeValue] != nil && p.fields[pfTimeInterval] != nil
			if !relative && p.fields[pfExplicitDatetime] == nil {
				return nil, false
			}
		}
	}
	return p, true
}

// pyStrToBool is posthog.utils.str_to_bool.
func pyStrToBool(n pyjson.Node) bool {
	if !pyTruthy(n) {
		return false
	}
	var s string
	switch n.Kind() {
	case pyjson.True:
		s = "true"
	case pyjson.String:
		s, _ = n.Str()
	case pyjson.Int:
		s = string(n.Raw())
	default:
		return false // str() of a float, list or dict is never one of the words
	}
	switch strings.ToLower(s) {
	case "y", "yes", "t", "true", "on", "1":
		return true
	}
	return false
}

// eachDictItem iterates a loaded object as a Python dict: each key once, in first
// appearance, with its last value.
func eachDictItem(n pyjson.Node, fn func(k string, v pyjson.Node) bool) {
	seen := map[string]bool{}
	n.Members(func(k, _ pyjson.Node) bool {
		key, _ := k.Str()
		if seen[key] {
			return true
		}
		seen[key] = true
		return fn(key, n.Get(key))
	})
}

// pyItem is one item of a Python iteration over a loaded value: a node (list
// element) or a string (dict key, character of a string).
type pyItem struct {
	node   pyjson.Node
	str    string
	isNode bool
}

func (it pyItem) contains(sub string) (bool, error) {
	if it.isNode {
		return pyContains(it.node, sub)
	}
	return strings.Contains(it.str, sub), nil
}

// pyIter is iter(v): a list's elements, a dict's keys, a string's characters.
func pyIter(v pyjson.Node) ([]pyItem, error) {
	var out []pyItem
	switch v.Kind() {
	case pyjson.Array:
		v.Elems(func(e pyjson.Node) bool { out = append(out, pyItem{node: e, isNode: true}); return true })
	case pyjson.Object:
		eachDictItem(v, func(k string, _ pyjson.Node) bool { out = append(out, pyItem{str: k}); return true })
	case pyjson.String:
		s, _ := v.Str()
		for _, r := range s {
			out = append(out, pyItem{str: string(r)})
		}
	default:
		return nil, propsErr("%s is not iterable", v.Kind())
	}
	return out, nil
}

// pyContains is Python's `sub in v`.
func pyContains(v pyjson.Node, sub string) (bool, error) {
	switch v.Kind() {
	case pyjson.Object:
		return v.Has(sub), nil
	case pyjson.String:
		s, _ := v.Str()
		return strings.Contains(s, sub), nil
	case pyjson.Array:
		found := false
		v.Elems(func(e pyjson.Node) bool { found = e.Equal(sub); return !found })
		return found, nil
	}
	return false, propsErr("%s does not support `in`", v.Kind())
}

// cohortRefsStrict are the cohort ids extract_cohort_dependencies reads (flags.json's
// walk): cohort properties whose value is an int (booleans are ints), other than self.
func cohortRefsStrict(g *pyGroup, self int64, fn func(int64)) {
	g.flat(func(p *pyProp) {
		if p.typ != "cohort" {
			return
		}
		switch p.value.Kind() {
		case pyjson.Int, pyjson.True, pyjson.False:
			if v, ok := pyInt(p.value); ok && v != self && v != noID {
				fn(v)
			}
		}
	})
}

// cohortRefsLoose are the ids get_all_cohort_dependencies reads (the definitions'
// walk): int() of any non-list cohort value that converts.
func cohortRefsLoose(g *pyGroup, fn func(int64)) {
	g.flat(func(p *pyProp) {
		if p.typ != "cohort" || p.value.Kind() == pyjson.Array {
			return
		}
		if !p.value.Valid() {
			return // value was filled from the operator: int("is_set") raises ValueError
		}
		if v, ok := pyInt(p.value); ok && v != noID {
			fn(v)
		}
	})
}
