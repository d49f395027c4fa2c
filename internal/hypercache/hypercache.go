// Package hypercache encodes and decodes flag-cache values the way PostHog's HyperCache
// stores them in Redis, so that PostHog's own readers serve what flagwarden publishes:
// Django's django-redis pickles each value (pickle.DEFAULT_PROTOCOL: 4 on the Pythons
// PostHog runs) and
// PostHog's compressor zstd-compresses the pickle when it is longer than 512 bytes; the
// Rust reader undoes zstd when the value is a zstd frame, then the pickle, then parses
// the JSON.
//
// Payloads are streamed, so a value's length is only known at its end, while both the
// pickle header (the string's length) and the zstd frame header (the content size,
// which python-zstd requires) come first. Writer solves that without holding the
// payload: it writes placeholders and patches them through io.WriterAt once the
// length is known (Redis SETRANGE on the temporary key, before the atomic RENAME).
// Values shorter than pickle's frame target are built in memory and come out
// byte-identical to Python's pickle.
package hypercache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Missing is the pickled string PostHog stores for "this team has no data".
const Missing = "__missing__"

// CompressAbove is PostHog's compressor threshold: a pickled value longer than this is
// zstd-compressed (TolerantZlibCompressor.min_length).
const CompressAbove = 512

// frameTarget is pickle's FRAME_SIZE_TARGET: CPython writes a string of at least this
// many UTF-8 bytes outside a frame, so its header and bytes can be streamed.
const frameTarget = 64 << 10

// Pickle opcodes used by protocol 4 and 5 for a str.
const (
	opProto          = 0x80
	opFrame          = 0x95
	opShortUnicode   = 0x8c // 1-byte length
	opBinUnicode     = 'X'  // 4-byte little-endian length
	opBinUnicode8    = 0x8d // 8-byte little-endian length
	opMemoize        = 0x94
	opBinPut         = 'q' // protocols 1-3 memoize with BINPUT/LONG_BINPUT
	opLongBinPut     = 'r'
	opStop           = '.'
	pickleProtocol   = 4 // what django-redis writes (pickle.DEFAULT_PROTOCOL)
	maxProtocol      = 5 // what readers accept
	zstdMagic        = 0xFD2FB528
	maxPickleUnicode = 1<<32 - 1
)

// ErrUndecodable is wrapped by every decoding error: the value is not what PostHog's
// readers accept, so to them it is a cache miss.
var ErrUndecodable = errors.New("not a PostHog cache value")

// ErrTooLarge means a payload does not fit pickle's 4-byte string length (readers of
// a bigger value do not exist: Redis's own limit is 512 MB).
var ErrTooLarge = errors.New("payload too large for one pickled string")

// AppendPickle appends Python's pickle.dumps(s, 4), what django-redis stores for a str,
// of the string whose UTF-8 bytes are s.
func AppendPickle(dst, s []byte) []byte {
	n := len(s)
	dst = append(dst, opProto, pickleProtocol)
	if n >= frameTarget {
		dst = append(dst, opBinUnicode)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
		dst = append(dst, s...)
		return append(dst, opMemoize, opStop)
	}
	// A framed body: opcode, length, bytes, MEMOIZE, STOP.
	body := 1 + 1 + n + 2
	if n >= 256 {
		body = 1 + 4 + n + 2
	}
	dst = append(dst, opFrame)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(body))
	if n < 256 {
		dst = append(dst, opShortUnicode, byte(n))
	} else {
		dst = append(dst, opBinUnicode)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	}
	dst = append(dst, s...)
	return append(dst, opMemoize, opStop)
}

// Encode returns the stored form of a whole value held in memory: its pickle, zstd
// compressed when compress is set and the pickle is longer than CompressAbove. Use it
// for small values (the :etag, "__missing__"); stream payloads through Writer.
func Encode(s []byte, compress bool) []byte {
	p := AppendPickle(make([]byte, 0, len(s)+16), s)
	if !compress || len(p) <= CompressAbove {
		return p
	}
	enc := getEncoder()
	defer putEncoder(enc)
	return enc.EncodeAll(p, make([]byte, 0, len(p)/3+64))
}

// The zstd encoder settings: the fastest level with a 128 KiB window keeps up with a
// build on one core and bounds the encoder's memory (flag JSON repeats within a few
// kilobytes, so slower levels and larger windows gain a few percent of size for half
// the speed, and a 256 KiB window compressed no better and more slowly on flag rows); no checksum because the pickle header is patched after the bytes that
// follow it were compressed; one goroutine per encoder since the publisher already
// runs it beside the builder.
func newEncoder() *zstd.Encoder {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithWindowSize(128<<10),
		zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		panic(fmt.Sprintf("hypercache: zstd options: %v", err)) // constant options; a test covers them
	}
	return enc
}

var encoders = sync.Pool{New: func() any { return newEncoder() }}

func getEncoder() *zstd.Encoder  { return encoders.Get().(*zstd.Encoder) }
func putEncoder(e *zstd.Encoder) { encoders.Put(e) }
