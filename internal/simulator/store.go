package simulator

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// RedisStore runs kombu's commands on a Redis (or miniredis) through go-redis.
type RedisStore struct{ C *redis.Client }

// LPush implements ListStore.
func (s RedisStore) LPush(ctx context.Context, key string, v []byte) error {
	return s.C.LPush(ctx, key, v).Err()
}

// RPop implements ListStore.
func (s RedisStore) RPop(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := s.C.RPop(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// LLen implements ListStore.
func (s RedisStore) LLen(ctx context.Context, key string) (int64, error) {
	return s.C.LLen(ctx, key).Result()
}

// SAdd implements ListStore.
func (s RedisStore) SAdd(ctx context.Context, key, member string) error {
	return s.C.SAdd(ctx, key, member).Err()
}

// HSet implements ListStore.
func (s RedisStore) HSet(ctx context.Context, key, field string, v []byte) error {
	return s.C.HSet(ctx, key, field, v).Err()
}

// HDel implements ListStore.
func (s RedisStore) HDel(ctx context.Context, key, field string) error {
	return s.C.HDel(ctx, key, field).Err()
}

// ZAdd implements ListStore.
func (s RedisStore) ZAdd(ctx context.Context, key string, score float64, member string) error {
	return s.C.ZAdd(ctx, key, redis.Z{Score: score, Member: member}).Err()
}

// ZRem implements ListStore.
func (s RedisStore) ZRem(ctx context.Context, key, member string) error {
	return s.C.ZRem(ctx, key, member).Err()
}

// MemoryStore keeps kombu's keys in process with Redis semantics for the commands used:
// lists are deques, LPUSH at the head and RPOP at the tail. Not safe for concurrent use.
type MemoryStore struct {
	lists map[string]*deque
	sets  map[string]map[string]struct{}
	hash  map[string]map[string][]byte
	zsets map[string]map[string]float64
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		lists: map[string]*deque{}, sets: map[string]map[string]struct{}{},
		hash: map[string]map[string][]byte{}, zsets: map[string]map[string]float64{},
	}
}

// LPush implements ListStore.
func (s *MemoryStore) LPush(_ context.Context, key string, v []byte) error {
	d := s.lists[key]
	if d == nil {
		d = &deque{}
		s.lists[key] = d
	}
	d.pushHead(v)
	return nil
}

// RPop implements ListStore.
func (s *MemoryStore) RPop(_ context.Context, key string) ([]byte, bool, error) {
	d := s.lists[key]
	if d == nil || d.len() == 0 {
		return nil, false, nil
	}
	return d.popTail(), true, nil
}

// LLen implements ListStore.
func (s *MemoryStore) LLen(_ context.Context, key string) (int64, error) {
	if d := s.lists[key]; d != nil {
		return int64(d.len()), nil
	}
	return 0, nil
}

// SAdd implements ListStore.
func (s *MemoryStore) SAdd(_ context.Context, key, member string) error {
	if s.sets[key] == nil {
		s.sets[key] = map[string]struct{}{}
	}
	s.sets[key][member] = struct{}{}
	return nil
}

// HSet implements ListStore.
func (s *MemoryStore) HSet(_ context.Context, key, field string, v []byte) error {
	if s.hash[key] == nil {
		s.hash[key] = map[string][]byte{}
	}
	s.hash[key][field] = v
	return nil
}

// HDel implements ListStore.
func (s *MemoryStore) HDel(_ context.Context, key, field string) error {
	delete(s.hash[key], field)
	return nil
}

// ZAdd implements ListStore.
func (s *MemoryStore) ZAdd(_ context.Context, key string, score float64, member string) error {
	if s.zsets[key] == nil {
		s.zsets[key] = map[string]float64{}
	}
	s.zsets[key][member] = score
	return nil
}

// ZRem implements ListStore.
func (s *MemoryStore) ZRem(_ context.Context, key, member string) error {
	delete(s.zsets[key], member)
	return nil
}

// HLen is the number of fields in a hash (the unacked count).
func (s *MemoryStore) HLen(key string) int { return len(s.hash[key]) }

// deque is a ring buffer of messages; the head is index 0 (LPUSH side).
type deque struct {
	buf        [][]byte
	head, size int
}

func (d *deque) len() int { return d.size }

func (d *deque) grow() {
	n := max(16, 2*len(d.buf))
	nb := make([][]byte, n)
	for i := range d.size {
		nb[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = nb, 0
}

func (d *deque) pushHead(v []byte) {
	if d.size == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = v
	d.size++
}

func (d *deque) popTail() []byte {
	i := (d.head + d.size - 1) % len(d.buf)
	v := d.buf[i]
	d.buf[i] = nil
	d.size--
	return v
}
