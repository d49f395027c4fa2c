package hypercache

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// maxDecoderWindow bounds the zstd window a value may ask for; libzstd's default for
// the level PostHog uses is far below it.
const maxDecoderWindow = 64 << 20

// Reader streams the string held in a stored value, as its UTF-8 bytes, and checks
// the value's shape the way PostHog's readers would: a zstd frame (optional), then a
// pickled str and nothing after it. Errors wrap ErrUndecodable. It holds a read buffer
// and the zstd window, never the value.
type Reader struct {
	src     *bufio.Reader
	dec     *zstd.Decoder
	length  uint64
	remain  uint64
	carry   [utf8.UTFMax]byte
	ncarry  int
	scratch []byte
	done    bool
	err     error
	// Compressed reports whether the value was zstd-compressed.
	Compressed bool
}

// NewReader reads the header of the stored value r and returns a reader of its string.
// The caller must Close it.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 32<<10)
	head, err := br.Peek(4)
	if len(head) == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, undecodable("empty value")
		}
		return nil, err
	}
	rd := &Reader{src: br}
	if len(head) == 4 && binary.LittleEndian.Uint32(head) == zstdMagic {
		dec, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxDecoderWindow))
		if err != nil {
			return nil, undecodable("zstd: %v", err)
		}
		rd.dec, rd.Compressed = dec, true
		rd.src = bufio.NewReaderSize(dec, 32<<10)
	}
	if err := rd.header(); err != nil {
		rd.Close()
		return nil, err
	}
	return rd, nil
}

// Len is the string's length in bytes, as its pickle header declares it.
func (r *Reader) Len() int64 { return int64(r.length) }

// Close releases the zstd decoder.
func (r *Reader) Close() {
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
}

func undecodable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUndecodable, fmt.Sprintf(format, args...))
}

// readErr turns a short read into "truncated" and keeps the decoder's own errors.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return undecodable("truncated in %s", what)
	}
	if errors.Is(err, ErrUndecodable) {
		return err
	}
	return undecodable("%s: %v", what, err)
}

func (r *Reader) fixed(n int, what string) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r.src, b); err != nil {
		return nil, readErr(what, err)
	}
	return b, nil
}

// header reads PROTO, optional FRAMEs and the string opcode with its length.
func (r *Reader) header() error {
	b, err := r.fixed(2, "pickle protocol")
	if err != nil {
		return err
	}
	if b[0] != opProto || b[1] < 2 || b[1] > maxProtocol {
		return undecodable("not a pickle of protocol 2 to 5 (starts %#x %#x)", b[0], b[1])
	}
	for {
		op, err := r.src.ReadByte()
		if err != nil {
			return readErr("pickle opcode", err)
		}
		switch op {
		case opFrame:
			if _, err := r.fixed(8, "pickle frame"); err != nil {
				return err
			}
			continue
		case opShortUnicode:
			n, err := r.src.ReadByte()
			if err != nil {
				return readErr("pickle string length", err)
			}
			r.length = uint64(n)
		case opBinUnicode:
			b, err := r.fixed(4, "pickle string length")
			if err != nil {
				return err
			}
			r.length = uint64(binary.LittleEndian.Uint32(b))
		case opBinUnicode8:
			b, err := r.fixed(8, "pickle string length")
			if err != nil {
				return err
			}
			r.length = binary.LittleEndian.Uint64(b)
		default:
			return undecodable("pickle holds opcode %#x, not a str", op)
		}
		r.remain = r.length
		return nil
	}
}

// Read returns the string's bytes. At the end it checks that the value holds nothing
// but the pickle's memo and stop opcodes.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.remain == 0 {
		if !r.done {
			r.done = true
			if r.ncarry > 0 {
				r.err = undecodable("string is not valid UTF-8")
				return 0, r.err
			}
			if err := r.trailer(); err != nil {
				r.err = err
				return 0, err
			}
		}
		return 0, io.EOF
	}
	if uint64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.src.Read(p)
	r.remain -= uint64(n)
	if verr := r.validate(p[:n]); verr != nil {
		r.err = verr
		return 0, verr
	}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) && r.remain == 0:
	default:
		r.err = readErr("pickle string", err)
		return n, r.err
	}
	return n, nil
}

// validate checks UTF-8 across reads, carrying an incomplete rune to the next one.
func (r *Reader) validate(b []byte) error {
	data := b
	if r.ncarry > 0 {
		r.scratch = append(append(r.scratch[:0], r.carry[:r.ncarry]...), b...)
		data = r.scratch
	}
	end := len(data)
	for i := 1; i < utf8.UTFMax && i <= len(data); i++ {
		c := data[len(data)-i]
		if c < utf8.RuneSelf {
			break
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(data[len(data)-i:]) {
				end = len(data) - i
			}
			break
		}
	}
	if !utf8.Valid(data[:end]) {
		return undecodable("string is not valid UTF-8")
	}
	r.ncarry = copy(r.carry[:], data[end:])
	return nil
}

// trailer accepts what pickle writes after a str: memo opcodes, frames, then STOP, and
// then the end of the value.
func (r *Reader) trailer() error {
	for {
		op, err := r.src.ReadByte()
		if err != nil {
			return readErr("pickle end", err)
		}
		switch op {
		case opMemoize:
		case opBinPut:
			if _, err := r.fixed(1, "pickle memo"); err != nil {
				return err
			}
		case opLongBinPut:
			if _, err := r.fixed(4, "pickle memo"); err != nil {
				return err
			}
		case opFrame:
			if _, err := r.fixed(8, "pickle frame"); err != nil {
				return err
			}
		case opStop:
			if _, err := r.src.ReadByte(); !errors.Is(err, io.EOF) {
				if err == nil {
					return undecodable("bytes after the pickle's end")
				}
				return readErr("value end", err)
			}
			return nil
		default:
			return undecodable("pickle holds opcode %#x after the str", op)
		}
	}
}

// DecodeString decodes a small stored value whole, such as an :etag; a string longer
// than max bytes is an error.
func DecodeString(b []byte, max int) (string, error) {
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	defer r.Close()
	if r.Len() > int64(max) {
		return "", fmt.Errorf("%w: string of %d bytes, at most %d expected", ErrUndecodable, r.Len(), max)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	return string(out), nil
}
