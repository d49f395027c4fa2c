package rebuild

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Flusher is implemented by a Requester that answers some requests from memory:
// Flush returns once every request answered so far is covered by a build whatever
// another replica does. A consumer that acknowledges messages calls it before the ack.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Requester is the engine's intake as the consumers use it.
type Requester interface {
	Request(ctx context.Context, teamID int64, reason string) (RequestResult, error)
}

// CeleryOptions configure the Celery consumer.
type CeleryOptions struct {
	// Queue is the broker queue the platform routes the cache-update tasks to.
	Queue string
	// Tasks are the task names taken (matched whole, or by their last dotted part).
	Tasks []string
	// Sep, PrioritySteps and KeyPrefix are kombu's broker_transport_options.
	Sep           string
	PrioritySteps []int
	KeyPrefix     string
	// TeamKwarg and TeamPosition locate the team id in the task's kwargs or args.
	TeamKwarg    string
	TeamPosition int
	// Batch is how many messages are taken at once; duplicates within a batch become one
	// request. Default 500.
	Batch int
	// DeadLetter is the list that receives messages that are not ours or not Celery
	// messages. Default "<queue>.flagwarden_dead".
	DeadLetter string
	Logger     *slog.Logger
}

// CeleryConsumer takes update_team_flags_cache / update_team_service_flags_cache tasks
// off a kombu Redis queue the way a kombu consumer does: pop the message, record it in
// unacked/unacked_index, enqueue the rebuild, then ack by removing it from both. A
// crash between the two leaves the message in unacked, where kombu's visibility
// timeout restores it to the queue.
type CeleryConsumer struct {
	rdb  redis.UniversalClient
	req  Requester
	opts CeleryOptions

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewCeleryConsumer returns a consumer reading rdb and requesting through req.
func NewCeleryConsumer(rdb redis.UniversalClient, req Requester, opts CeleryOptions) (*CeleryConsumer, error) {
	opts.Batch = cmp.Or(opts.Batch, 500)
	opts.Sep = cmp.Or(opts.Sep, "\x06\x16")
	if len(opts.PrioritySteps) == 0 {
		opts.PrioritySteps = []int{0, 3, 6, 9}
	}
	opts.DeadLetter = cmp.Or(opts.DeadLetter, opts.Queue+".flagwarden_dead")
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Queue == "" {
		return nil, errors.New("CeleryOptions.Queue is required")
	}
	if len(opts.Tasks) == 0 {
		return nil, errors.New("CeleryOptions.Tasks must list at least one task")
	}
	return &CeleryConsumer{rdb: rdb, req: req, opts: opts}, nil
}

// Name implements service.Service.
func (c *CeleryConsumer) Name() string { return "rebuild-celery-consumer" }

// Start consumes in the background until Stop or ctx ends.
func (c *CeleryConsumer) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return nil
	}
	ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			n, err := c.RunOnce(ctx, time.Second)
			if err != nil && ctx.Err() == nil {
				c.opts.Logger.Warn("celery consumer pass failed", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 10*time.Second)
				continue
			}
			if n > 0 {
				backoff = 100 * time.Millisecond
			}
		}
	}()
	return nil
}

// Stop ends consumption; idempotent.
func (c *CeleryConsumer) Stop(ctx context.Context) error {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// keys are the queue's priority lists, highest priority first (kombu: step 0 is the
// bare name).
func (c *CeleryConsumer) keys() []string {
	out := make([]string, 0, len(c.opts.PrioritySteps))
	for _, s := range c.opts.PrioritySteps {
		k := c.opts.KeyPrefix + c.opts.Queue
		if s != 0 {
			k += c.opts.Sep + strconv.Itoa(s)
		}
		out = append(out, k)
	}
	return out
}

// RunOnce waits up to wait for messages and handles one batch; it returns how many
// messages it took.
func (c *CeleryConsumer) RunOnce(ctx context.Context, wait time.Duration) (int, error) {
	keys := c.keys()
	popped, err := c.rdb.BRPop(ctx, wait, keys...).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pop %s: %w", c.opts.Queue, err)
	}
	type msg struct{ key, raw, tag string }
	batch := []msg{{key: popped[0], raw: popped[1]}}
	for _, k := range keys {
		if len(batch) >= c.opts.Batch {
			break
		}
		more, err := c.rdb.RPopCount(ctx, k, c.opts.Batch-len(batch)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("pop %s: %w", k, err)
		}
		for _, m := range more {
			batch = append(batch, msg{key: k, raw: m})
		}
	}
	// Record every message as delivered-but-unacked, as kombu's QoS.append does.
	now := float64(time.Now().UnixNano()) / 1e9
	pipe := c.rdb.TxPipeline()
	for i := range batch {
		batch[i].tag = deliveryTag()
		entry, _ := json.Marshal([]any{json.RawMessage(jsonOrString(batch[i].raw)), "", c.opts.Queue})
		pipe.ZAdd(ctx, c.opts.KeyPrefix+"unacked_index", redis.Z{Member: batch[i].tag, Score: now})
		pipe.HSet(ctx, c.opts.KeyPrefix+"unacked", batch[i].tag, entry)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Nothing recorded: put the messages back where they were.
		for _, m := range batch {
			_ = c.rdb.RPush(context.WithoutCancel(ctx), m.key, m.raw).Err()
		}
		return 0, fmt.Errorf("record unacked messages: %w", err)
	}
	teams := map[int64]struct{}{}
	var dead []string
	for _, m := range batch {
		team, task, err := c.decode(m.raw)
		if err != nil {
			dead = append(dead, m.raw)
			c.opts.Logger.Warn("celery message set aside", "queue", c.opts.Queue, "task", task, "err", err)
			continue
		}
		teams[team] = struct{}{}
	}
	var reqErr error
	for team := range teams {
		if _, err := c.req.Request(ctx, team, "celery"); err != nil {
			if errors.Is(err, ErrUnknownTeam) {
				c.opts.Logger.Warn("celery task for unknown team dropped", "team", team)
				continue
			}
			reqErr = errors.Join(reqErr, fmt.Errorf("request team %d: %w", team, err))
		}
	}
	if f, ok := c.req.(Flusher); ok && reqErr == nil {
		// Requests answered from memory become durable here, before the ack.
		if err := f.Flush(ctx); err != nil {
			reqErr = fmt.Errorf("flush requests: %w", err)
		}
	}
	if reqErr != nil {
		// Not acked: leave them in unacked for kombu's restore (visibility timeout).
		return len(batch), reqErr
	}
	ack := c.rdb.TxPipeline()
	for _, d := range dead {
		ack.LPush(ctx, c.opts.KeyPrefix+c.opts.DeadLetter, d)
	}
	for _, m := range batch {
		ack.ZRem(ctx, c.opts.KeyPrefix+"unacked_index", m.tag)
		ack.HDel(ctx, c.opts.KeyPrefix+"unacked", m.tag)
	}
	if _, err := ack.Exec(ctx); err != nil {
		return len(batch), fmt.Errorf("ack messages: %w", err)
	}
	return len(batch), nil
}

func deliveryTag() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func jsonOrString(s string) string {
	if json.Valid([]byte(s)) {
		return s
	}
	q, _ := json.Marshal(s)
	return string(q)
}

// celeryMessage is kombu's JSON envelope of a Celery protocol-2 task message.
type celeryMessage struct {
	Body            string `json:"body"`
	ContentType     string `json:"content-type"`
	ContentEncoding string `json:"content-encoding"`
	Headers         struct {
		Task string `json:"task"`
	} `json:"headers"`
	Properties struct {
		BodyEncoding string `json:"body_encoding"`
	} `json:"properties"`
}

// decode returns the team id of one of our tasks, or why the message is not one.
func (c *CeleryConsumer) decode(raw string) (int64, string, error) {
	var m celeryMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return 0, "", fmt.Errorf("not a kombu message: %w", err)
	}
	if m.Headers.Task == "" {
		return 0, "", errors.New("no task header (not a Celery protocol 2 message)")
	}
	if !c.ours(m.Headers.Task) {
		return 0, m.Headers.Task, fmt.Errorf("task %s is not a cache-update task", m.Headers.Task)
	}
	if m.ContentType != "" && m.ContentType != "application/json" {
		return 0, m.Headers.Task, fmt.Errorf("unsupported content type %s", m.ContentType)
	}
	body := []byte(m.Body)
	if m.Properties.BodyEncoding == "base64" {
		var err error
		if body, err = base64.StdEncoding.DecodeString(m.Body); err != nil {
			return 0, m.Headers.Task, fmt.Errorf("body is not base64: %w", err)
		}
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(body, &parts); err != nil || len(parts) < 2 {
		return 0, m.Headers.Task, errors.New("body is not [args, kwargs, embed]")
	}
	var kwargs map[string]json.RawMessage
	_ = json.Unmarshal(parts[1], &kwargs)
	if v, ok := kwargs[c.opts.TeamKwarg]; ok && c.opts.TeamKwarg != "" {
		return parseTeam(v, m.Headers.Task)
	}
	var args []json.RawMessage
	if err := json.Unmarshal(parts[0], &args); err != nil || len(args) <= c.opts.TeamPosition {
		return 0, m.Headers.Task, fmt.Errorf("no team id at args[%d] or kwargs[%q]", c.opts.TeamPosition, c.opts.TeamKwarg)
	}
	return parseTeam(args[c.opts.TeamPosition], m.Headers.Task)
}

func parseTeam(v json.RawMessage, task string) (int64, string, error) {
	var n json.Number
	if err := json.Unmarshal(v, &n); err != nil {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return 0, task, fmt.Errorf("team id %s is not a number", v)
		}
		n = json.Number(s)
	}
	id, err := n.Int64()
	if err != nil || id <= 0 {
		return 0, task, fmt.Errorf("team id %s is not a positive integer", v)
	}
	return id, task, nil
}

func (c *CeleryConsumer) ours(task string) bool {
	short := task[strings.LastIndexByte(task, '.')+1:]
	for _, t := range c.opts.Tasks {
		if t == task || t[strings.LastIndexByte(t, '.')+1:] == short {
			return true
		}
	}
	return false
}
