package rebuild

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// A shared prediction is a team's lastBuild in a compact binary form, for a
// PredictionStore. The form is versioned; a reader refuses any other version, and
// refuses anything malformed with an error, never a partial index. A wrong but
// well-formed prediction costs only a second streaming pass (the streaming pass
// checks every row against it), so a stale, foreign or tampered entry can make a
// build slower, never its payloads different.
//
//	magic "FWPX" · version 1 · uvarint team · string contract · changed
//	skip:  uvarint n · n × (id, string key, string code, string detail)
//	drop:  uvarint n · n × (id, string reason)
//	fjCohorts, defCohortsAll, defCohortsKept: uvarint n · n × id
//	deps:  uvarint n · n × (id, byte flags, string key, uvarint refs · refs × string)
//
// Ids are strictly increasing in each list: the first a varint, each next one its
// distance from the previous as a uvarint (> 0). A string is a uvarint length and its
// bytes. changed is a byte 0 (the last build saw no flags) or 1 followed by the varint
// seconds and uvarint nanoseconds of the Unix time.

const (
	predictionMagic   = "FWPX"
	predictionVersion = 1
)

// maxDecodedPrediction bounds the index a shared prediction decodes to, by
// teamIndex.size's estimate; an index larger than that is not shared.
const maxDecodedPrediction = 2 * MaxSharedPredictionBytes

// ErrBadPrediction is what decoding a malformed shared prediction returns (wrapped).
var ErrBadPrediction = errors.New("malformed shared prediction")

// encodePrediction is b's shared form, for team and contract.
func encodePrediction(team int64, c Contract, b lastBuild) []byte {
	x := b.index
	out := make([]byte, 0, 64+x.size())
	out = append(out, predictionMagic...)
	out = append(out, predictionVersion)
	out = binary.AppendUvarint(out, uint64(team))
	out = appendPredString(out, string(c))
	if b.changed.IsZero() {
		out = append(out, 0)
	} else {
		out = append(out, 1)
		out = binary.AppendVarint(out, b.changed.Unix())
		out = binary.AppendUvarint(out, uint64(b.changed.Nanosecond()))
	}
	skips := slices.Sorted(mapKeys(x.skip))
	out = binary.AppendUvarint(out, uint64(len(skips)))
	var ids idWriter
	for _, id := range skips {
		s := x.skip[id]
		out = ids.append(out, id)
		out = appendPredString(appendPredString(appendPredString(out, s.key), s.code), s.detail)
	}
	drops := slices.Sorted(mapKeys(x.drop))
	out = binary.AppendUvarint(out, uint64(len(drops)))
	ids = idWriter{}
	for _, id := range drops {
		out = appendPredString(ids.append(out, id), x.drop[id])
	}
	for _, list := range [][]int64{x.fjCohorts, x.defCohortsAll, x.defCohortsKept} {
		out = binary.AppendUvarint(out, uint64(len(list)))
		ids = idWriter{}
		for _, id := range list {
			out = ids.append(out, id)
		}
	}
	t := &x.deps
	out = binary.AppendUvarint(out, uint64(t.len()))
	ids = idWriter{}
	var refs []string
	for i := range t.len() {
		out = ids.append(out, t.ids[i])
		out = appendPredString(append(out, t.flags[i]), t.key(i))
		refs = refs[:0]
		t.eachRef(i, func(r string) { refs = append(refs, r) })
		out = binary.AppendUvarint(out, uint64(len(refs)))
		for _, r := range refs {
			out = appendPredString(out, r)
		}
	}
	return out
}

func appendPredString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// idWriter writes a strictly increasing id list.
type idWriter struct {
	prev    int64
	started bool
}

func (w *idWriter) append(b []byte, id int64) []byte {
	if !w.started {
		w.prev, w.started = id, true
		return binary.AppendVarint(b, id)
	}
	d := uint64(id - w.prev)
	w.prev = id
	return binary.AppendUvarint(b, d)
}

// decodePrediction reads a shared prediction written for team and contract.
func decodePrediction(b []byte, team int64, c Contract) (lastBuild, error) {
	d := predDecoder{b: b}
	if len(b) < len(predictionMagic)+1 || string(b[:len(predictionMagic)]) != predictionMagic {
		return lastBuild{}, fmt.Errorf("%w: not a flagwarden prediction", ErrBadPrediction)
	}
	if v := b[len(predictionMagic)]; v != predictionVersion {
		return lastBuild{}, fmt.Errorf("%w: version %d, this build reads %d", ErrBadPrediction, v, predictionVersion)
	}
	d.b = b[len(predictionMagic)+1:]
	if got := d.uvarint(); d.err == nil && got != uint64(team) {
		return lastBuild{}, fmt.Errorf("%w: written for team %d, read for team %d", ErrBadPrediction, got, team)
	}
	if got := d.str(); d.err == nil && got != string(c) {
		return lastBuild{}, fmt.Errorf("%w: written for contract %q, read for %q", ErrBadPrediction, got, c)
	}
	var lb lastBuild
	switch d.byte() {
	case 0:
	case 1:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= uint64(time.Second) {
			d.fail("nanoseconds %d", nsec)
		}
		lb.changed = time.Unix(sec, int64(nsec)).UTC()
	default:
		d.fail("change time marker")
	}
	x := newIndex()
	// held is what the index will take (teamIndex.size's estimate): a map entry costs
	// far more than its few encoded bytes, so a small value must not grow into a large
	// index.
	held := int64(256)
	hold := func(n int64) {
		if held += n; held > maxDecodedPrediction {
			d.fail("the index would take more than %d MiB", maxDecodedPrediction>>20)
		}
	}
	n := d.count(4)
	ids := idReader{d: &d}
	for range n {
		id := ids.next()
		key, code, detail := d.str(), d.str(), d.str()
		if hold(64 + int64(len(key)+len(code)+len(detail))); d.err != nil {
			break
		}
		x.skip[id] = skipInfo{key: key, code: code, detail: detail}
	}
	n = d.count(2)
	ids = idReader{d: &d}
	for range n {
		id := ids.next()
		reason := d.str()
		if hold(64 + int64(len(reason))); d.err != nil {
			break
		}
		x.drop[id] = reason
	}
	for _, list := range []*[]int64{&x.fjCohorts, &x.defCohortsAll, &x.defCohortsKept} {
		n = d.count(1)
		ids = idReader{d: &d}
		l := make([]int64, 0, n)
		for range n {
			l = append(l, ids.next())
		}
		*list = l
	}
	n = d.count(4)
	ids = idReader{d: &d}
	var refs []string
	for range n {
		id := ids.next()
		flags := d.byte()
		if flags&^(depActive|depEncrypted|depRemote) != 0 {
			d.fail("dependency flags %#x", flags)
		}
		key := d.str()
		refs = refs[:0]
		for range d.count(1) {
			refs = append(refs, d.str())
		}
		held := 8 + 1 + 4*2 + int64(len(key))
		for _, r := range refs {
			held += 4 + int64(len(r))
		}
		if hold(held); d.err != nil {
			break
		}
		x.deps.add(id, key, flags, refs)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes after the end", len(d.b))
	}
	if d.err != nil {
		return lastBuild{}, d.err
	}
	lb.index = x
	return lb, nil
}

// predDecoder reads a shared prediction; after the first error every read returns
// zero values and err says what was wrong.
type predDecoder struct {
	b   []byte
	err error
}

func (d *predDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadPrediction, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

func (d *predDecoder) uvarint() uint64 { return readNumber(d, binary.Uvarint) }
func (d *predDecoder) varint() int64   { return readNumber(d, binary.Varint) }

func readNumber[T uint64 | int64](d *predDecoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.fail("truncated or overlong number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *predDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *predDecoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("a string of %d bytes with %d left", n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads a list length; each entry takes at least min bytes, so a length the
// rest cannot hold is refused before anything is allocated for it.
func (d *predDecoder) count(min int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/min) {
		d.fail("%d entries in %d bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

// idReader reads a strictly increasing id list.
type idReader struct {
	d       *predDecoder
	prev    int64
	started bool
}

func (r *idReader) next() int64 {
	if !r.started {
		r.started = true
		r.prev = r.d.varint()
		return r.prev
	}
	delta := r.d.uvarint()
	if r.d.err != nil {
		return 0
	}
	next := r.prev + int64(delta)
	if delta == 0 || delta > uint64(1<<63-1) || next <= r.prev {
		r.d.fail("ids not increasing after %d", r.prev)
		return 0
	}
	r.prev = next
	return next
}
