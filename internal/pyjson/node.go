package pyjson

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

func (n Node) t() *node { return &n.d.tape[n.i] }

// Valid reports whether n refers to a value (the zero Node and a missing member do
// not).
func (n Node) Valid() bool { return n.d != nil }

// Kind is the value's type; a missing value reports Null.
func (n Node) Kind() Kind {
	if n.d == nil {
		return Null
	}
	return n.t().kind
}

// Raw is the value's JSON text as it appears in the input.
func (n Node) Raw() []byte {
	t := n.t()
	if t.kind == String {
		return n.d.src[t.start-1 : t.end+1]
	}
	return n.d.src[t.start:t.end]
}

// Len is the number of elements of an array or members of an object, else 0.
func (n Node) Len() int {
	if n.d == nil {
		return 0
	}
	t := n.t()
	if t.kind != Array && t.kind != Object {
		return 0
	}
	return int(t.n)
}

// Elems calls fn for each element of an array, in order, until fn returns false.
func (n Node) Elems(fn func(Node) bool) {
	if n.Kind() != Array {
		return
	}
	c := n.i + 1
	for range n.t().n {
		if !fn(Node{n.d, c}) {
			return
		}
		c = n.d.tape[c].skip
	}
}

// Members calls fn for each member of an object in input order (duplicates included)
// until fn returns false.
func (n Node) Members(fn func(key, val Node) bool) {
	if n.Kind() != Object {
		return
	}
	c := n.i + 1
	for range n.t().n {
		v := c + 1
		if !fn(Node{n.d, c}, Node{n.d, v}) {
			return
		}
		c = n.d.tape[v].skip
	}
}

// Get returns the object member named key (the last one, as Python keeps), or an
// invalid Node.
func (n Node) Get(key string) Node {
	if n.Kind() != Object {
		return Node{}
	}
	found := int32(-1)
	tape := n.d.tape
	c := n.i + 1
	for range tape[n.i].n {
		if n.d.keyIs(&tape[c], key) {
			found = c + 1
		}
		c = tape[c+1].skip
	}
	if found < 0 {
		return Node{}
	}
	return Node{n.d, found}
}

// Lookup finds the named members of an object in one pass over its members, the last
// of duplicates as Python keeps: out[i] is the value of names[i], or invalid. out must
// be as long as names.
func (n Node) Lookup(names []string, out []Node) {
	clear(out)
	if n.Kind() != Object {
		return
	}
	tape := n.d.tape
	c := n.i + 1
	for range tape[n.i].n {
		kt := &tape[c]
		if kt.esc {
			for i, name := range names {
				if n.d.escapedKeyIs(kt, name) {
					out[i] = Node{n.d, c + 1}
					break
				}
			}
		} else {
			// The common case, compared in place: keyIs is too big to inline, and this
			// loop tries every name on every member.
			key := n.d.src[kt.start:kt.end]
			for i, name := range names {
				if len(key) == len(name) && string(key) == name {
					out[i] = Node{n.d, c + 1}
					break
				}
			}
		}
		c = tape[c+1].skip
	}
}

// keyIs reports whether the string (an object key or a value) at t is s: a plain one is
// compared in place (length first), an escaped one after unescaping.
func (d *Doc) keyIs(t *node, s string) bool {
	if !t.esc {
		return int(t.end-t.start) == len(s) && string(d.src[t.start:t.end]) == s
	}
	return d.escapedKeyIs(t, s)
}

func (d *Doc) escapedKeyIs(t *node, s string) bool {
	var buf [64]byte
	return string(unescape(buf[:0], d.src[t.start:t.end])) == s
}

// Has reports whether an object has a member named key.
func (n Node) Has(key string) bool { return n.Get(key).Valid() }

// Equal reports whether a string value equals s (after unescaping).
func (n Node) Equal(s string) bool {
	if n.Kind() != String {
		return false
	}
	return n.d.keyIs(n.t(), s)
}

// Str returns a string value unescaped (lone surrogates as U+FFFD), and whether n is a
// string.
func (n Node) Str() (string, bool) {
	if n.Kind() != String {
		return "", false
	}
	t := n.t()
	raw := n.d.src[t.start:t.end]
	if !t.esc {
		return string(raw), true
	}
	return string(unescape(nil, raw)), true
}

// Int returns an Int value that fits an int64.
func (n Node) Int() (int64, bool) {
	if n.Kind() != Int {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n.Raw()), 10, 64)
	return v, err == nil
}

// Float returns a number as Python's float() would read it (±Inf on overflow).
func (n Node) Float() (float64, bool) {
	if k := n.Kind(); k != Int && k != Float {
		return 0, false
	}
	f, _ := strconv.ParseFloat(string(n.Raw()), 64)
	return f, true
}

// IsIntegral reports whether a number has an integral value (1, 1.0, 1e2), as Rust's
// serde_json reads integers only from integer literals; use Kind() == Int for that.
func (n Node) IsIntegral() bool {
	f, ok := n.Float()
	return ok && f == math.Trunc(f) && !math.IsInf(f, 0)
}

// unescape appends the characters of a JSON string body (between the quotes) as UTF-8;
// a lone surrogate is written as WTF-8 so that byte order stays code point order.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			cu := hex4(raw[i+2:])
			if utf16.IsSurrogate(rune(cu)) && cu < 0xdc00 && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
				if lo := hex4(raw[i+8:]); lo >= 0xdc00 && lo <= 0xdfff {
					dst = utf8.AppendRune(dst, utf16.DecodeRune(rune(cu), rune(lo)))
					i += 12
					continue
				}
			}
			dst = appendWTF8(dst, cu)
			i += 6
			continue
		default: // " \ /
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) uint16 {
	return uint16(hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3]))
}

// appendWTF8 writes a BMP code unit, surrogates included, as three-byte UTF-8 form.
func appendWTF8(dst []byte, cu uint16) []byte {
	if !utf16.IsSurrogate(rune(cu)) {
		return utf8.AppendRune(dst, rune(cu))
	}
	return append(dst, 0xe0|byte(cu>>12), 0x80|byte(cu>>6)&0x3f, 0x80|byte(cu)&0x3f)
}

func intOverflowsFloat(lit []byte) bool {
	f, err := strconv.ParseFloat(string(lit), 64)
	return err != nil || math.IsInf(f, 0)
}

func floatOverflows(lit []byte) bool {
	// Cheap check first: only an exponent or a long mantissa can overflow.
	if len(lit) < 309 && !bytes.ContainsAny(lit, "eE") {
		return false
	}
	f, _ := strconv.ParseFloat(string(lit), 64)
	return math.IsInf(f, 0)
}
