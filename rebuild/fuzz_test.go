package rebuild

import (
	"encoding/json"
	"testing"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// FuzzFlagFilters feeds arbitrary filters through the streaming pass's per-flag work:
// a flag the checks accept must print as a flags.json the Rust reader's contract (read
// independently, rustRead) accepts, and nothing may panic.
func FuzzFlagFilters(f *testing.F) {
	for _, s := range []string{
		`{"groups":[{"properties":[{"key":"email","type":"person","value":"a","operator":"exact"}],"rollout_percentage":50}]}`,
		`{"groups":[{"properties":[{"key":"7","type":"flag","value":true}]}],"multivariate":{"variants":[{"key":"a","rollout_percentage":100}]}}`,
		`{"properties":[{"key":"id","type":"cohort","value":"3"}]}`,
		`{"groups":[{"properties":null,"aggregation_group_type_index":99999999999}]}`,
		`{"groups":[{"properties":[{"key":"x","value":1}]}]}`,
		`{"holdout":{"id":1,"exclusion_percentage":1e400},"payloads":{"a":[[[[]]]]}}`,
		`"not an object"`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, filters []byte) {
		for _, c := range Contracts() {
			s := &streamer{c: c}
			rollout := int64(20)
			eff, prob := s.filters(&FlagRow{Filters: filters, RolloutPercentage: &rollout})
			if prob != nil {
				if prob.code == "" || prob.detail == "" {
					t.Fatalf("a skip needs a reason: %+v", prob)
				}
				continue
			}
			printed := eff.Append(nil, eff.Root(), nil)
			doc := []byte(`{"cohorts": [], "evaluation_metadata": {"dependency_stages": [[1]], "flags_with_missing_deps": [], "transitive_deps": {"1": []}}, "flags": [{"id": 1, "team_id": 1, "key": "k", "name": "n", "filters": `)
			doc = append(append(doc, printed...), "}]}"...)
			if err := rustRead(doc, true); err != nil {
				t.Fatalf("accepted filters the Rust reader refuses: %v\n%s", err, printed)
			}
			var props []pyjson.Node
			eff.Root().Get("groups").Elems(func(g pyjson.Node) bool {
				g.Get("properties").Elems(func(p pyjson.Node) bool { props = append(props, p); return true })
				return true
			})
			var r flagRefs
			readRefs(props, &r)
			if r.badKey != "" {
				t.Fatalf("accepted a flag property key that is not a string: %s", r.badKey)
			}
		}
	})
}

// FuzzCohortDefinition parses arbitrary cohort filters and legacy groups as PostHog's
// Cohort.properties does: either an error, or a to_dict() that is JSON and a repaired
// groups column that is JSON.
func FuzzCohortDefinition(f *testing.F) {
	f.Add([]byte(`{"properties":{"type":"OR","values":[{"type":"AND","values":[{"key":"a","type":"person","value":1}]}]}}`), []byte(`[]`))
	f.Add([]byte(`null`), []byte(`[{"properties":[{"key":"plan","type":"event","value":"pro"}]},{"action_id":7,"days":30,"count":"2"}]`))
	f.Add([]byte(`{"properties":{"type":"and","values":[{"type":"AND","values":[]},{"key":"x","value":1}]}}`), []byte(`[]`))
	f.Add([]byte(`{"properties":"[{\"key\":\"a\",\"value\":1}]"}`), []byte(`[{"properties":{"plan":"team"}}]`))
	f.Fuzz(func(t *testing.T, filters, groups []byte) {
		var docs cohortDocs
		c := &CohortRow{ID: 1, Filters: filters, Groups: groups}
		if docs.parse(c) != nil {
			return
		}
		props, err := docs.properties()
		if err == nil {
			if d := props.appendDict(nil); !json.Valid(d) && !jsonWithInfinity(d) {
				t.Fatalf("to_dict() is not JSON: %s", d)
			}
			cohortRefsStrict(props, 1, func(int64) {})
			cohortRefsLoose(props, func(int64) {})
		}
		if g := appendRepairedGroups(nil, &docs); !json.Valid(g) && !jsonWithInfinity(g) {
			t.Fatalf("repaired groups are not JSON: %s", g)
		}
	})
}

// jsonWithInfinity: Python prints overflowing floats as Infinity, which is not JSON.
func jsonWithInfinity(b []byte) bool {
	for i := 0; i+8 <= len(b); i++ {
		if string(b[i:i+8]) == "Infinity" {
			return true
		}
	}
	return false
}

// FuzzBinaryTimestamptz: any bytes the first pass's change-time column could hold
// decode to a time or a clear error, never a panic; an 8-byte value always decodes.
func FuzzBinaryTimestamptz(f *testing.F) {
	for _, seed := range [][]byte{nil, {}, {1, 2, 3}, make([]byte, 8), {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0x80, 0, 0, 0, 0, 0, 0, 0}, {0, 2, 0x3c, 0x4f, 0x28, 0x63, 0x40, 0}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := binaryTimestamptz(b)
		if len(b) == 8 && err != nil {
			t.Fatalf("8 bytes %x: %v", b, err)
		}
		if b != nil && len(b) != 8 && err == nil {
			t.Fatalf("%d bytes decoded to %v", len(b), got)
		}
	})
}
