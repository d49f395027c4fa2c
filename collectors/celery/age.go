package celery

import (
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/flagwarden/flagwarden/internal/kombu"
)

// maxHeads bounds the heads remembered per list. A list whose backlog turns over more
// than this many observed heads between two looks loses precision, not correctness: the
// age then starts when the tail was first seen.
const maxHeads = 64

// tailTrack follows one priority list's oldest message. kombu LPUSHes new messages at
// the head and workers BRPOP from the tail, so the tail is the next to run and the
// oldest waiting. Messages carry no enqueue time, so the age is how long the current tail
// has been seen: from when it was first seen at the head if we saw it arrive, else from
// when it first became the tail. The age is thus a lower bound that is exact to one
// interval for messages that arrived while flagwarden was watching.
type tailTrack struct {
	tail  uint64
	since time.Time
	heads []seenAt
}

type seenAt struct {
	h  uint64
	at time.Time
}

// messageHash identifies a peeked message by its length and the bytes peeked.
func messageHash(p kombu.Peeked) uint64 {
	h := fnv.New64a()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(p.Len))
	_, _ = h.Write(n[:])
	_, _ = h.Write(p.Data)
	return h.Sum64()
}

// observe records this look's head and tail and returns the tail's age.
func (t *tailTrack) observe(head, tail uint64, now time.Time) time.Duration {
	if t.since.IsZero() || tail != t.tail {
		t.tail, t.since = tail, now
		for i, s := range t.heads {
			if s.h == tail {
				t.since = s.at
				// Everything remembered before it has been consumed already.
				t.heads = append(t.heads[:0], t.heads[i+1:]...)
				break
			}
		}
	}
	if n := len(t.heads); n == 0 || t.heads[n-1].h != head {
		if head != tail {
			t.heads = append(t.heads, seenAt{h: head, at: now})
		}
		if len(t.heads) > maxHeads {
			t.heads = append(t.heads[:0], t.heads[len(t.heads)-maxHeads:]...)
		}
	}
	return now.Sub(t.since)
}
