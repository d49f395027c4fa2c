package pyjson

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flagwarden/flagwarden/internal/testenv"
)

func TestAppendExamples(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{`{"b": 1, "a": 2}`, `{"a": 2, "b": 1}`},
		// jsonb's own order is by key length first.
		{`{"b": 1, "aa": 2, "ccc": {"zz": [], "y": {}}}`, `{"aa": 2, "b": 1, "ccc": {"y": {}, "zz": []}}`},
		{` [1,2 , 3] `, `[1, 2, 3]`},
		{`{"a":1,"a":2}`, `{"a": 2}`},
		{`"é"`, `"\u00e9"`},
		{`"😀"`, `"\ud83d\ude00"`},
		{`"\uD83D\uDE00"`, `"\ud83d\ude00"`},
		{`"\ud800"`, `"\ud800"`},
		{`"\u0041\/\""`, `"A/\""`},
		{"\"\x7f\"", `"\u007f"`},
		{`"\u0001\b\f\n\r\t"`, `"\u0001\b\f\n\r\t"`},
		{`-0`, `0`},
		{`-0.0`, `-0.0`},
		{`0.0`, `0.0`},
		{`1E5`, `100000.0`},
		{`1e16`, `1e+16`},
		{`1e15`, `1000000000000000.0`},
		{`0.0001`, `0.0001`},
		{`0.00001`, `1e-05`},
		{`1.50`, `1.5`},
		{`1e400`, `Infinity`},
		{`-1e400`, `-Infinity`},
		{`1e-400`, `0.0`},
		{`123456789012345678901234567890`, `123456789012345678901234567890`},
		{`0.1000000000000000055511151231257827`, `0.1`},
		{`5e-324`, `5e-324`},
		{`1.7976931348623157e308`, `1.7976931348623157e+308`},
		{`{}`, `{}`},
		{`[]`, `[]`},
		{`{"é": 1, "z": 2, "\u00e8": 3}`, `{"z": 2, "\u00e8": 3, "\u00e9": 1}`},
		{`{"\ud83d\ude00": 1, "\uffff": 2}`, `{"\uffff": 2, "\ud83d\ude00": 1}`},
	}
	for _, c := range cases {
		got, err := Append(nil, []byte(c.in))
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, string(got), c.in)
	}
}

func TestAppendRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `{`, `[1,]`, `{"a" 1}`, `01`, `1.`, `.5`, `1e`, `NaN`, `Infinity`, `"\x01"`, "\"\xff\"", `"\q"`, `"\u12"`, `tru`, `[1] 2`, `{"a":}`, strings.Repeat("[", 1001) + strings.Repeat("]", 1001), strings.Repeat("9", MaxIntDigits+1)} {
		_, err := Append(nil, []byte(in))
		require.ErrorIs(t, err, ErrSyntax, "%q", in)
	}
	// Python's own limit on integer digits is the boundary, not one less.
	_, err := Append(nil, []byte(strings.Repeat("9", MaxIntDigits)))
	require.NoError(t, err)
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	var d Doc
	require.NoError(t, d.Parse([]byte(`{"groups": [{"properties": [{"key": "7", "type": "flag"}, {"key": "x", "type": "person"}]}]}`)))
	var target Node
	d.Root().Get("groups").Elems(func(g Node) bool {
		g.Get("properties").Elems(func(p Node) bool {
			if p.Get("type").Equal("flag") {
				target = p
			}
			return true
		})
		return true
	})
	require.True(t, target.Valid())
	ov := overrideFunc(func(n Node) []Member {
		if n.i != target.i {
			return nil
		}
		return []Member{{Key: "dependency_chain", Value: []byte(`["beta"]`)}, {Key: "key", Value: AppendString(nil, "beta")}}
	})
	got := d.Append(nil, d.Root(), ov)
	require.Equal(t, `{"groups": [{"properties": [{"dependency_chain": ["beta"], "key": "beta", "type": "flag"}, {"key": "x", "type": "person"}]}]}`, string(got))
	require.Equal(t, `{"groups": [{"properties": [{"key": "7", "type": "flag"}, {"key": "x", "type": "person"}]}]}`, string(d.Append(nil, d.Root(), nil)))
}

type overrideFunc func(Node) []Member

func (f overrideFunc) Members(n Node) []Member { return f(n) }

// TestAgainstPython prints random documents with /usr/bin/python3 and compares bytes.
func TestAgainstPython(t *testing.T) {
	t.Parallel()
	py := testenv.Python(t)
	r := rand.New(rand.NewPCG(7, 12))
	var docs [][]byte
	for range 3000 {
		docs = append(docs, randomJSON(r, 0))
	}
	docs = append(docs, []byte(`[1e-400, 2e-324, 1e308, 9007199254740993, 0.30000000000000004, 100.0, 1e22, 1e21, 123e-20, -1.5E-7]`))
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	var buf bytes.Buffer
	for _, d := range docs {
		buf.Write(d)
		buf.WriteByte('\n')
	}
	require.NoError(t, os.WriteFile(in, buf.Bytes(), 0o644))
	script := `import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    sys.stdout.write(json.dumps(json.loads(line), sort_keys=True) + "\n")
`
	out, err := exec.Command(py, "-c", script, in).Output()
	require.NoError(t, err)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for i := 0; sc.Scan(); i++ {
		got, err := Append(nil, docs[i])
		require.NoError(t, err, "%s", docs[i])
		require.Equal(t, sc.Text(), string(got), "document %d: %s", i, docs[i])
	}
}

// randomJSON makes nested documents with the awkward parts: unicode (astral, DEL,
// controls, escapes in either case), floats of every magnitude, big ints, empty
// containers, duplicate keys and key orders that are not sorted.
func randomJSON(r *rand.Rand, depth int) []byte {
	var b []byte
	switch k := r.IntN(10); {
	case depth > 4 || k < 3:
		return randomScalar(r)
	case k < 6:
		b = append(b, '[')
		for i := range r.IntN(5) {
			if i > 0 {
				b = append(b, ","+strings.Repeat(" ", r.IntN(2))...)
			}
			b = append(b, randomJSON(r, depth+1)...)
		}
		return append(b, ']')
	default:
		b = append(b, '{')
		for i := range r.IntN(12) { // both sides of smallObject
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, randomString(r)...)
			b = append(b, ": "...)
			b = append(b, randomJSON(r, depth+1)...)
		}
		return append(b, '}')
	}
}

func randomScalar(r *rand.Rand) []byte {
	switch r.IntN(9) {
	case 0:
		return []byte([]string{"true", "false", "null"}[r.IntN(3)])
	case 1:
		return strconv.AppendInt(nil, r.Int64()-r.Int64(), 10)
	case 2:
		return []byte(strings.Repeat("9", 1+r.IntN(40)))
	case 3:
		f := math.Float64frombits(r.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			f = 1.5
		}
		return strconv.AppendFloat(nil, f, 'g', -1, 64)
	case 4:
		mant := strconv.Itoa(r.IntN(100000))
		frac := strconv.Itoa(r.IntN(1000))
		return fmt.Appendf(nil, "%s.%s%s%d", mant, frac, []string{"e", "E", "e+", "e-"}[r.IntN(4)], r.IntN(400))
	case 5:
		return fmt.Appendf(nil, "%d.%0*d", r.IntN(10), 1+r.IntN(20), r.IntN(1000))
	default:
		return randomString(r)
	}
}

var pieces = []string{"a", "b", "Z", "key", "type", "values", " ", "é", "ß", "中", "😀", "𝄞", "\x7f", `\u0000`, `\u001f`, `\n`, `\t`, `\"`, `\\`, `\/`, `\u00E9`, `\uD83D\uDE00`, `\ud834\udd1e`, `\ud800`, `\udfff`, "\u2028", "\ufeff", "~", "0", "10", "9"}

func randomString(r *rand.Rand) []byte {
	b := []byte{'"'}
	for range r.IntN(6) {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return append(b, '"')
}

// FuzzAppend checks the printer against Go's own JSON decoder: the same documents are
// accepted (up to the limits Python itself has), the output means the same thing, is
// ASCII, has sorted keys at every depth and prints to itself again.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[1.5,"é",{}]}`, `"\ud83d\ude00"`, `-0`, `1e400`, `{"a":1,"a":2}`, `[0.00001,1e16]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Append(nil, in)
		goValid := json.Valid(in)
		if err != nil {
			if goValid && !knownStricter(in, err) {
				t.Fatalf("rejected a document Go accepts: %v", err)
			}
			return
		}
		if !goValid {
			t.Fatalf("accepted a document Go rejects: %q", in)
		}
		for _, c := range out {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("output byte %#x is not printable ASCII: %q", c, out)
			}
		}
		if bytes.Contains(out, []byte("Infinity")) {
			return // Python prints overflow as Infinity, which is not JSON
		}
		again, err := Append(nil, out)
		if err != nil {
			t.Fatalf("output does not parse: %v: %q", err, out)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("printing is not stable:\n%q\n%q", out, again)
		}
		checkSorted(t, out)
		var a, b any
		da := json.NewDecoder(bytes.NewReader(in))
		da.UseNumber()
		db := json.NewDecoder(bytes.NewReader(out))
		db.UseNumber()
		if da.Decode(&a) != nil || db.Decode(&b) != nil {
			t.Fatalf("Go cannot decode input or output: %q -> %q", in, out)
		}
		if !sameValue(a, b) {
			t.Fatalf("meaning changed: %q -> %q", in, out)
		}
	})
}

// knownStricter: Python refuses integers beyond 4300 digits and nesting beyond its
// recursion limit, and psycopg2 never hands it invalid UTF-8; Go accepts all three.
func knownStricter(in []byte, err error) bool {
	var se *SyntaxError
	if !errors.As(err, &se) {
		return false
	}
	return strings.Contains(se.Msg, "digits") || strings.Contains(se.Msg, "nesting") || strings.Contains(se.Msg, "UTF-8")
}

func checkSorted(t *testing.T, out []byte) {
	var d Doc
	if err := d.Parse(out); err != nil {
		t.Fatal(err)
	}
	var walk func(n Node)
	walk = func(n Node) {
		var prev []byte
		first := true
		n.Members(func(k, v Node) bool {
			s := unescape(nil, k.Raw()[1:len(k.Raw())-1])
			if !first && bytes.Compare(prev, s) >= 0 {
				t.Fatalf("keys not strictly sorted: %q then %q in %q", prev, s, out)
			}
			prev, first = s, false
			walk(v)
			return true
		})
		n.Elems(func(e Node) bool { walk(e); return true })
	}
	walk(d.Root())
}

func sameValue(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !sameValue(v, y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if !strings.ContainsAny(string(x), ".eE") {
			return strings.TrimPrefix(string(x), "-") == strings.TrimPrefix(string(y), "-") && (string(x) == string(y) || string(x) == "-0")
		}
		fx, _ := strconv.ParseFloat(string(x), 64)
		fy, _ := strconv.ParseFloat(string(y), 64)
		return math.Float64bits(fx) == math.Float64bits(fy)
	default:
		return a == b
	}
}

func BenchmarkAppendFlagFilters(b *testing.B) {
	src := []byte(`{"groups": [{"variant": null, "properties": [{"key": "email", "type": "person", "value": "user123456@example.com", "operator": "icontains"}, {"key": "email", "type": "person", "value": "user98765@example.com", "operator": "icontains"}, {"key": "id", "type": "cohort", "value": 1234, "negation": false}], "rollout_percentage": 50}, {"variant": null, "properties": [], "rollout_percentage": 100}], "payloads": {"true": "{\"color\":\"blue\",\"size\":12}"}, "multivariate": {"variants": [{"key": "control", "name": null, "rollout_percentage": 50}, {"key": "test", "name": null, "rollout_percentage": 50}]}, "aggregation_group_type_index": null}`)
	var d Doc
	var dst []byte
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if err := d.Parse(src); err != nil {
			b.Fatal(err)
		}
		dst = d.Append(dst[:0], d.Root(), nil)
	}
}
