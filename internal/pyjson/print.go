package pyjson

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Member is a member to add to, or replace in, an object as it is printed. Value is
// already Python text (from AppendString, AppendValue or the like).
type Member struct {
	Key   string
	Value []byte
}

// Overrides supplies extra members for chosen objects while a value is printed: the
// definitions payload rewrites flag-dependency properties this way without a second
// copy of the document.
type Overrides interface {
	// Members returns the members to add or replace in the object n, sorted by key, or
	// nil.
	Members(n Node) []Member
}

// member is one object member while an object is printed.
type member struct {
	prefix  uint64 // first 8 key bytes, big-endian: most comparisons end here
	k0, k1  int32  // key bytes: d.src, or d.arena when inArena
	val     int32  // tape index of the value; -1: override value d.ovs[ov]
	ord     int32
	ov      int32
	inArena bool
}

func keyPrefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var p uint64
	for _, c := range k {
		p = p<<8 | uint64(c)
	}
	return p << (8 * (8 - len(k)))
}

// Append parses src and appends its Python form to dst, with a Doc of its own.
func Append(dst, src []byte) ([]byte, error) {
	var d Doc
	if err := d.Parse(src); err != nil {
		return dst, err
	}
	return d.Append(dst, d.Root(), nil), nil
}

// Print appends the Python form of n to dst.
func Print(dst []byte, n Node) []byte { return n.d.Append(dst, n, nil) }

// Append appends the Python form of n (part of d) to dst; ov may be nil.
func (d *Doc) Append(dst []byte, n Node, ov Overrides) []byte {
	d.arena, d.ovs = d.arena[:0], d.ovs[:0]
	dst = d.appendNode(dst, n.i, ov)
	clear(d.ovs) // drop references to the caller's values
	return dst
}

func (d *Doc) appendNode(dst []byte, i int32, ov Overrides) []byte {
	t := &d.tape[i]
	switch t.kind {
	case Null:
		return append(dst, "null"...)
	case False:
		return append(dst, "false"...)
	case True:
		return append(dst, "true"...)
	case Int:
		if t.esc { // -0
			return append(dst, '0')
		}
		return append(dst, d.src[t.start:t.end]...)
	case Float:
		f, _ := strconv.ParseFloat(string(d.src[t.start:t.end]), 64)
		return AppendFloat(dst, f)
	case String:
		return appendStringBody(dst, d.src[t.start:t.end], t.esc)
	case Array:
		dst = append(dst, '[')
		c := i + 1
		for k := range t.n {
			if k > 0 {
				dst = append(dst, ", "...)
			}
			dst = d.appendNode(dst, c, ov)
			c = d.tape[c].skip
		}
		return append(dst, ']')
	}
	return d.appendObject(dst, i, ov)
}

func (d *Doc) appendObject(dst []byte, i int32, ov Overrides) []byte {
	t := d.tape[i]
	var extra []Member
	if ov != nil {
		extra = ov.Members(Node{d, i})
	}
	if t.n == 0 && len(extra) == 0 {
		return append(dst, "{}"...)
	}
	if len(extra) == 0 && t.n <= smallObject {
		if out, ok := d.appendSmallObject(dst, i, t.n, ov); ok {
			return out
		}
	}
	base := len(d.members)
	c := i + 1
	for k := range t.n {
		kt := d.tape[c]
		m := member{val: c + 1, ord: k}
		if kt.esc {
			a0 := len(d.arena)
			d.arena = unescape(d.arena, d.src[kt.start:kt.end])
			m.k0, m.k1, m.inArena = int32(a0), int32(len(d.arena)), true
		} else {
			m.k0, m.k1 = kt.start, kt.end
		}
		m.prefix = keyPrefix(d.keyBytes(m))
		d.members = append(d.members, m)
		c = d.tape[c+1].skip
	}
	ms := d.members[base:]
	if len(ms) > 1 {
		d.sortMembers(ms)
		ms = d.dedup(ms)
	}
	if len(extra) > 0 {
		ms = d.merge(base, ms, extra)
	}
	dst = append(dst, '{')
	for k := range ms {
		m := d.members[base+k] // re-read: nested objects may grow d.members
		if k > 0 {
			dst = append(dst, ", "...)
		}
		key := d.keyBytes(m)
		if m.inArena {
			dst = AppendString(dst, string(key))
		} else {
			dst = appendStringBody(dst, key, false)
		}
		dst = append(dst, ": "...)
		if m.val < 0 {
			dst = append(dst, d.ovs[m.ov]...)
		} else {
			dst = d.appendNode(dst, m.val, ov)
		}
	}
	d.members = d.members[:base]
	return append(dst, '}')
}

// smallObject is the most members an object may have to be sorted on the stack: flag
// filters are made of such objects, and the shared member stack costs them more than
// their printing.
const smallObject = 8

// appendSmallObject prints an object of at most smallObject members whose keys print
// as they are, or reports false (having written nothing) for appendObject to do it.
func (d *Doc) appendSmallObject(dst []byte, i, n int32, ov Overrides) ([]byte, bool) {
	type small struct {
		prefix      uint64
		k0, k1, val int32
	}
	var arr [smallObject]small
	ms := arr[:n]
	c := i + 1
	for k := range ms {
		kt := &d.tape[c]
		if kt.esc {
			return dst, false
		}
		ms[k] = small{prefix: keyPrefix(d.src[kt.start:kt.end]), k0: kt.start, k1: kt.end, val: c + 1}
		c = d.tape[c+1].skip
	}
	key := func(m small) []byte { return d.src[m.k0:m.k1] }
	// Insertion sort, stable: of equal keys the last stays last, and is the one kept.
	for a := 1; a < len(ms); a++ {
		for b := a; b > 0; b-- {
			x, y := ms[b], ms[b-1]
			if x.prefix > y.prefix || x.prefix == y.prefix && bytes.Compare(key(x), key(y)) >= 0 {
				break
			}
			ms[b], ms[b-1] = y, x
		}
	}
	dst = append(dst, '{')
	first := true
	for k, m := range ms {
		if k+1 < len(ms) && ms[k+1].prefix == m.prefix && bytes.Equal(key(ms[k+1]), key(m)) {
			continue // a later duplicate wins, as in a Python dict
		}
		if !first {
			dst = append(dst, ", "...)
		}
		first = false
		dst = append(append(append(dst, '"'), key(m)...), `": `...)
		dst = d.appendNode(dst, m.val, ov)
	}
	return append(dst, '}'), true
}

func (d *Doc) keyBytes(m member) []byte {
	if m.inArena {
		return d.arena[m.k0:m.k1]
	}
	return d.src[m.k0:m.k1]
}

func (d *Doc) sortMembers(ms []member) {
	if len(ms) <= 12 {
		// Insertion sort: objects are small and this avoids the closure.
		for a := 1; a < len(ms); a++ {
			for b := a; b > 0 && d.less(ms[b], ms[b-1]); b-- {
				ms[b], ms[b-1] = ms[b-1], ms[b]
			}
		}
		return
	}
	slices.SortStableFunc(ms, d.compare)
}

// compare orders by key (UTF-8 byte order is code point order), then input order.
func (d *Doc) compare(a, b member) int {
	if a.prefix != b.prefix {
		return cmp.Compare(a.prefix, b.prefix)
	}
	if c := bytes.Compare(d.keyBytes(a), d.keyBytes(b)); c != 0 {
		return c
	}
	return cmp.Compare(a.ord, b.ord)
}

func (d *Doc) less(a, b member) bool { return d.compare(a, b) < 0 }

// dedup keeps the last of equal keys, as a Python dict does.
func (d *Doc) dedup(ms []member) []member {
	out := ms[:1]
	for _, m := range ms[1:] {
		if last := out[len(out)-1]; last.prefix == m.prefix && bytes.Equal(d.keyBytes(last), d.keyBytes(m)) {
			out[len(out)-1] = m
			continue
		}
		out = append(out, m)
	}
	d.members = d.members[:len(d.members)-(len(ms)-len(out))]
	return out
}

// merge folds override members (sorted by key) into the sorted members at base.
func (d *Doc) merge(base int, ms []member, extra []Member) []member {
	n := len(ms)
	for _, e := range extra {
		replaced := false
		for k := range n {
			if string(d.keyBytes(d.members[base+k])) == e.Key {
				m := &d.members[base+k]
				m.val, m.ov = -1, int32(len(d.ovs))
				d.ovs = append(d.ovs, e.Value)
				replaced = true
				break
			}
		}
		if !replaced {
			a0 := len(d.arena)
			d.arena = append(d.arena, e.Key...)
			m := member{k0: int32(a0), k1: int32(len(d.arena)), inArena: true, val: -1, ov: int32(len(d.ovs)), ord: int32(len(d.members) - base)}
			m.prefix = keyPrefix(d.keyBytes(m))
			d.ovs = append(d.ovs, e.Value)
			d.members = append(d.members, m)
		}
	}
	ms = d.members[base:]
	d.sortMembers(ms)
	return ms
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as Python prints a str with ensure_ascii (s is UTF-8;
// invalid bytes print as U+FFFD).
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			j := i + 1
			for j < len(s) && s[j] >= 0x20 && s[j] < 0x7f && s[j] != '"' && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		if c < 0x80 {
			dst = appendEscapedUnit(dst, uint16(c))
			i++
			continue
		}
		if c == 0xed && i+2 < len(s) && s[i+1] >= 0xa0 && s[i+1] <= 0xbf && s[i+2]&0xc0 == 0x80 {
			// A lone surrogate that unescape wrote as WTF-8: print the code unit.
			cu := uint16(c&0x0f)<<12 | uint16(s[i+1]&0x3f)<<6 | uint16(s[i+2]&0x3f)
			dst = appendEscapedUnit(dst, cu)
			i += 3
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		dst = appendEscapedRune(dst, r)
		i += size
	}
	return append(dst, '"')
}

// appendStringBody prints a JSON string body (escapes still in place); a body without
// escapes or non-ASCII goes through as is.
func appendStringBody(dst, raw []byte, esc bool) []byte {
	dst = append(dst, '"')
	if !esc {
		dst = append(dst, raw...)
		return append(dst, '"')
	}
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch e := raw[i+1]; e {
			case 'u':
				cu := hex4(raw[i+2:])
				if cu >= 0xd800 && cu < 0xdc00 && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					if lo := hex4(raw[i+8:]); lo >= 0xdc00 && lo <= 0xdfff {
						dst = appendEscapedUnit(appendEscapedUnit(dst, cu), lo)
						i += 12
						continue
					}
				}
				dst = appendEscapedUnit(dst, cu)
				i += 6
			case 'b', 'f', 'n', 'r', 't', '"', '\\':
				dst = append(dst, '\\', e)
				i += 2
			default: // '/'
				dst = append(dst, '/')
				i += 2
			}
		case c >= 0x20 && c < 0x7f:
			j := i + 1
			for j < len(raw) && (plain[raw[j]] || raw[j] == '"') {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
		case c < 0x80: // DEL
			dst = appendEscapedUnit(dst, uint16(c))
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			dst = appendEscapedRune(dst, r)
			i += size
		}
	}
	return append(dst, '"')
}

func appendEscapedRune(dst []byte, r rune) []byte {
	if r < 0x10000 {
		return appendEscapedUnit(dst, uint16(r))
	}
	hi, lo := utf16.EncodeRune(r)
	return appendEscapedUnit(appendEscapedUnit(dst, uint16(hi)), uint16(lo))
}

// appendEscapedUnit prints one UTF-16 code unit as Python's ensure_ascii does.
func appendEscapedUnit(dst []byte, cu uint16) []byte {
	switch cu {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	if cu >= 0x20 && cu < 0x7f {
		return append(dst, byte(cu))
	}
	return append(dst, '\\', 'u', hexDigits[cu>>12], hexDigits[cu>>8&0xf], hexDigits[cu>>4&0xf], hexDigits[cu&0xf])
}

// AppendFloat appends f as Python's json.dumps prints a float: repr(f), or NaN,
// Infinity and -Infinity.
func AppendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // [-]d[.ddd]e±XX
	neg := e[0] == '-'
	if neg {
		e = e[1:]
		dst = append(dst, '-')
	}
	ep := bytes.IndexByte(e, 'e')
	mant, exp := e[:ep], e[ep+1:]
	x, _ := strconv.Atoi(string(exp))
	var dbuf [24]byte
	digits := append(dbuf[:0], mant[0])
	if len(mant) > 2 {
		digits = append(digits, mant[2:]...)
	}
	if x < -4 || x >= 16 {
		dst = append(dst, digits[0])
		if len(digits) > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if x < 0 {
			dst = append(dst, '-')
			x = -x
		} else {
			dst = append(dst, '+')
		}
		if x < 10 {
			dst = append(dst, '0')
		}
		return strconv.AppendInt(dst, int64(x), 10)
	}
	point := x + 1 // digits before the decimal point
	switch {
	case point <= 0:
		dst = append(dst, "0."...)
		for range -point {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	case point >= len(digits):
		dst = append(dst, digits...)
		for range point - len(digits) {
			dst = append(dst, '0')
		}
		return append(dst, ".0"...)
	default:
		dst = append(dst, digits[:point]...)
		dst = append(dst, '.')
		return append(dst, digits[point:]...)
	}
}
