package hypercache

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"unicode/utf8"
)

func utf8Valid(b []byte) bool { return utf8.Valid(b) }

// FuzzReader feeds arbitrary stored values to the reader: it must never panic, every
// failure must be ErrUndecodable, and what it accepts must survive a round trip.
func FuzzReader(f *testing.F) {
	f.Add(Encode([]byte(`{"flags": []}`), true))
	f.Add(Encode(sampleJSON(3000, 1), true))
	f.Add(Encode([]byte(Missing), false))
	f.Add([]byte("\x80\x05\x8c\x03abc\x94."))
	f.Add([]byte("\x80\x04X\x02\x00\x00\x00ab\x94."))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := NewReader(bytes.NewReader(v))
		if err != nil {
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("error %v does not wrap ErrUndecodable", err)
			}
			return
		}
		defer r.Close()
		got, err := io.ReadAll(io.LimitReader(r, 16<<20))
		if err != nil {
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("error %v does not wrap ErrUndecodable", err)
			}
			return
		}
		if int64(len(got)) != r.Len() {
			return // longer than the limit read here
		}
		again, _ := decodeBytes(Encode(got, true))
		if !bytes.Equal(again, got) {
			t.Fatalf("round trip changed %q", got)
		}
	})
}

// FuzzWriter writes arbitrary payloads in arbitrary pieces: the reader must return
// exactly what was written, compressed or not.
func FuzzWriter(f *testing.F) {
	f.Add([]byte(`{"flags": []}`), uint16(3), true)
	f.Add(sampleJSON(70_000, 2), uint16(4096), true)
	f.Add(sampleJSON(70_000, 3), uint16(1), false)
	f.Fuzz(func(t *testing.T, payload []byte, piece uint16, compress bool) {
		sink := &memSink{}
		w := NewWriter(sink, compress)
		step := int(piece) + 1
		for rest := payload; len(rest) > 0; {
			n := min(step, len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := decodeBytes(sink.b)
		if err != nil {
			if errors.Is(err, ErrUndecodable) && !utf8Valid(payload) {
				return // not text: readers refuse it, as they should
			}
			t.Fatalf("decode: %v", err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("round trip: got %d bytes, wrote %d", len(got), len(payload))
		}
	})
}

func decodeBytes(v []byte) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(v))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
