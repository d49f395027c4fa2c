package verify

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzValidJSON: the streaming check that tells a broken stored payload from other
// JSON agrees with encoding/json on what one JSON document is.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{
		`{"flags": [], "group_type_mapping": {}, "cohorts": {}}`, `{"flags": [`, `[1, 2]`, `"x"`, `1 2`,
		``, ` `, `{"a": 1,}`, `[[[]]]`, `{"a" 1}`, `nul`, `{"\ud83d\ude00": "caf\u00e9"}`, "{}\n", `{}{}`, `]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := validJSON(bytes.NewReader(b)) == nil
		if want := json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) ok=%v, json.Valid %v", b, got, want)
		}
	})
}
