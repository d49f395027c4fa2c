package simulator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flagwarden/flagwarden/internal/kombu"
)

// The two PostHog tasks a flag change enqueues (posthog_flags.md §3).
const (
	// TaskDefinitions rebuilds the local-evaluation (flag definitions) caches.
	TaskDefinitions = "posthog.tasks.feature_flags.update_team_flags_cache"
	// TaskFlags rebuilds flags.json, the /flags service's cache.
	TaskFlags = "posthog.tasks.feature_flags.update_team_service_flags_cache"
	// DefaultQueue is the queue PostHog routed both tasks to from February 2026.
	DefaultQueue = "feature_flags"
)

// Task is one Celery task as the simulator produces and consumes it.
type Task struct {
	ID       string
	Name     string
	TeamID   int64
	Queue    string
	Priority int
}

// Kind is the cache a task rebuilds: "definitions" or "flags", matching
// snapshot.CacheState.Kind.
func (t Task) Kind() string {
	if t.Name == TaskFlags {
		return "flags"
	}
	return "definitions"
}

// EncodeMessage returns the message kombu's Redis transport would LPUSH for t: the JSON
// envelope with a base64 body of [args, kwargs, embed]. tag is the delivery tag.
func EncodeMessage(t Task, tag, origin string) ([]byte, error) {
	return kombu.Encode(kombu.Message{
		Task: t.Name, ID: t.ID, Args: []any{t.TeamID}, ArgsRepr: "(" + strconv.FormatInt(t.TeamID, 10) + ",)",
		Queue: t.Queue, Priority: t.Priority, DeliveryTag: tag, Origin: origin,
	})
}

// ErrNotCelery is returned for broker entries that are not Celery task messages with a
// valid team id.
var ErrNotCelery = errors.New("not a celery task message")

// teamArg is where PostHog's cache tasks carry the team: team_id, or the first argument.
var teamArg = kombu.TeamArg{Kwarg: "team_id", Position: 0}

// DecodeMessage parses a message written by EncodeMessage or by Celery itself, returning
// the task and its delivery tag.
func DecodeMessage(raw []byte) (Task, string, error) {
	m, err := kombu.Decode(raw, teamArg)
	if err == nil {
		err = m.TeamErr
	}
	if err != nil {
		return Task{}, "", fmt.Errorf("%w: %w", ErrNotCelery, err)
	}
	return Task{ID: m.ID, Name: m.Name, TeamID: m.Team, Queue: m.RoutingKey, Priority: m.Priority}, m.DeliveryTag, nil
}

// ListStore is the handful of Redis commands kombu's Redis transport uses. RedisStore
// runs them on a real Redis or miniredis; MemoryStore keeps them in process for the
// replay, where millions of simulated seconds must pass in moments.
type ListStore interface {
	LPush(ctx context.Context, key string, v []byte) error
	RPop(ctx context.Context, key string) ([]byte, bool, error)
	LLen(ctx context.Context, key string) (int64, error)
	SAdd(ctx context.Context, key, member string) error
	HSet(ctx context.Context, key, field string, v []byte) error
	HDel(ctx context.Context, key, field string) error
	ZAdd(ctx context.Context, key string, score float64, member string) error
	ZRem(ctx context.Context, key, member string) error
}

// Kombu lays Celery queues out on a ListStore exactly as kombu's Redis transport does:
// one list per priority step (key queue+sep+step, step 0 the bare name), LPUSH to
// publish, RPOP from the highest priority first, a _kombu.binding.<exchange> set
// naming each queue, and the unacked hash and index while a message is being worked.
type Kombu struct {
	Store ListStore
	// Sep and Steps are kombu's broker_transport_options sep and priority_steps.
	Sep   string
	Steps []int
	// Prefix is kombu's global_keyprefix.
	Prefix string
}

// DefaultSep is kombu's default priority separator.
const DefaultSep = kombu.DefaultSep

// DefaultSteps are kombu's default priority steps.
var DefaultSteps = kombu.DefaultSteps()

func (k *Kombu) keys() kombu.Keys { return kombu.Keys{Prefix: k.Prefix, Sep: k.Sep, Steps: k.Steps} }

// QueueKey is the list holding queue's messages of priority step pri.
func (k *Kombu) QueueKey(queue string, pri int) string { return k.keys().List(queue, pri) }

// Declare binds queue to the direct exchange of the same name, as Celery's default
// queue declaration does.
func (k *Kombu) Declare(ctx context.Context, queue string) error {
	keys := k.keys()
	if err := k.Store.SAdd(ctx, keys.Binding(queue), keys.BindingMember(queue, "", queue)); err != nil {
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	return nil
}

// Publish puts t on its queue's list for its priority.
func (k *Kombu) Publish(ctx context.Context, t Task, tag, origin string) error {
	raw, err := EncodeMessage(t, tag, origin)
	if err != nil {
		return err
	}
	if err := k.Store.LPush(ctx, k.QueueKey(t.Queue, k.keys().Step(t.Priority)), raw); err != nil {
		return fmt.Errorf("publish %s for team %d: %w", t.Name, t.TeamID, err)
	}
	return nil
}

// Delivery is a message taken off a queue and not yet acknowledged.
type Delivery struct {
	Task Task
	Tag  string
	// Err is set when the message could not be decoded; the message is still unacked.
	Err error
}

// Get takes the next message of queue, highest priority first, and records it as
// unacked at now (unix seconds). ok is false when every list is empty.
func (k *Kombu) Get(ctx context.Context, queue string, now time.Time) (d Delivery, ok bool, err error) {
	for _, pri := range k.keys().PrioritySteps() {
		raw, found, err := k.Store.RPop(ctx, k.QueueKey(queue, pri))
		if err != nil {
			return Delivery{}, false, fmt.Errorf("get from %s: %w", queue, err)
		}
		if !found {
			continue
		}
		t, tag, derr := DecodeMessage(raw)
		if tag == "" {
			tag = fmt.Sprintf("undecodable-%d", now.UnixNano())
		}
		entry := kombu.UnackedEntry(raw, "", queue)
		if err := k.Store.HSet(ctx, k.keys().Unacked(), tag, entry); err != nil {
			return Delivery{}, false, fmt.Errorf("record unacked: %w", err)
		}
		if err := k.Store.ZAdd(ctx, k.keys().UnackedIndex(), float64(now.UnixNano())/1e9, tag); err != nil {
			return Delivery{}, false, fmt.Errorf("record unacked index: %w", err)
		}
		return Delivery{Task: t, Tag: tag, Err: derr}, true, nil
	}
	return Delivery{}, false, nil
}

// Ack removes a delivery from the unacked hash and index.
func (k *Kombu) Ack(ctx context.Context, d Delivery) error {
	if err := k.Store.HDel(ctx, k.keys().Unacked(), d.Tag); err != nil {
		return fmt.Errorf("ack %s: %w", d.Tag, err)
	}
	if err := k.Store.ZRem(ctx, k.keys().UnackedIndex(), d.Tag); err != nil {
		return fmt.Errorf("ack %s: %w", d.Tag, err)
	}
	return nil
}

// Depth sums the lengths of every priority list of queue, as kombu's _size does.
func (k *Kombu) Depth(ctx context.Context, queue string) (int64, error) {
	var total int64
	for _, pri := range k.keys().PrioritySteps() {
		n, err := k.Store.LLen(ctx, k.QueueKey(queue, pri))
		if err != nil {
			return 0, fmt.Errorf("depth of %s: %w", queue, err)
		}
		total += n
	}
	return total, nil
}
