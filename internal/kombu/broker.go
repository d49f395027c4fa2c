package kombu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Broker runs kombu's queue operations on one Redis with bounded reads.
type Broker struct {
	rdb  redis.UniversalClient
	keys Keys
}

// NewBroker returns the operations on rdb laid out as keys says.
func NewBroker(rdb redis.UniversalClient, keys Keys) *Broker { return &Broker{rdb: rdb, keys: keys} }

// Keys is the broker's key layout.
func (b *Broker) Keys() Keys { return b.keys }

// Load makes sure every script is in Redis' script cache, for callers that run them
// in a pipeline (EVALSHA cannot fall back to EVAL there). Redis forgets scripts on
// restart, so pipelined callers load once per pass.
func (b *Broker) Load(ctx context.Context) error {
	for _, s := range []*redis.Script{deliverScript, deadScript, restoreScript, peekScript, unackedTailsScript} {
		if err := s.Load(ctx, b.rdb).Err(); err != nil {
			return fmt.Errorf("load broker script: %w", err)
		}
	}
	return nil
}

// unixSeconds is kombu's time(): float seconds, as its unacked_index scores are.
func unixSeconds(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 6, 64)
}

// entrySuffix is what follows the message in the unacked entries this package writes
// for queue: the default exchange and queue as the routing key.
func entrySuffix(queue string) string {
	q, _ := json.Marshal(queue)
	return `,"",` + string(q) + "]"
}

// DeliverOptions bound one delivery.
type DeliverOptions struct {
	// Queue is the queue whose priority lists are popped, highest priority first.
	Queue string
	// Max is the most messages taken.
	Max int
	// Budget is the most message bytes returned (one message may cross it).
	Budget int64
	// MaxMessage is the largest message returned; larger ones are dead-lettered
	// server-side with ReasonOversized and never reach this process.
	MaxMessage int64
	// DeadLetter is the dead-letter list's name (the key prefix is added).
	DeadLetter string
	// TagPrefix starts every delivery tag of this call; RestoreVisible finds the
	// deliveries of a dead consumer by it.
	TagPrefix string
	// Now is the delivery time recorded in the unacked index.
	Now time.Time
}

// Delivery is one message taken and recorded as unacked.
type Delivery struct {
	Tag string
	// List is the priority list it came from.
	List string
	Raw  []byte
}

// Delivered is what one Deliver call took.
type Delivered struct {
	Messages []Delivery
	// Bytes is the size of Messages' bodies.
	Bytes int64
	// Oversized messages were moved to the dead-letter list unread.
	Oversized      int
	OversizedBytes int64
}

// Deliver takes messages off queue and records them as unacked in one atomic script,
// as a kombu consumer's pop and QoS.append do (kombu does the two in separate steps;
// here a crash between them cannot lose a message).
func (b *Broker) Deliver(ctx context.Context, o DeliverOptions) (Delivered, error) {
	lists := b.keys.Lists(o.Queue)
	keys := append([]string{b.keys.Unacked(), b.keys.UnackedIndex(), b.keys.Prefix + o.DeadLetter}, lists...)
	// Bytes read per call, oversized ones included, bound the script's run time.
	work := max(o.Budget, o.MaxMessage) * 4
	res, err := deliverScript.Run(ctx, b.rdb, keys, o.Max, o.Budget, o.MaxMessage, unixSeconds(o.Now),
		o.TagPrefix, entrySuffix(o.Queue), o.Queue, work).Slice()
	if err != nil {
		return Delivered{}, fmt.Errorf("deliver from %s: %w", o.Queue, err)
	}
	if len(res) < 2 || (len(res)-2)%3 != 0 {
		return Delivered{}, fmt.Errorf("deliver from %s: unexpected reply of %d elements", o.Queue, len(res))
	}
	var d Delivered
	d.Oversized = int(asInt(res[0]))
	d.OversizedBytes = asInt(res[1])
	d.Messages = make([]Delivery, 0, (len(res)-2)/3)
	for i := 2; i+2 < len(res); i += 3 {
		tag, _ := res[i].(string)
		li := int(asInt(res[i+1])) - 1
		raw, _ := res[i+2].(string)
		m := Delivery{Tag: tag, Raw: []byte(raw)}
		if li >= 0 && li < len(lists) {
			m.List = lists[li]
		}
		d.Bytes += int64(len(raw))
		d.Messages = append(d.Messages, m)
	}
	return d, nil
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

// ackChunk bounds the arguments of one HDEL/ZREM.
const ackChunk = 1000

// Ack removes deliveries from the unacked hash and index, as kombu's ack does.
func (b *Broker) Ack(ctx context.Context, tags []string) error {
	if len(tags) == 0 {
		return nil
	}
	pipe := b.rdb.Pipeline()
	for start := 0; start < len(tags); start += ackChunk {
		chunk := tags[start:min(start+ackChunk, len(tags))]
		args := make([]any, len(chunk))
		for i, t := range chunk {
			args[i] = t
		}
		pipe.HDel(ctx, b.keys.Unacked(), chunk...)
		pipe.ZRem(ctx, b.keys.UnackedIndex(), args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ack %d messages: %w", len(tags), err)
	}
	return nil
}

// Letter is one delivered message refused by its consumer.
type Letter struct {
	Tag    string
	Raw    []byte
	Reason Reason
	Err    string
}

// DeadLetter moves refused deliveries from unacked to the dead-letter list, each as a
// JSON object with its reason, error, queue, time, size and the message itself. It
// returns how many were moved (a delivery restored meanwhile is left to its queue).
func (b *Broker) DeadLetter(ctx context.Context, deadLetter, queue string, now time.Time, letters []Letter) (int, error) {
	if len(letters) == 0 {
		return 0, nil
	}
	if err := deadScript.Load(ctx, b.rdb).Err(); err != nil {
		return 0, fmt.Errorf("load dead-letter script: %w", err)
	}
	keys := []string{b.keys.Unacked(), b.keys.UnackedIndex(), b.keys.Prefix + deadLetter}
	at := unixSeconds(now)
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(letters))
	for i, l := range letters {
		cmds[i] = deadScript.EvalSha(ctx, pipe, keys, l.Tag, string(l.Reason), l.Err, queue, at, l.Raw)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("dead-letter %d messages: %w", len(letters), err)
	}
	moved := 0
	for _, c := range cmds {
		if n, _ := c.Int64(); n == 1 {
			moved++
		}
	}
	return moved, nil
}

// RestoreVisible is kombu's restore_visible for the deliveries tagged tagPrefix…: those
// delivered at or before ceil (now minus the visibility timeout) go back to queue's
// priority list, at most limit per call. Deliveries of other consumers are left to
// them (every kombu worker restores its own broker's). It returns how many were
// restored.
func (b *Broker) RestoreVisible(ctx context.Context, queue, tagPrefix string, ceil time.Time, limit int) (int, error) {
	keys := []string{b.keys.Unacked(), b.keys.UnackedIndex(), b.keys.UnackedMutex()}
	steps := b.keys.PrioritySteps()
	restored, offset := 0, 0
	for {
		args := []any{unixSeconds(ceil), tagPrefix, limit, offset, b.keys.Prefix, queue, b.keys.Separator(), entrySuffix(queue)}
		for _, s := range steps {
			args = append(args, s)
		}
		res, err := restoreScript.Run(ctx, b.rdb, keys, args...).Int64Slice()
		if err != nil {
			return restored, fmt.Errorf("restore unacked messages of %s: %w", queue, err)
		}
		if len(res) != 3 || res[0] < 0 {
			return restored, nil // kombu's own restore holds the mutex: next time
		}
		restored += int(res[0])
		offset += int(res[1])
		if res[2] < int64(limit) || restored >= limit {
			return restored, nil
		}
	}
}

// Peeked is one list element as a peek saw it.
type Peeked struct {
	// Len is the element's size.
	Len int64
	// Data is the element when Whole, else its first and last edge bytes.
	Data  []byte
	Whole bool
}

// PeekCmd queues on pipe a peek at elements start..stop of the list key (negative
// indexes count from the tail): each element's length, and the element itself when it
// is at most maxMessage bytes and the reply holds less than budget bytes, else its
// first and last edge bytes. Call Load first; read the result with ParsePeek.
func (b *Broker) PeekCmd(ctx context.Context, pipe redis.Pipeliner, key string, start, stop int64, maxMessage, edge, budget int64) *redis.Cmd {
	return peekScript.EvalSha(ctx, pipe, []string{key}, start, stop, maxMessage, edge, budget)
}

// ParsePeek reads a PeekCmd's reply.
func ParsePeek(cmd *redis.Cmd) ([]Peeked, error) {
	res, err := cmd.Slice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]Peeked, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		n := asInt(res[i])
		data, _ := res[i+1].(string)
		out = append(out, Peeked{Len: n, Data: []byte(data), Whole: int64(len(data)) == n})
	}
	return out, nil
}

// UnackedTail is one unacked delivery as seen from the end of its entry.
type UnackedTail struct {
	Tag         string
	DeliveredAt time.Time
	Len         int64
	// Tail is the entry's last bytes: enough for UnackedRoute.
	Tail []byte
}

// UnackedTails reads the deliveries at positions start..stop of the unacked index
// (oldest first) with the last tailBytes of each entry, never a whole entry.
func (b *Broker) UnackedTails(ctx context.Context, start, stop, tailBytes int64) ([]UnackedTail, error) {
	res, err := unackedTailsScript.Run(ctx, b.rdb, []string{b.keys.Unacked(), b.keys.UnackedIndex()}, start, stop, tailBytes).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read unacked entries: %w", err)
	}
	out := make([]UnackedTail, 0, len(res)/4)
	for i := 0; i+3 < len(res); i += 4 {
		tag, _ := res[i].(string)
		score, _ := res[i+1].(string)
		f, _ := strconv.ParseFloat(score, 64)
		tail, _ := res[i+3].(string)
		out = append(out, UnackedTail{Tag: tag, DeliveredAt: time.Unix(0, int64(f*1e9)), Len: asInt(res[i+2]), Tail: []byte(tail)})
	}
	return out, nil
}
