// Package celery measures Celery queues on a Redis broker the way kombu lays them out:
// depth over every priority list, unacked and overdue messages (split by queue where the
// message says which), what a sample of each deep backlog is made of (tasks, teams, how
// much a per-team dedup would remove), and how long the oldest message has waited.
//
// Queues are the configured ones plus every queue named in a _kombu.binding.* set, so a
// queue nobody consumes is still seen. All reads are pipelined in bounded chunks: one
// collection over 10,000 queues costs a handful of round trips.
package celery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flagwarden/flagwarden/internal/clock"
	"github.com/flagwarden/flagwarden/internal/kombu"
	"github.com/flagwarden/flagwarden/internal/series"
	"github.com/flagwarden/flagwarden/internal/snapshot"
)

// Options configure the collector. Zero values take kombu's and flagwarden's defaults;
// a negative SampleSize, SampleQueues or UnackedScanLimit turns that part off.
type Options struct {
	// Queues are always measured, bound or not.
	Queues []string
	// Sep, PrioritySteps and GlobalKeyPrefix mirror kombu's broker_transport_options.
	Sep             string
	PrioritySteps   []int
	GlobalKeyPrefix string
	// VisibilityTimeout: unacked messages older than this are overdue.
	VisibilityTimeout time.Duration
	// SampleSize is how many messages are read from each end of a sampled queue.
	SampleSize int
	// SampleQueues is how many of the deepest queues are sampled per pass.
	SampleQueues int
	// TeamKwarg and TeamPosition locate the team id in a task's arguments.
	TeamKwarg    string
	TeamPosition int
	// MaxLabelledQueues caps the queue label values on metrics.
	MaxLabelledQueues int
	// PipelineChunk bounds the commands per pipeline.
	PipelineChunk int
	// UnackedScanLimit bounds the unacked messages decoded per pass.
	UnackedScanLimit int
	// MaxMessageBytes is the largest message the sample decodes; larger ones are
	// counted as oversized and never leave Redis. Default 256 KiB.
	MaxMessageBytes int64
	// SampleBytes caps the message bytes one pass's sample holds. Default 8 MiB.
	SampleBytes int64
	// Clock is what the unacked deliveries' ages are judged against: the wall clock
	// (nil), or the clock the workers stamp by.
	Clock clock.Clock
}

func (o *Options) applyDefaults() {
	o.Sep = cmp.Or(o.Sep, kombu.DefaultSep)
	if len(o.PrioritySteps) == 0 {
		o.PrioritySteps = kombu.DefaultSteps()
	}
	o.VisibilityTimeout = cmp.Or(o.VisibilityTimeout, kombu.DefaultVisibilityTimeout)
	o.MaxMessageBytes = cmp.Or(o.MaxMessageBytes, 256<<10)
	o.SampleBytes = max(o.MaxMessageBytes, cmp.Or(o.SampleBytes, 8<<20))
	o.MaxLabelledQueues = cmp.Or(o.MaxLabelledQueues, 50)
	o.PipelineChunk = cmp.Or(o.PipelineChunk, 5000)
	o.SampleSize = max(0, cmp.Or(o.SampleSize, 100))
	o.SampleQueues = max(0, cmp.Or(o.SampleQueues, 20))
	o.UnackedScanLimit = max(0, cmp.Or(o.UnackedScanLimit, 10000))
	o.Clock = clock.Or(o.Clock)
}

func (o Options) validate() error {
	var errs []error
	for i, s := range o.PrioritySteps {
		if s < 0 || (i > 0 && s <= o.PrioritySteps[i-1]) {
			errs = append(errs, fmt.Errorf("PrioritySteps must ascend from 0 or more, got %v", o.PrioritySteps))
			break
		}
	}
	if o.VisibilityTimeout <= 0 {
		errs = append(errs, fmt.Errorf("VisibilityTimeout must be positive, got %s", o.VisibilityTimeout))
	}
	if o.TeamPosition < 0 {
		errs = append(errs, fmt.Errorf("TeamPosition must not be negative, got %d", o.TeamPosition))
	}
	if o.MaxLabelledQueues < 1 || o.PipelineChunk < 1 {
		errs = append(errs, errors.New("MaxLabelledQueues and PipelineChunk must be at least 1"))
	}
	return errors.Join(errs...)
}

// Collector measures one broker. RunOnce is its loop pass.
type Collector struct {
	rdb     redis.UniversalClient
	opts    Options
	keys    kombu.Keys
	broker  *kombu.Broker
	arg     kombu.TeamArg
	snaps   *snapshot.Store
	series  *series.Store
	metrics *metrics
	logger  *slog.Logger

	mu       sync.Mutex // one pass at a time owns the state below
	tails    map[string]*tailTrack
	labelled map[string]bool
}

// New returns a collector reading rdb. snaps and ss receive each pass's results; reg
// receives the metrics.
func New(rdb redis.UniversalClient, opts Options, snaps *snapshot.Store, ss *series.Store, reg prometheus.Registerer, logger *slog.Logger) (*Collector, error) {
	opts.applyDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("celery collector options: %w", err)
	}
	keys := kombu.Keys{Prefix: opts.GlobalKeyPrefix, Sep: opts.Sep, Steps: opts.PrioritySteps}
	return &Collector{
		rdb: rdb, opts: opts, keys: keys, broker: kombu.NewBroker(rdb, keys),
		arg:   kombu.TeamArg{Kwarg: opts.TeamKwarg, Position: opts.TeamPosition},
		snaps: snaps, series: ss,
		metrics: newMetrics(reg, opts.PrioritySteps),
		logger:  logger.With("component", "celery"),
		tails:   map[string]*tailTrack{}, labelled: map[string]bool{},
	}, nil
}

// RunOnce collects once and publishes the result to the snapshot store, the series
// store and the metrics. It is the loop's pass.
func (c *Collector) RunOnce(ctx context.Context) error {
	q, err := c.Collect(ctx)
	if err != nil {
		return err
	}
	c.publish(q)
	return nil
}

// Collect measures the broker once and returns the snapshot without publishing it.
func (c *Collector) Collect(ctx context.Context) (snapshot.Queues, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Clock.Now()

	bound, table, err := c.discover(ctx)
	if err != nil {
		return snapshot.Queues{}, err
	}
	names := make([]string, 0, len(bound)+len(c.opts.Queues))
	seen := map[string]bool{}
	for _, q := range c.opts.Queues {
		if !seen[q] {
			seen[q] = true
			names = append(names, q)
		}
	}
	for q := range bound {
		if !seen[q] {
			seen[q] = true
			names = append(names, q)
		}
	}

	queues, err := c.depths(ctx, names, bound)
	if err != nil {
		return snapshot.Queues{}, err
	}
	if err := overran(ctx); err != nil {
		return snapshot.Queues{}, err
	}
	out := snapshot.Queues{At: now, Queues: queues}
	byName := make(map[string]*snapshot.Queue, len(queues))
	for i := range queues {
		byName[queues[i].Name] = &queues[i]
	}

	if out.Unacked, out.Overdue, err = c.unacked(ctx, now, table, byName); err != nil {
		return snapshot.Queues{}, err
	}
	if err := c.ages(ctx, now, out.Queues); err != nil {
		return snapshot.Queues{}, err
	}
	if err := c.sample(ctx, out.Queues); err != nil {
		return snapshot.Queues{}, err
	}
	slices.SortFunc(out.Queues, func(a, b snapshot.Queue) int {
		return cmp.Or(cmp.Compare(b.Depth, a.Depth), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// discover returns every task queue named by a binding, and the bindings by exchange.
func (c *Collector) discover(ctx context.Context) (map[string]bool, map[string][]kombu.Binding, error) {
	var keys []string
	var cursor uint64
	for {
		batch, next, err := c.rdb.Scan(ctx, cursor, c.keys.BindingPattern(), 1000).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("scan bindings: %w", err)
		}
		keys = append(keys, batch...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // SCAN may return a key twice
	type pending struct {
		exchange string
		cmd      *redis.StringSliceCmd
	}
	bound := map[string]bool{}
	table := map[string][]kombu.Binding{}
	for chunk := range slices.Chunk(keys, c.opts.PipelineChunk) {
		pipe := c.rdb.Pipeline()
		var cmds []pending
		for _, k := range chunk {
			ex, ok := c.keys.ExchangeOf(k)
			if !ok || kombu.Plumbing(ex) {
				continue
			}
			cmds = append(cmds, pending{ex, pipe.SMembers(ctx, k)})
		}
		if len(cmds) == 0 {
			continue
		}
		if err := execTolerant(ctx, pipe); err != nil {
			return nil, nil, fmt.Errorf("read bindings: %w", err)
		}
		for _, p := range cmds {
			for _, m := range p.cmd.Val() {
				b, ok := c.keys.ParseBinding(p.exchange, m)
				if !ok {
					c.metrics.badBindings.Inc()
					continue
				}
				if kombu.Plumbing(b.Queue) {
					continue
				}
				bound[b.Queue] = true
				table[b.Exchange] = append(table[b.Exchange], b)
			}
		}
	}
	return bound, table, nil
}

// depths LLENs every priority list of every queue in pipelined chunks. A missing key is
// an empty list: Redis deletes lists when they empty.
func (c *Collector) depths(ctx context.Context, names []string, bound map[string]bool) ([]snapshot.Queue, error) {
	steps := c.opts.PrioritySteps
	queues := make([]snapshot.Queue, len(names))
	for i, n := range names {
		queues[i] = snapshot.Queue{Name: n, Bound: bound[n], ByPriority: make(map[int]int64, len(steps))}
	}
	total := len(names) * len(steps)
	cmds := make([]*redis.IntCmd, 0, min(total, c.opts.PipelineChunk))
	for start := 0; start < total; start += c.opts.PipelineChunk {
		end := min(start+c.opts.PipelineChunk, total)
		pipe := c.rdb.Pipeline()
		cmds = cmds[:0]
		for i := start; i < end; i++ {
			q, s := i/len(steps), steps[i%len(steps)]
			cmds = append(cmds, pipe.LLen(ctx, c.keys.List(names[q], s)))
		}
		if err := execTolerant(ctx, pipe); err != nil {
			return nil, fmt.Errorf("llen queues: %w", err)
		}
		for j, cmd := range cmds {
			i := start + j
			q, s := i/len(steps), steps[i%len(steps)]
			n, err := cmd.Result()
			if err != nil {
				c.metrics.serverErrors.Inc()
				n = 0
			}
			queues[q].ByPriority[s] = n
			queues[q].Depth += n
		}
	}
	return queues, nil
}

// unacked reads the broker-wide unacked and overdue counts, then splits them by queue
// from up to UnackedScanLimit deliveries of the unacked index (oldest first). kombu
// stores each entry as [message, exchange, routing_key] and restores it to the queues
// its exchange binds that routing key to, so the same lookup says which queue the
// message came from. Only each entry's last bytes leave Redis: the route is there,
// and the message before it may be of any size.
func (c *Collector) unacked(ctx context.Context, now time.Time, table map[string][]kombu.Binding, byName map[string]*snapshot.Queue) (total, overdue int64, err error) {
	ceil := now.Add(-c.opts.VisibilityTimeout)
	ceilArg := strconv.FormatFloat(float64(ceil.UnixNano())/1e9, 'f', 6, 64)
	pipe := c.rdb.Pipeline()
	hlen := pipe.HLen(ctx, c.keys.Unacked())
	zc := pipe.ZCount(ctx, c.keys.UnackedIndex(), "-inf", ceilArg)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, 0, fmt.Errorf("read unacked counts: %w", err)
	}
	total, overdue = hlen.Val(), zc.Val()
	if total == 0 || c.opts.UnackedScanLimit == 0 {
		return total, overdue, nil
	}
	const page = 500
	for start := int64(0); start < int64(c.opts.UnackedScanLimit); start += page {
		stop := min(start+page, int64(c.opts.UnackedScanLimit)) - 1
		tails, err := c.broker.UnackedTails(ctx, start, stop, unackedTailBytes)
		if err != nil {
			return 0, 0, err
		}
		for _, e := range tails {
			c.metrics.readBytes.Add(float64(len(e.Tail)))
			ex, rk, err := kombu.UnackedRoute(e.Tail)
			if err != nil {
				c.metrics.undecodable.Inc()
				continue
			}
			q := resolveQueue(ex, rk, table, byName)
			if q == nil {
				continue
			}
			q.Unacked++
			if !e.DeliveredAt.After(ceil) {
				q.Overdue++
			}
		}
		if len(tails) < int(stop-start+1) {
			break
		}
		if err := overran(ctx); err != nil {
			return 0, 0, err
		}
	}
	return total, overdue, nil
}

// unackedTailBytes is how much of an unacked entry's end is read: exchange and routing
// key names are short.
const unackedTailBytes = 512

// overran is the pass's error once its timeout has passed. Redis commands do not all
// stop at the context's deadline, so each stage checks, and a pass that ran over is
// recorded as failed instead of publishing late.
func overran(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("collection overran its timeout: %w", err)
	}
	return nil
}

// resolveQueue mirrors kombu's _lookup for direct routing: the queues bound to the
// exchange with that routing key, else the routing key itself when it names a queue
// (the default exchange).
func resolveQueue(exchange, routingKey string, table map[string][]kombu.Binding, byName map[string]*snapshot.Queue) *snapshot.Queue {
	for _, b := range table[exchange] {
		if b.RoutingKey == routingKey {
			if q := byName[b.Queue]; q != nil {
				return q
			}
		}
	}
	return byName[routingKey]
}

// ages reads the head and tail of every non-empty list and updates each queue's oldest
// message age. Trackers of lists that emptied are dropped, which bounds the state by the
// number of non-empty lists. A message is known by its length and edges (the delivery
// tag and id sit at the end of kombu's envelope), so no whole message is read.
func (c *Collector) ages(ctx context.Context, now time.Time, queues []snapshot.Queue) error {
	type ref struct {
		q          int
		key        string
		head, tail *redis.Cmd
	}
	var refs []ref
	for i, q := range queues {
		for _, s := range c.opts.PrioritySteps {
			if q.ByPriority[s] > 0 {
				refs = append(refs, ref{q: i, key: c.keys.List(q.Name, s)})
			}
		}
	}
	if len(refs) == 0 {
		return nil
	}
	if err := c.broker.Load(ctx); err != nil {
		return err
	}
	for chunk := range slices.Chunk(refs, max(1, c.opts.PipelineChunk/2)) {
		pipe := c.rdb.Pipeline()
		for i := range chunk {
			chunk[i].head = c.broker.PeekCmd(ctx, pipe, chunk[i].key, 0, 0, 0, identityEdge, 0)
			chunk[i].tail = c.broker.PeekCmd(ctx, pipe, chunk[i].key, -1, -1, 0, identityEdge, 0)
		}
		if err := execTolerant(ctx, pipe); err != nil {
			return fmt.Errorf("read queue tails: %w", err)
		}
	}
	live := make(map[string]bool, len(refs))
	for _, r := range refs {
		head, _ := kombu.ParsePeek(r.head)
		tail, err := kombu.ParsePeek(r.tail)
		if err != nil || len(tail) == 0 { // emptied between LLEN and the peek
			continue
		}
		live[r.key] = true
		t := c.tails[r.key]
		if t == nil {
			t = &tailTrack{}
			c.tails[r.key] = t
		}
		hh := tail[0]
		if len(head) > 0 {
			hh = head[0]
		}
		c.metrics.readBytes.Add(float64(len(hh.Data) + len(tail[0].Data)))
		age := t.observe(messageHash(hh), messageHash(tail[0]), now)
		if age > queues[r.q].OldestAge {
			queues[r.q].OldestAge = age
		}
	}
	for k := range c.tails {
		if !live[k] {
			delete(c.tails, k)
		}
	}
	return overran(ctx)
}

// identityEdge is how many bytes of each end of a message identify it.
const identityEdge = 128

// sample decodes up to SampleSize messages from each end of the SampleQueues deepest
// queues: the tail holds what runs next, the head what arrived last. Messages that are
// not Celery JSON messages are counted as undecodable, messages over MaxMessageBytes
// (or beyond the pass's SampleBytes) as oversized; neither is decoded, and an oversized
// message never leaves Redis.
func (c *Collector) sample(ctx context.Context, queues []snapshot.Queue) error {
	if c.opts.SampleSize == 0 || c.opts.SampleQueues == 0 {
		return nil
	}
	order := make([]int, 0, len(queues))
	for i, q := range queues {
		if q.Depth > 0 {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(queues[b].Depth, queues[a].Depth) })
	order = order[:min(len(order), c.opts.SampleQueues)]
	if len(order) == 0 {
		return nil
	}

	type span struct {
		key         string
		start, stop int64
	}
	type read struct {
		q     int
		spans []span
	}
	reads := make([]read, 0, len(order))
	spans := 0
	n := int64(c.opts.SampleSize)
	for _, qi := range order {
		q := queues[qi]
		r := read{q: qi}
		lists := 0
		for _, s := range c.opts.PrioritySteps {
			if q.ByPriority[s] > 0 {
				lists++
			}
		}
		// Spread the per-queue budget over its non-empty lists.
		per := max(1, n/int64(lists))
		for _, s := range c.opts.PrioritySteps {
			l := q.ByPriority[s]
			if l == 0 {
				continue
			}
			key := c.keys.List(q.Name, s)
			if l <= 2*per {
				r.spans = append(r.spans, span{key, 0, -1})
				continue
			}
			r.spans = append(r.spans, span{key, -per, -1}, span{key, 0, per - 1})
		}
		spans += len(r.spans)
		reads = append(reads, r)
	}
	if err := c.broker.Load(ctx); err != nil {
		return err
	}
	// The pass's byte budget is split over its reads, so that all replies together
	// hold at most SampleBytes of messages.
	budget := max(1, c.opts.SampleBytes/int64(spans))
	pipe := c.rdb.Pipeline()
	cmds := make([][]*redis.Cmd, len(reads))
	for i, r := range reads {
		for _, sp := range r.spans {
			cmds[i] = append(cmds[i], c.broker.PeekCmd(ctx, pipe, sp.key, sp.start, sp.stop, c.opts.MaxMessageBytes, 0, budget))
		}
	}
	if err := execTolerant(ctx, pipe); err != nil {
		return fmt.Errorf("sample queues: %w", err)
	}
	for i, r := range reads {
		comp := snapshot.Composition{ByTask: map[string]int{}, ByTeam: map[int64]int{}}
		withTeam := 0
		for _, cmd := range cmds[i] {
			peeked, err := kombu.ParsePeek(cmd)
			if err != nil {
				c.metrics.serverErrors.Inc()
				continue
			}
			for _, p := range peeked {
				comp.Sampled++
				c.metrics.readBytes.Add(float64(len(p.Data)))
				if !p.Whole {
					comp.Undecodable++
					c.metrics.oversized.Inc()
					continue
				}
				t, err := kombu.Decode(p.Data, c.arg)
				if err != nil {
					comp.Undecodable++
					c.metrics.undecodable.Inc()
					continue
				}
				comp.ByTask[t.Name]++
				if t.HasTeam() {
					comp.ByTeam[t.Team]++
					withTeam++
				}
			}
		}
		comp.DistinctTeams = len(comp.ByTeam)
		if withTeam > 0 {
			comp.DuplicateRatio = 1 - float64(comp.DistinctTeams)/float64(withTeam)
		}
		queues[r.q].Composition = comp
	}
	return overran(ctx)
}

// publish stores the snapshot, appends series and sets metrics.
func (c *Collector) publish(q snapshot.Queues) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snaps != nil {
		c.snaps.SetQueues(q)
	}
	labelled := c.chooseLabelled(q.Queues)
	if c.series != nil {
		for _, x := range q.Queues {
			c.series.Append(series.Key(series.QueueDepth, x.Name), q.At, float64(x.Depth))
			// Per-queue detail beyond depth only where it says something, so thousands of
			// idle queues do not fill the store.
			if labelled[x.Name] || x.Unacked > 0 || x.OldestAge > 0 {
				c.series.Append(series.Key(series.QueueUnacked, x.Name), q.At, float64(x.Unacked))
				c.series.Append(series.Key(series.QueueOverdue, x.Name), q.At, float64(x.Overdue))
				c.series.Append(series.Key(series.QueueOldestAge, x.Name), q.At, x.OldestAge.Seconds())
			}
		}
		c.series.Append(series.Key(series.BrokerUnacked, series.Fleet), q.At, float64(q.Unacked))
		c.series.Append(series.Key(series.BrokerOverdue, series.Fleet), q.At, float64(q.Overdue))
	}
	c.labelled = c.metrics.set(q, labelled, c.labelled, c.opts.PrioritySteps)
}

// chooseLabelled picks the queues that get their own label value: configured ones first,
// then the deepest, up to MaxLabelledQueues.
func (c *Collector) chooseLabelled(queues []snapshot.Queue) map[string]bool {
	out := make(map[string]bool, c.opts.MaxLabelledQueues)
	for _, n := range c.opts.Queues {
		if len(out) < c.opts.MaxLabelledQueues {
			out[n] = true
		}
	}
	// queues arrive sorted by depth, deepest first.
	for _, x := range queues {
		if len(out) >= c.opts.MaxLabelledQueues {
			break
		}
		out[x.Name] = true
	}
	return out
}
