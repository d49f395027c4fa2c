// Package pyjson prints JSON exactly as Python prints it with
// json.dumps(json.loads(text), sort_keys=True): the bytes PostHog's Django writer
// stores, and hashes for the ETag its SDKs send back.
//
// Input is JSON text (RFC 8259), typically a Postgres jsonb column, whose key order is
// length-first rather than lexicographic. Output differs from the input in the ways
// Python's round trip differs:
//
//   - separators ", " and ": ", no other whitespace;
//   - object keys sorted by code point at every depth; a duplicate key keeps its last
//     value, as a Python dict does;
//   - ensure_ascii: every character outside space..tilde is escaped, \uXXXX with
//     lowercase hex, astral characters as surrogate pairs, DEL and controls included
//     (\b \f \n \r \t keep their short forms);
//   - numbers as Python loads and prints them: a literal without '.', 'e' or 'E' is an
//     int and keeps its digits ("-0" becomes "0"); any other is a float printed as
//     repr(float): shortest round-trip digits, exponent form when the exponent is below
//     -4 or at least 16 ("1e-05", "1e+16"), "Infinity" on overflow, "-0.0".
//
// A Doc parses one value into a flat tape (no per-node allocation) and prints it; its
// scratch is reused from value to value, so memory is bounded by the largest single
// value, never by how many are printed.
package pyjson

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Kind is the type of a JSON value.
type Kind uint8

// Value kinds. Int is a number literal without fraction or exponent (a Python int),
// Float any other number literal.
const (
	Null Kind = iota
	False
	True
	Int
	Float
	String
	Array
	Object
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case False, True:
		return "a boolean"
	case Int, Float:
		return "a number"
	case String:
		return "a string"
	case Array:
		return "an array"
	case Object:
		return "an object"
	}
	return "unknown"
}

// DefaultMaxDepth bounds nesting; Python's own decoder gives up near 1000 levels.
const DefaultMaxDepth = 1000

// MaxIntDigits is the longest integer literal Python's json.loads accepts: longer ones
// raise ValueError (sys.int_info.default_max_str_digits).
const MaxIntDigits = 4300

// ErrSyntax wraps every parse error.
var ErrSyntax = errors.New("invalid JSON")

// SyntaxError says what is wrong and where.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

// Is makes errors.Is(err, ErrSyntax) match.
func (e *SyntaxError) Is(target error) bool { return target == ErrSyntax }

// node is one value on the tape. A container is followed by its children (an object's
// by key and value, alternately); skip is the index just past its subtree.
type node struct {
	kind Kind
	// esc: a string holds escapes or characters Python escapes (so it cannot be
	// copied through as is); a number is "-0".
	esc   bool
	start int32 // first byte (strings: after the opening quote)
	end   int32 // one past the last byte (strings: before the closing quote)
	n     int32 // containers: children (objects: members)
	skip  int32
}

// Doc holds one parsed value. The zero Doc is ready to use; reuse it to keep its
// scratch.
type Doc struct {
	// MaxDepth bounds nesting (0: DefaultMaxDepth).
	MaxDepth int

	src      []byte
	tape     []node
	depth    int
	maxSeen  int
	members  []member
	arena    []byte
	ovs      [][]byte
	overflow bool // some number overflows a float64
	lone     bool // some string holds a lone surrogate escape
}

// Node is a value inside a Doc, valid until the Doc parses again.
type Node struct {
	d *Doc
	i int32
}

// Parse reads one JSON value from src, which must stay unchanged while the Doc is in
// use. Surrounding whitespace is allowed; anything else after the value is an error.
func (d *Doc) Parse(src []byte) error {
	if len(src) > 1<<31-1 {
		return &SyntaxError{0, "document larger than 2 GiB"}
	}
	d.src, d.tape, d.depth, d.maxSeen, d.overflow, d.lone = src, d.tape[:0], 0, 0, false, false
	pos := skipSpace(src, 0)
	pos, err := d.value(pos)
	if err != nil {
		return err
	}
	if pos = skipSpace(src, pos); pos != len(src) {
		return &SyntaxError{pos, "data after the value"}
	}
	return nil
}

// Root is the parsed value.
func (d *Doc) Root() Node { return Node{d, 0} }

// Depth is the deepest nesting of containers (a scalar document has depth 0).
func (d *Doc) Depth() int { return d.maxSeen }

// FloatOverflow reports whether some number in the document is beyond the range of a
// float64 (Python loads it as inf, or cannot load it; other readers reject it).
func (d *Doc) FloatOverflow() bool { return d.overflow }

// LoneSurrogate reports whether some string holds a \uD800-\uDFFF escape that is not
// half of a pair (Python keeps it; Rust's serde_json rejects the document).
func (d *Doc) LoneSurrogate() bool { return d.lone }

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (d *Doc) maxDepth() int {
	if d.MaxDepth > 0 {
		return d.MaxDepth
	}
	return DefaultMaxDepth
}

func (d *Doc) value(pos int) (int, error) {
	src := d.src
	if pos >= len(src) {
		return pos, &SyntaxError{pos, "unexpected end of input"}
	}
	switch c := src[pos]; {
	case c == '{':
		return d.container(pos, Object)
	case c == '[':
		return d.container(pos, Array)
	case c == '"':
		return d.str(pos)
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number(pos)
	case c == 't':
		return d.literal(pos, "true", True)
	case c == 'f':
		return d.literal(pos, "false", False)
	case c == 'n':
		return d.literal(pos, "null", Null)
	default:
		return pos, &SyntaxError{pos, fmt.Sprintf("unexpected character %q", c)}
	}
}

func (d *Doc) literal(pos int, lit string, k Kind) (int, error) {
	if len(d.src)-pos < len(lit) || string(d.src[pos:pos+len(lit)]) != lit {
		return pos, &SyntaxError{pos, "invalid literal"}
	}
	d.tape = append(d.tape, node{kind: k, start: int32(pos), end: int32(pos + len(lit)), skip: int32(len(d.tape) + 1)})
	return pos + len(lit), nil
}

func (d *Doc) container(pos int, k Kind) (int, error) {
	d.depth++
	if d.depth > d.maxDepth() {
		return pos, &SyntaxError{pos, fmt.Sprintf("nesting deeper than %d levels", d.maxDepth())}
	}
	d.maxSeen = max(d.maxSeen, d.depth)
	idx := len(d.tape)
	d.tape = append(d.tape, node{kind: k, start: int32(pos)})
	closer := byte(']')
	if k == Object {
		closer = '}'
	}
	pos = skipSpace(d.src, pos+1)
	var n int32
	if pos < len(d.src) && d.src[pos] == closer {
		pos++
	} else {
		for {
			var err error
			if k == Object {
				if pos >= len(d.src) || d.src[pos] != '"' {
					return pos, &SyntaxError{pos, "expected a string key"}
				}
				if pos, err = d.str(pos); err != nil {
					return pos, err
				}
				pos = skipSpace(d.src, pos)
				if pos >= len(d.src) || d.src[pos] != ':' {
					return pos, &SyntaxError{pos, "expected ':' after an object key"}
				}
				pos = skipSpace(d.src, pos+1)
			}
			if pos, err = d.value(pos); err != nil {
				return pos, err
			}
			n++
			pos = skipSpace(d.src, pos)
			if pos >= len(d.src) {
				return pos, &SyntaxError{pos, "unexpected end of input"}
			}
			if d.src[pos] == ',' {
				pos = skipSpace(d.src, pos+1)
				continue
			}
			if d.src[pos] == closer {
				pos++
				break
			}
			return pos, &SyntaxError{pos, fmt.Sprintf("expected ',' or %q", closer)}
		}
	}
	d.depth--
	t := &d.tape[idx]
	t.n, t.end, t.skip = n, int32(pos), int32(len(d.tape))
	return pos, nil
}

// str scans a string starting at its opening quote.
func (d *Doc) str(pos int) (int, error) {
	src := d.src
	start := pos + 1
	esc := false
	i := start
	for {
		// Fast path: printable ASCII other than the quote and backslash.
		for i < len(src) && plain[src[i]] {
			i++
		}
		if i >= len(src) {
			return i, &SyntaxError{pos, "unterminated string"}
		}
		c := src[i]
		switch {
		case c == '"':
			d.tape = append(d.tape, node{kind: String, esc: esc, start: int32(start), end: int32(i), skip: int32(len(d.tape) + 1)})
			return i + 1, nil
		case c == '\\':
			esc = true
			if i+1 >= len(src) {
				return i, &SyntaxError{i, "unterminated escape"}
			}
			switch src[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(src) || !isHex4(src[i+2:i+6]) {
					return i, &SyntaxError{i, "invalid \\u escape"}
				}
				if cu := hex4(src[i+2:]); cu >= 0xd800 && cu <= 0xdfff {
					if cu < 0xdc00 && i+12 <= len(src) && src[i+6] == '\\' && src[i+7] == 'u' && isHex4(src[i+8:i+12]) {
						if lo := hex4(src[i+8:]); lo >= 0xdc00 && lo <= 0xdfff {
							i += 12
							continue
						}
					}
					d.lone = true
				}
				i += 6
			default:
				return i, &SyntaxError{i, fmt.Sprintf("invalid escape \\%c", src[i+1])}
			}
		case c < 0x20:
			return i, &SyntaxError{i, "control character in string"}
		case c == 0x7f:
			esc = true
			i++
		default:
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size <= 1 {
				return i, &SyntaxError{i, "invalid UTF-8 in string"}
			}
			esc = true
			i += size
		}
	}
}

// plain marks the bytes a string can hold that Python prints as they are.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex4(b []byte) bool {
	for _, c := range b {
		if hexVal(c) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func (d *Doc) number(pos int) (int, error) {
	src := d.src
	i := pos
	if src[i] == '-' {
		i++
	}
	if i >= len(src) {
		return i, &SyntaxError{pos, "invalid number"}
	}
	switch {
	case src[i] == '0':
		i++
	case src[i] >= '1' && src[i] <= '9':
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
	default:
		return i, &SyntaxError{pos, "invalid number"}
	}
	k := Int
	if i < len(src) && src[i] == '.' {
		k = Float
		i++
		j := i
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
		if i == j {
			return i, &SyntaxError{pos, "invalid number: no digits after '.'"}
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		k = Float
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		j := i
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
		if i == j {
			return i, &SyntaxError{pos, "invalid number: no exponent digits"}
		}
	}
	lit := src[pos:i]
	nd := node{kind: k, start: int32(pos), end: int32(i), skip: int32(len(d.tape) + 1)}
	if k == Int {
		digits := len(lit)
		if lit[0] == '-' {
			digits--
		}
		if digits > MaxIntDigits {
			return i, &SyntaxError{pos, fmt.Sprintf("integer with %d digits: Python's json.loads refuses more than %d", digits, MaxIntDigits)}
		}
		nd.esc = len(lit) == 2 && lit[0] == '-' && lit[1] == '0'
		// A float64 holds up to about 1.8e308: 309 digits.
		if digits > 308 && intOverflowsFloat(lit) {
			d.overflow = true
		}
	} else if floatOverflows(lit) {
		d.overflow = true
	}
	d.tape = append(d.tape, nd)
	return i, nil
}
