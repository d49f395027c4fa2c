package kombu

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// kombu's Redis transport defaults (kombu/transport/redis.py, Channel attributes).
const (
	// DefaultSep is broker_transport_options.sep.
	DefaultSep = "\x06\x16"
	// DefaultVisibilityTimeout is broker_transport_options.visibility_timeout.
	DefaultVisibilityTimeout = time.Hour
	// BindingPrefix names the set of bindings of one exchange.
	BindingPrefix = "_kombu.binding."
)

// DefaultSteps returns kombu's default priority_steps; a new slice each call.
func DefaultSteps() []int { return []int{0, 3, 6, 9} }

// Keys is kombu's Redis key layout: a global key prefix on every key, one list per
// priority step (the lowest step is the bare queue name), bindings in sets named
// _kombu.binding.<exchange> whose members are routing_key+sep+pattern+sep+queue, and
// the unacked hash and index shared by every consumer of the broker. The zero value is
// kombu's default layout.
type Keys struct {
	// Prefix is global_keyprefix.
	Prefix string
	// Sep is broker_transport_options.sep; empty means DefaultSep.
	Sep string
	// Steps are priority_steps, ascending; empty means DefaultSteps.
	Steps []int
}

// Separator is Sep or kombu's default.
func (k Keys) Separator() string {
	if k.Sep == "" {
		return DefaultSep
	}
	return k.Sep
}

// PrioritySteps are Steps or kombu's default.
func (k Keys) PrioritySteps() []int {
	if len(k.Steps) == 0 {
		return DefaultSteps()
	}
	return k.Steps
}

// List is the key of queue's list for one priority step, as kombu's _q_for_pri builds
// it: step 0 is the bare name, any other step is name+sep+step.
func (k Keys) List(queue string, step int) string {
	if step == 0 {
		return k.Prefix + queue
	}
	return k.Prefix + queue + k.Separator() + strconv.Itoa(step)
}

// Lists are queue's priority lists, highest priority (lowest step) first: the order a
// kombu consumer pops them in.
func (k Keys) Lists(queue string) []string {
	steps := k.PrioritySteps()
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = k.List(queue, s)
	}
	return out
}

// Step maps a message priority to its list's step as kombu's priority() does: the
// largest step not above it (the lowest step for anything below every step).
func (k Keys) Step(priority int) int {
	steps := k.PrioritySteps()
	i, found := slices.BinarySearch(steps, priority)
	if found {
		return steps[i]
	}
	if i == 0 {
		return steps[0]
	}
	return steps[i-1]
}

// Unacked is the hash of delivered, unacknowledged messages (tag → entry).
func (k Keys) Unacked() string { return k.Prefix + "unacked" }

// UnackedIndex is the sorted set of delivery tags scored by delivery time.
func (k Keys) UnackedIndex() string { return k.Prefix + "unacked_index" }

// UnackedMutex is the lock kombu's restore_visible holds while it restores.
func (k Keys) UnackedMutex() string { return k.Prefix + "unacked_mutex" }

// Binding is the set of bindings of exchange.
func (k Keys) Binding(exchange string) string { return k.Prefix + BindingPrefix + exchange }

// BindingMember is one member of a binding set, as kombu's _queue_bind writes it.
func (k Keys) BindingMember(routingKey, pattern, queue string) string {
	return strings.Join([]string{routingKey, pattern, queue}, k.Separator())
}

// BindingPattern is the SCAN pattern for every binding set, with the prefix escaped so a
// prefix holding glob characters matches only itself.
func (k Keys) BindingPattern() string { return globEscape(k.Prefix+BindingPrefix) + "*" }

// ExchangeOf returns the exchange named by a binding key, or false for a key that is
// not one.
func (k Keys) ExchangeOf(key string) (string, bool) {
	return strings.CutPrefix(key, k.Prefix+BindingPrefix)
}

// Binding is one member of a binding set.
type Binding struct {
	Exchange, RoutingKey, Queue string
}

// ParseBinding splits a binding member. kombu writes exactly three fields; a member
// written with a different sep splits into fewer, which kombu itself would reject.
func (k Keys) ParseBinding(exchange, member string) (Binding, bool) {
	parts := strings.Split(member, k.Separator())
	if len(parts) != 3 || parts[2] == "" {
		return Binding{}, false
	}
	return Binding{Exchange: exchange, RoutingKey: parts[0], Queue: parts[2]}, true
}

// Plumbing reports exchanges and queues that carry Celery's control and event traffic
// rather than tasks: celeryev (events), *.pidbox (remote control) and reply.* (control
// replies). Their queues are short-lived and per worker, so watching them would only add
// noise and label cardinality.
func Plumbing(name string) bool {
	return name == "celeryev" || strings.HasPrefix(name, "celeryev.") ||
		strings.HasSuffix(name, ".pidbox") || strings.HasPrefix(name, "reply.")
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
