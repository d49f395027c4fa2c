package simulator

import (
	"context"
	"time"
)

// Broker is where the simulated producers put tasks and the consumers take them.
// *Kombu puts real Celery messages on a Redis (or miniredis) exactly as kombu does;
// MemoryBroker keeps the same priority lists as plain values in process, for the replay,
// where days of traffic must pass in seconds and serializing every message would only
// measure the JSON encoder.
type Broker interface {
	Declare(ctx context.Context, queue string) error
	Publish(ctx context.Context, t Task, tag, origin string) error
	Get(ctx context.Context, queue string, now time.Time) (Delivery, bool, error)
	Ack(ctx context.Context, d Delivery) error
	Depth(ctx context.Context, queue string) (int64, error)
}

var (
	_ Broker = (*Kombu)(nil)
	_ Broker = (*MemoryBroker)(nil)
)

// MemoryBroker is an in-process Broker with kombu's semantics: one FIFO per priority
// step, the lowest step served first, and a count of unacked deliveries.
type MemoryBroker struct {
	Steps   []int
	queues  map[string][]taskFIFO
	Unacked int
}

type taskFIFO struct {
	buf  []Task
	head int
}

func (f *taskFIFO) len() int { return len(f.buf) - f.head }

func (f *taskFIFO) push(t Task) { f.buf = append(f.buf, t) }

func (f *taskFIFO) pop() Task {
	t := f.buf[f.head]
	f.buf[f.head] = Task{}
	f.head++
	// compact once the consumed prefix dominates, so memory follows the backlog.
	if f.head > 1024 && f.head*2 > len(f.buf) {
		f.buf = append(f.buf[:0:0], f.buf[f.head:]...)
		f.head = 0
	}
	return t
}

// NewMemoryBroker returns an empty broker with kombu's default priority steps.
func NewMemoryBroker() *MemoryBroker {
	return &MemoryBroker{Steps: DefaultSteps, queues: map[string][]taskFIFO{}}
}

func (b *MemoryBroker) lists(queue string) []taskFIFO {
	l, ok := b.queues[queue]
	if !ok {
		l = make([]taskFIFO, len(b.Steps))
		b.queues[queue] = l
	}
	return l
}

// Declare implements Broker.
func (b *MemoryBroker) Declare(_ context.Context, queue string) error {
	b.lists(queue)
	return nil
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(_ context.Context, t Task, _, _ string) error {
	l := b.lists(t.Queue)
	i := 0
	for j, s := range b.Steps {
		if s <= t.Priority {
			i = j
		}
	}
	l[i].push(t)
	return nil
}

// Get implements Broker.
func (b *MemoryBroker) Get(_ context.Context, queue string, _ time.Time) (Delivery, bool, error) {
	l := b.lists(queue)
	for i := range l {
		if l[i].len() > 0 {
			b.Unacked++
			return Delivery{Task: l[i].pop()}, true, nil
		}
	}
	return Delivery{}, false, nil
}

// Ack implements Broker.
func (b *MemoryBroker) Ack(context.Context, Delivery) error {
	b.Unacked--
	return nil
}

// Depth implements Broker.
func (b *MemoryBroker) Depth(_ context.Context, queue string) (int64, error) {
	var n int64
	for _, f := range b.lists(queue) {
		n += int64(f.len())
	}
	return n, nil
}
