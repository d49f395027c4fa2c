package hypercache

import (
	"bytes"
	"testing"
)

func BenchmarkEncodeSmall(b *testing.B) {
	p := sampleJSON(3000, 1)
	for b.Loop() {
		Encode(p, true)
	}
}

func BenchmarkDecodeSmall(b *testing.B) {
	v := Encode(sampleJSON(3000, 1), true)
	for b.Loop() {
		if _, err := decodeBytes(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriter1MiB(b *testing.B) {
	p := sampleJSON(1<<20, 1)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		w := NewWriter(&memSink{b: make([]byte, 0, 1<<20)}, true)
		w.Write(p)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	_ = bytes.MinRead
}
