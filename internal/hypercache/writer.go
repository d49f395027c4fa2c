package hypercache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Sink receives a value's stored bytes in order. WriteAt patches bytes it has already
// received: the pickle length and the zstd content size, known only at the end.
type Sink interface {
	io.Writer
	io.WriterAt
}

// Writer turns a streamed payload into its stored form with bounded memory: one
// frame target (64 KiB) before the form is decided, then the zstd encoder's window.
//
// A payload shorter than pickle's frame target ends in memory and is written by Close
// exactly as Python pickles it (see Encode). A longer one is written as CPython writes a
// large string, PROTO 4, BINUNICODE, 4-byte length, the bytes, MEMOIZE, STOP, with the
// length patched at Close. Compressed, that stream becomes one zstd frame; its header
// is rewritten to carry an 8-byte content size (python-zstd refuses frames without
// one), and its first block holds only the pickle header, stored verbatim, so that the
// length can be patched inside the compressed value. No later match can refer to
// those placeholder bytes (zero bytes and pickle opcodes never occur in the
// ASCII JSON that follows), so patching them changes nothing else.
type Writer struct {
	sink     countingSink
	compress bool
	small    []byte
	total    int64
	started  bool
	enc      *zstd.Encoder
	frame    *frameRewriter
	lenAt    int64 // where the pickle's 4-byte length sits in the sink
	sizeAt   int64 // where the zstd content size sits, or -1
	err      error
	finished bool
}

// NewWriter returns a writer storing into sink; compress selects PostHog's zstd
// compression (USE_REDIS_COMPRESSION), applied to values over CompressAbove bytes.
func NewWriter(sink Sink, compress bool) *Writer {
	return &Writer{sink: countingSink{s: sink}, compress: compress, sizeAt: -1}
}

// Stored is the number of bytes written to the sink so far (after Close: the stored
// value's length).
func (w *Writer) Stored() int64 { return w.sink.n }

// Len is the number of payload bytes written.
func (w *Writer) Len() int64 { return w.total }

// Write adds payload bytes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.finished {
		return 0, errors.New("hypercache: write after Close")
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.total+int64(len(p)) > maxPickleUnicode {
		w.err = fmt.Errorf("%w: more than %d bytes", ErrTooLarge, int64(maxPickleUnicode))
		return 0, w.err
	}
	w.total += int64(len(p))
	if !w.started {
		if len(w.small)+len(p) < frameTarget {
			w.small = append(w.small, p...)
			return len(p), nil
		}
		if w.err = w.start(); w.err != nil {
			return 0, w.err
		}
		if w.err = w.body(w.small); w.err != nil {
			return 0, w.err
		}
		w.small = nil
	}
	if w.err = w.body(p); w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// largeHeader is the pickle prefix of a large string with its length still zero.
var largeHeader = []byte{opProto, pickleProtocol, opBinUnicode, 0, 0, 0, 0}

var pickleTail = []byte{opMemoize, opStop}

func (w *Writer) start() error {
	w.started = true
	if !w.compress {
		w.lenAt = 3
		_, err := w.sink.Write(largeHeader)
		return err
	}
	w.enc = getEncoder()
	w.frame = &frameRewriter{dst: &w.sink}
	w.enc.Reset(w.frame)
	if _, err := w.enc.Write(largeHeader); err != nil {
		return fmt.Errorf("compress pickle header: %w", err)
	}
	// Flush puts the header alone in the first block, where it stays verbatim.
	if err := w.enc.Flush(); err != nil {
		return fmt.Errorf("compress pickle header: %w", err)
	}
	lenAt, err := w.frame.release()
	if err != nil {
		return err
	}
	w.lenAt, w.sizeAt = lenAt, sizeFieldAt
	return nil
}

func (w *Writer) body(p []byte) error {
	if w.enc == nil {
		_, err := w.sink.Write(p)
		return err
	}
	if _, err := w.enc.Write(p); err != nil {
		return fmt.Errorf("compress payload: %w", err)
	}
	return nil
}

// Close ends the value and patches its header. After an error the sink holds a partial
// value that the caller discards.
func (w *Writer) Close() error {
	if w.finished {
		return w.err
	}
	w.finished = true
	defer w.release()
	if w.err != nil {
		return w.err
	}
	if !w.started {
		_, w.err = w.sink.Write(Encode(w.small, w.compress))
		w.small = nil
		return w.err
	}
	if w.err = w.body(pickleTail); w.err != nil {
		return w.err
	}
	if w.enc != nil {
		if err := w.enc.Close(); err != nil {
			w.err = fmt.Errorf("compress payload: %w", err)
			return w.err
		}
		if w.frame.err != nil {
			w.err = w.frame.err
			return w.err
		}
		var size [8]byte
		binary.LittleEndian.PutUint64(size[:], uint64(len(largeHeader))+uint64(w.total)+uint64(len(pickleTail)))
		if _, err := w.sink.s.WriteAt(size[:], w.sizeAt); err != nil {
			w.err = fmt.Errorf("patch zstd content size: %w", err)
			return w.err
		}
	}
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(w.total))
	if _, err := w.sink.s.WriteAt(n[:], w.lenAt); err != nil {
		w.err = fmt.Errorf("patch pickle length: %w", err)
	}
	return w.err
}

// Abort releases the writer without finishing the value.
func (w *Writer) Abort() {
	if !w.finished {
		w.finished = true
		w.err = errors.New("hypercache: aborted")
		w.release()
	}
}

func (w *Writer) release() {
	if w.enc != nil {
		w.enc.Reset(io.Discard) // drop the reference to the sink before pooling
		putEncoder(w.enc)
		w.enc = nil
	}
}

type countingSink struct {
	s Sink
	n int64
}

func (c *countingSink) Write(p []byte) (int, error) {
	n, err := c.s.Write(p)
	c.n += int64(n)
	return n, err
}

// Frame header fields (RFC 8878, 3.1.1.1).
const (
	fhdSizeFlagMask = 0xC0
	fhdSingleSeg    = 0x20
	fhdChecksum     = 0x04
	fhdDictMask     = 0x03
	fhdSize8        = 0xC0 // Frame_Content_Size_Flag 3: an 8-byte content size
	sizeFieldAt     = 6    // magic (4), descriptor (1), window descriptor (1)
)

// frameRewriter sits between the zstd encoder and the sink. It holds what the encoder
// writes until release, then rewrites the frame header to carry an 8-byte content
// size placeholder and passes everything on.
type frameRewriter struct {
	dst      *countingSink
	held     []byte
	released bool
	err      error
}

func (f *frameRewriter) Write(p []byte) (int, error) {
	if f.released {
		if f.err != nil {
			return 0, f.err
		}
		n, err := f.dst.Write(p)
		if err != nil {
			f.err = err
		}
		return n, err
	}
	f.held = append(f.held, p...)
	return len(p), nil
}

// release writes the rewritten header and the first block to the sink and returns the
// sink offset of the pickle length inside that block.
func (f *frameRewriter) release() (int64, error) {
	f.released = true
	h := f.held
	f.held = nil
	if len(h) < 6 || binary.LittleEndian.Uint32(h) != zstdMagic {
		return 0, errors.New("hypercache: zstd encoder wrote no frame header")
	}
	fhd := h[4]
	if fhd&(fhdSizeFlagMask|fhdSingleSeg|fhdChecksum|fhdDictMask) != 0 {
		return 0, fmt.Errorf("hypercache: unexpected zstd frame descriptor %#x", fhd)
	}
	window, rest := h[5], h[6:]
	i := bytes.Index(rest, largeHeader)
	if i < 0 || bytes.Contains(rest[i+1:], largeHeader) {
		return 0, errors.New("hypercache: zstd encoder did not store the pickle header verbatim")
	}
	out := make([]byte, 0, sizeFieldAt+8+len(rest))
	out = binary.LittleEndian.AppendUint32(out, zstdMagic)
	out = append(out, fhdSize8, window)
	out = append(out, make([]byte, 8)...)
	out = append(out, rest...)
	if _, err := f.dst.Write(out); err != nil {
		f.err = err
		return 0, err
	}
	return int64(sizeFieldAt+8+i) + 3, nil
}
