package simulator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
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

// envelope is kombu's JSON transport envelope for a Celery message (task protocol 2).
type envelope struct {
	Body            string     `json:"body"`
	ContentEncoding string     `json:"content-encoding"`
	ContentType     string     `json:"content-type"`
	Headers         headers    `json:"headers"`
	Properties      properties `json:"properties"`
}

// headers are Celery protocol 2's task headers.
type headers struct {
	Lang                string   `json:"lang"`
	Task                string   `json:"task"`
	ID                  string   `json:"id"`
	Shadow              *string  `json:"shadow"`
	ETA                 *string  `json:"eta"`
	Expires             *string  `json:"expires"`
	Group               *string  `json:"group"`
	GroupIndex          *int     `json:"group_index"`
	Retries             int      `json:"retries"`
	TimeLimit           [2]*int  `json:"timelimit"`
	RootID              string   `json:"root_id"`
	ParentID            *string  `json:"parent_id"`
	ArgsRepr            string   `json:"argsrepr"`
	KwargsRepr          string   `json:"kwargsrepr"`
	Origin              string   `json:"origin"`
	IgnoreResult        bool     `json:"ignore_result"`
	ReplacedTaskNesting int      `json:"replaced_task_nesting"`
	Stamps              struct{} `json:"stamps"`
}

type properties struct {
	CorrelationID string       `json:"correlation_id"`
	ReplyTo       string       `json:"reply_to"`
	DeliveryMode  int          `json:"delivery_mode"`
	DeliveryInfo  deliveryInfo `json:"delivery_info"`
	Priority      int          `json:"priority"`
	BodyEncoding  string       `json:"body_encoding"`
	DeliveryTag   string       `json:"delivery_tag"`
}

type deliveryInfo struct {
	Exchange   string `json:"exchange"`
	RoutingKey string `json:"routing_key"`
}

// embed is the third element of a protocol 2 body.
type embed struct {
	Callbacks any `json:"callbacks"`
	Errbacks  any `json:"errbacks"`
	Chain     any `json:"chain"`
	Chord     any `json:"chord"`
}

// EncodeMessage returns the message kombu's Redis transport would LPUSH for t: the JSON
// envelope with a base64 body of [args, kwargs, embed]. tag is the delivery tag.
func EncodeMessage(t Task, tag, origin string) ([]byte, error) {
	if t.Name == "" || t.ID == "" {
		return nil, errors.New("encode celery message: task name and id are required")
	}
	body, err := json.Marshal([]any{[]int64{t.TeamID}, map[string]any{}, embed{}})
	if err != nil {
		return nil, fmt.Errorf("encode celery body: %w", err)
	}
	env := envelope{
		Body:            base64.StdEncoding.EncodeToString(body),
		ContentEncoding: "utf-8",
		ContentType:     "application/json",
		Headers: headers{
			Lang: "py", Task: t.Name, ID: t.ID, RootID: t.ID,
			ArgsRepr: "(" + strconv.FormatInt(t.TeamID, 10) + ",)", KwargsRepr: "{}",
			Origin: origin,
		},
		Properties: properties{
			CorrelationID: t.ID, ReplyTo: tag, DeliveryMode: 2,
			DeliveryInfo: deliveryInfo{Exchange: "", RoutingKey: t.Queue},
			Priority:     t.Priority, BodyEncoding: "base64", DeliveryTag: tag,
		},
	}
	return json.Marshal(env)
}

// ErrNotCelery is returned for broker entries that are not Celery protocol 2 task
// messages with a team id.
var ErrNotCelery = errors.New("not a celery task message")

// DecodeMessage parses a message written by EncodeMessage or by Celery itself, returning
// the task and its delivery tag.
func DecodeMessage(raw []byte) (Task, string, error) {
	// only the fields read here: decoding the whole envelope costs twice as much, and
	// the replay decodes hundreds of thousands of messages.
	var env struct {
		Body    string `json:"body"`
		Headers struct {
			Task string `json:"task"`
			ID   string `json:"id"`
		} `json:"headers"`
		Properties struct {
			DeliveryInfo deliveryInfo `json:"delivery_info"`
			Priority     int          `json:"priority"`
			BodyEncoding string       `json:"body_encoding"`
			DeliveryTag  string       `json:"delivery_tag"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return Task{}, "", fmt.Errorf("%w: %w", ErrNotCelery, err)
	}
	if env.Headers.Task == "" {
		return Task{}, "", fmt.Errorf("%w: no task header (protocol 1 or not celery)", ErrNotCelery)
	}
	body := []byte(env.Body)
	if env.Properties.BodyEncoding == "base64" {
		b, err := base64.StdEncoding.DecodeString(env.Body)
		if err != nil {
			return Task{}, "", fmt.Errorf("%w: body: %w", ErrNotCelery, err)
		}
		body = b
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(body, &parts); err != nil || len(parts) != 3 {
		return Task{}, "", fmt.Errorf("%w: body is not [args, kwargs, embed]", ErrNotCelery)
	}
	var args []json.Number
	var kwargs map[string]json.Number
	_ = json.Unmarshal(parts[1], &kwargs)
	t := Task{ID: env.Headers.ID, Name: env.Headers.Task, Queue: env.Properties.DeliveryInfo.RoutingKey, Priority: env.Properties.Priority}
	team := kwargs["team_id"]
	if team == "" {
		if err := json.Unmarshal(parts[0], &args); err != nil || len(args) == 0 {
			return Task{}, "", fmt.Errorf("%w: no team id in args", ErrNotCelery)
		}
		team = args[0]
	}
	id, err := team.Int64()
	if err != nil {
		return Task{}, "", fmt.Errorf("%w: team id %q", ErrNotCelery, team)
	}
	t.TeamID = id
	return t, env.Properties.DeliveryTag, nil
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

// DefaultSep and DefaultSteps are kombu's defaults.
const DefaultSep = "\x06\x16"

// DefaultSteps are kombu's default priority steps.
var DefaultSteps = []int{0, 3, 6, 9}

func (k *Kombu) steps() []int {
	if len(k.Steps) == 0 {
		return DefaultSteps
	}
	return k.Steps
}

func (k *Kombu) sep() string {
	if k.Sep == "" {
		return DefaultSep
	}
	return k.Sep
}

// priorityStep maps a message priority to its list, as kombu's priority(): the largest
// step not above it.
func (k *Kombu) priorityStep(p int) int {
	steps := k.steps()
	i := sort.SearchInts(steps, p+1) - 1
	if i < 0 {
		return steps[0]
	}
	return steps[i]
}

// QueueKey is the list holding queue's messages of priority step pri.
func (k *Kombu) QueueKey(queue string, pri int) string {
	if pri == 0 {
		return k.Prefix + queue
	}
	return k.Prefix + queue + k.sep() + strconv.Itoa(pri)
}

// Declare binds queue to the direct exchange of the same name, as Celery's default
// queue declaration does.
func (k *Kombu) Declare(ctx context.Context, queue string) error {
	member := strings.Join([]string{queue, "", queue}, k.sep())
	if err := k.Store.SAdd(ctx, k.Prefix+"_kombu.binding."+queue, member); err != nil {
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
	if err := k.Store.LPush(ctx, k.QueueKey(t.Queue, k.priorityStep(t.Priority)), raw); err != nil {
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
	for _, pri := range k.steps() {
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
		// kombu stores [message, exchange, routing_key]; a decoded message is valid JSON
		// and goes in as is, anything else as a string.
		q, _ := json.Marshal(queue)
		var entry []byte
		if derr == nil {
			entry = append(append(append(append(append([]byte{'['}, raw...), ','), q...), ','), q...)
			entry = append(entry, ']')
		} else {
			entry, _ = json.Marshal([]any{string(raw), queue, queue})
		}
		if err := k.Store.HSet(ctx, k.Prefix+"unacked", tag, entry); err != nil {
			return Delivery{}, false, fmt.Errorf("record unacked: %w", err)
		}
		if err := k.Store.ZAdd(ctx, k.Prefix+"unacked_index", float64(now.UnixNano())/1e9, tag); err != nil {
			return Delivery{}, false, fmt.Errorf("record unacked index: %w", err)
		}
		return Delivery{Task: t, Tag: tag, Err: derr}, true, nil
	}
	return Delivery{}, false, nil
}

// Ack removes a delivery from the unacked hash and index.
func (k *Kombu) Ack(ctx context.Context, d Delivery) error {
	if err := k.Store.HDel(ctx, k.Prefix+"unacked", d.Tag); err != nil {
		return fmt.Errorf("ack %s: %w", d.Tag, err)
	}
	if err := k.Store.ZRem(ctx, k.Prefix+"unacked_index", d.Tag); err != nil {
		return fmt.Errorf("ack %s: %w", d.Tag, err)
	}
	return nil
}

// Depth sums the lengths of every priority list of queue, as kombu's _size does.
func (k *Kombu) Depth(ctx context.Context, queue string) (int64, error) {
	var total int64
	for _, pri := range k.steps() {
		n, err := k.Store.LLen(ctx, k.QueueKey(queue, pri))
		if err != nil {
			return 0, fmt.Errorf("depth of %s: %w", queue, err)
		}
		total += n
	}
	return total, nil
}
