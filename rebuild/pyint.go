package rebuild

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"

	"github.com/flagwarden/flagwarden/internal/pyjson"
)

// noID is what an integer that fits no int64 becomes: a valid Python int that names no
// flag and no cohort.
const noID = math.MinInt64

// pyInt is Python's int(v) for a value json.loads produced, as PostHog applies it to
// cohort ids and flag-dependency keys: ints as they are, floats truncated, booleans 1
// and 0, strings parsed in base 10 (surrounding whitespace, a sign, underscores between
// digits and Unicode decimal digits allowed). ok is false where int() raises; an int
// beyond int64 is noID.
func pyInt(n pyjson.Node) (v int64, ok bool) {
	switch n.Kind() {
	case pyjson.Int:
		if v, ok := n.Int(); ok {
			return v, true
		}
		return noID, true
	case pyjson.Float:
		f, _ := n.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, false // ValueError / OverflowError
		}
		t := math.Trunc(f)
		if t < -9.2e18 || t > 9.2e18 {
			return noID, true
		}
		return int64(t), true
	case pyjson.True:
		return 1, true
	case pyjson.False:
		return 0, true
	case pyjson.String:
		s, _ := n.Str()
		return pyIntString(s)
	}
	return 0, false // TypeError
}

func pyIntString(s string) (int64, bool) {
	s = strings.TrimFunc(s, unicode.IsSpace)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	var digits []byte
	prevUnderscore := true // no leading underscore
	for _, r := range s {
		if r == '_' {
			if prevUnderscore {
				return 0, false
			}
			prevUnderscore = true
			continue
		}
		d := decimalValue(r)
		if d < 0 {
			return 0, false
		}
		digits = append(digits, byte('0'+d))
		prevUnderscore = false
	}
	if prevUnderscore {
		return 0, false // trailing underscore
	}
	if len(digits) > pyjson.MaxIntDigits {
		return 0, false
	}
	if v, err := strconv.ParseInt(string(digits), 10, 64); err == nil {
		if neg {
			v = -v
		}
		return v, true
	}
	if _, ok := new(big.Int).SetString(string(digits), 10); ok {
		return noID, true
	}
	return 0, false
}

// decimalValue is the digit value of a Unicode decimal digit (category Nd), else -1.
// Decimal digits come in runs of ten starting at zero, which the Nd table keeps as
// ranges.
func decimalValue(r rune) int {
	if r >= '0' && r <= '9' {
		return int(r - '0')
	}
	if r < 0x80 || !unicode.Is(unicode.Nd, r) {
		return -1
	}
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return -1
}

// pyTruthy is Python's bool() of a loaded JSON value.
func pyTruthy(n pyjson.Node) bool {
	switch n.Kind() {
	case pyjson.Null, pyjson.False:
		return false
	case pyjson.True:
		return true
	case pyjson.Int, pyjson.Float:
		f, _ := n.Float()
		return f != 0
	case pyjson.String:
		return len(n.Raw()) > 2
	}
	return n.Len() > 0
}
