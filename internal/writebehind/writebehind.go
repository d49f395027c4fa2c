// Package writebehind overlaps producing a stream with consuming it: Write fills a
// chunk while a goroutine hands the previous one to the consumer (a Redis append, a
// compressor), so a build that reads rows and serializes them keeps one core busy and
// the consumer the other. Memory is two chunks.
package writebehind

import (
	"errors"
	"sync"
)

// ErrClosed is returned by Write after Close or Abort.
var ErrClosed = errors.New("writebehind: write after close")

// Writer is an io.Writer whose chunks are consumed by its own goroutine in order. A
// consumer error surfaces on a later Write and on Close.
type Writer struct {
	size    int
	buf     []byte
	pending chan []byte   // full chunks to the goroutine
	free    chan []byte   // emptied buffers back (room for both, so it never blocks)
	done    chan struct{} // closed when the goroutine has finished
	closed  bool

	consume func([]byte) error
	finish  func(ok bool) error

	mu  sync.Mutex
	err error
	ok  bool // set before the goroutine's finish: Close, not Abort
}

// New starts a writer of size-byte chunks. consume gets each chunk in order (it must
// not keep it); finish runs once in the goroutine after the last chunk, with ok false
// when the writer was aborted or a consume failed, so it can drop its work instead of
// completing it. Either may be nil.
func New(size int, consume func([]byte) error, finish func(ok bool) error) *Writer {
	w := &Writer{size: max(size, 1), pending: make(chan []byte, 1), free: make(chan []byte, 2),
		done: make(chan struct{}), consume: consume, finish: finish}
	w.buf = make([]byte, 0, w.size)
	w.free <- make([]byte, 0, w.size)
	go w.run()
	return w
}

func (w *Writer) run() {
	defer close(w.done)
	for chunk := range w.pending {
		if w.Err() == nil && w.consume != nil {
			w.Fail(w.consume(chunk))
		}
		w.free <- chunk[:0]
	}
	if w.finish == nil {
		return
	}
	w.mu.Lock()
	ok := w.ok && w.err == nil
	w.mu.Unlock()
	w.Fail(w.finish(ok))
}

// Fail records err as the writer's error (the first one wins); consumers that learn of
// a failure outside consume can report it.
func (w *Writer) Fail(err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// Err is the first error so far.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Write buffers p and hands each full chunk to the goroutine.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	n := len(p)
	for len(p) > 0 {
		take := min(w.size-len(w.buf), len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == w.size {
			if err := w.Err(); err != nil {
				return 0, err
			}
			w.pending <- w.buf
			w.buf = <-w.free
		}
	}
	return n, nil
}

// Close hands over what is buffered, waits for the goroutine and returns the first
// error. It may be called again; later calls return the same error.
func (w *Writer) Close() error { return w.end(true) }

// Abort stops without completing: buffered bytes are dropped and finish gets ok false.
func (w *Writer) Abort() { _ = w.end(false) }

func (w *Writer) end(ok bool) error {
	if !w.closed {
		w.closed = true
		if ok && len(w.buf) > 0 && w.Err() == nil {
			w.pending <- w.buf
		}
		w.buf = nil
		w.mu.Lock()
		w.ok = ok
		w.mu.Unlock()
		close(w.pending)
	}
	<-w.done
	return w.Err()
}
